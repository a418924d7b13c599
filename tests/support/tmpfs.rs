//! A small tmpfs of the test's own, to fill a disk up and free it again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted on a temporary directory, unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mount a tmpfs of `bytes`. Needs root (CI and scripts/test.sh run as root): without it
    /// the test fails and says so.
    pub fn mount(bytes: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={bytes}")]).arg("tmpfs").arg(dir.path()).status();
        match status {
            Ok(status) if status.success() => Tmpfs { dir },
            other => panic!("could not mount a tmpfs on {} ({other:?}): this test fills a disk, and mounting one needs root", dir.path().display()),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fill every free byte with a ballast file (until the disk says it is full); its path.
    pub fn fill(&self) -> PathBuf {
        let path = self.dir.path().join("ballast");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        loop {
            match file.write_all(&chunk).and_then(|()| file.flush()) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::StorageFull => return path,
                Err(err) => panic!("filling {}: {err}", path.display()),
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}
