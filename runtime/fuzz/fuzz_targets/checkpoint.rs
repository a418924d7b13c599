//! An aggregate's window state file read back from arbitrary bytes (a disk returns what it
//! returns): an error with a reason, never a panic; and a state that reads back writes back
//! to the same bytes' meaning.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir::aggregate::checkpoint::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("weir-fuzz-checkpoint-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("state");
    // Half the inputs get the file's magic and a right checksum, so postcard sees them.
    let bytes = if data.first().is_some_and(|b| b & 1 == 1) {
        let mut framed = b"WEIRWIN1".to_vec();
        framed.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
        framed.extend_from_slice(data);
        framed
    } else {
        data.to_vec()
    };
    std::fs::write(&path, &bytes).expect("temp file");
    if let Ok(Some(checkpoint)) = Checkpoint::read(&path) {
        checkpoint.write(&path).expect("write back");
        assert_eq!(Checkpoint::read(&path).expect("read again"), Some(checkpoint));
    }
});
