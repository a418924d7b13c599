//! A queue lane opened on arbitrary files (a segment and a cursor, as a damaged disk or a
//! stray file may leave them), then drained: nothing may panic or loop, every record handed
//! out decodes, and a drained lane reports no depth.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir::queue::lane::Lane;
use weir::queue::{Limits, Mode, segment};

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("weir-fuzz-lane-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lane_dir = dir.join("p0");
    std::fs::create_dir_all(&lane_dir).expect("temp dir");
    // The first 20 bytes are the cursor file; the rest one segment, with a valid header on
    // odd inputs so the fuzzer reaches the frames.
    let (cursor, body) = data.split_at(data.len().min(20));
    std::fs::write(lane_dir.join("cursor"), cursor).expect("cursor");
    let mut segment_bytes = Vec::new();
    if data.last().is_some_and(|b| b & 1 == 1) {
        segment_bytes.extend_from_slice(b"WEIRQ\x01\0\0");
        segment_bytes.extend_from_slice(&1u64.to_le_bytes());
    }
    segment_bytes.extend_from_slice(body);
    std::fs::write(segment::path(&lane_dir, 1), &segment_bytes).expect("segment");
    let limits = Limits { segment_bytes: 1 << 20, max_body: 1 << 20 };
    let Ok((mut lane, _findings)) = Lane::open(&lane_dir, 0, &dir.join("quarantine"), limits, Mode::ReadWrite, false) else { return };
    let mut findings = Vec::new();
    for _ in 0..10_000 {
        match lane.peek(16, 1 << 20, &mut findings) {
            Ok(Some(peek)) => lane.commit(&peek).expect("commit what was peeked"),
            Ok(None) => break,
            Err(_) => return,
        }
    }
    assert_eq!(lane.depth(), 0, "a drained lane is empty");
});
