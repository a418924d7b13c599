//! The window state file of one aggregate module.
//!
//! ```text
//! file: magic "WEIRWIN1" | crc32 u32 LE (of body) | body (postcard of `Checkpoint`)
//! ```
//!
//! Written to `NAME.tmp`, synced, then renamed over the old file and the directory synced,
//! so a crash at any point leaves either the old checkpoint or the new one, never a mix.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::windows::{TableState, Window, WindowId};

const MAGIC: &[u8; 8] = b"WEIRWIN1";

/// Everything needed to continue where the module left off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The window table; a sliding window's retained messages as queue records.
    pub table: TableState<Vec<u8>>,
    /// The module's state of every open window.
    pub windows: Vec<WindowState>,
    /// Windows that were closed but whose results no sink has accepted yet: opened from
    /// their state and closed again at start, so a crash cannot lose a result.
    pub emitted: Vec<(Window, WindowState)>,
}

/// One window's state, and where its results go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    pub id: WindowId,
    /// Bytes from the module's `snapshot`; `None`: nothing accumulated yet.
    pub state: Option<Vec<u8>>,
    /// Topic and source of the newest message, which its results carry.
    pub topic: String,
    pub source: Arc<str>,
}

impl Checkpoint {
    /// Write atomically to `path`.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let body = postcard::to_stdvec(self).context("encoding the window state")?;
        let mut bytes = Vec::with_capacity(body.len() + 12);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let temporary = path.with_extension("tmp");
        let mut file = File::create(&temporary).with_context(|| format!("creating {}", temporary.display()))?;
        file.write_all(&bytes).and_then(|()| file.sync_all()).with_context(|| format!("writing {}", temporary.display()))?;
        fs::rename(&temporary, path).with_context(|| format!("replacing {}", path.display()))?;
        File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing {}", dir.display()))?;
        Ok(())
    }

    /// Read `path`; `Ok(None)` if there is none yet.
    pub fn read(path: &Path) -> anyhow::Result<Option<Checkpoint>> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            bail!("{} is not a weir window state file", path.display());
        }
        let body = &bytes[12..];
        if crc32fast::hash(body).to_le_bytes() != bytes[8..12] {
            bail!("{} is damaged (checksum mismatch)", path.display());
        }
        postcard::from_bytes(body).map(Some).with_context(|| format!("{} cannot be decoded (written by another weir version?)", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        let window = Window { id: 3, key: Arc::from("m1"), start_ms: 10_000, end_ms: 20_000 };
        Checkpoint {
            table: TableState { next_id: 4, newest_ms: 12_345, keys: vec![(Arc::from("m1"), Vec::new(), vec![(12_000, vec![1, 2, 3])])] },
            windows: vec![WindowState { id: 3, state: Some(b"{\"n\":2}".to_vec()), topic: "factory/m1/telemetry".into(), source: Arc::from("local") }],
            emitted: vec![(window, WindowState { id: 2, state: None, topic: "t".into(), source: Arc::from("local") })],
        }
    }

    #[test]
    fn round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("averages.window-state");
        assert_eq!(Checkpoint::read(&path).expect("missing is fine"), None);
        sample().write(&path).expect("write");
        let mut second = sample();
        second.table.next_id = 9;
        second.write(&path).expect("write again");
        assert_eq!(Checkpoint::read(&path).expect("read"), Some(second));
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn a_damaged_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.window-state");
        sample().write(&path).expect("write");
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).expect("write");
        let err = Checkpoint::read(&path).expect_err("damaged");
        assert!(err.to_string().contains("damaged"), "{err}");
    }
}
