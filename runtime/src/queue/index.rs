//! A lane's index: what opening the lane learns by scanning every segment (each one's length
//! and record count, how many of the first are delivered, the oldest undelivered record's
//! time), written at a clean close so that the next open reads a few bytes instead of the
//! whole backlog.
//!
//! It is trusted only if the cursor file agrees with it and every segment it names is there,
//! a regular file of the length it says, and no other is; and it is removed as the lane opens
//! (read-write), so a crash later never finds a stale one. Damage that appears inside a
//! segment while weir is stopped is then found when the reader gets there (and skipped as
//! at any time), not at the start: `weir queue verify` and `weir queue repair` scan all.
//!
//! Layout: `WEIRIX\x01\0`, cursor segment and offset, oldest time (`u64::MAX`: none), the
//! segment count, then per segment id, length, records and delivered records (all `u64`
//! little-endian), then a CRC-32 of everything before it.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use super::lane::{Position, SegmentMeta};

const FILE: &str = "index";
const MAGIC: &[u8; 8] = b"WEIRIX\x01\0";
/// Magic, cursor (2), oldest time, count.
const FIXED: usize = 8 + 4 * 8;
const ENTRY: usize = 4 * 8;

/// What opening a lane learns: the cursor, the oldest undelivered record's time, and each
/// segment as the lane keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub cursor: Position,
    pub head_enqueued_ms: Option<u64>,
    pub segments: Vec<SegmentMeta>,
}

impl Index {
    /// Write the index into lane directory `dir`, durably (a temporary file, fsynced, renamed).
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let temporary = dir.join("index.tmp");
        let mut file = File::create(&temporary)?;
        file.write_all(&self.encode())?;
        file.sync_data()?;
        std::fs::rename(&temporary, dir.join(FILE))
    }

    /// The index in `dir`, if there is a whole one, and the file deleted (whether or not it is
    /// used, it must not be found stale later).
    pub fn take(dir: &Path) -> Option<Index> {
        let path = dir.join(FILE);
        let bytes = std::fs::read(&path).ok()?;
        if let Err(err) = std::fs::remove_file(&path) {
            // A stale index must not be trusted later: scan the lane this time.
            tracing::warn!(path = %path.display(), %err, "could not remove the queue index; scanning the lane instead");
            return None;
        }
        Index::decode(&bytes)
    }

    /// Whether the lane in `dir` is as the index says: the cursor file's position, and exactly
    /// these segments (`ids`, from the directory) with these lengths.
    pub fn fits(&self, dir: &Path, ids: &[u64], cursor: Option<Position>) -> bool {
        cursor == Some(self.cursor)
            && ids.len() == self.segments.len()
            && ids.iter().zip(&self.segments).all(|(id, entry)| {
                *id == entry.id && std::fs::metadata(super::segment::path(dir, *id)).is_ok_and(|meta| meta.is_file() && meta.len() == entry.len)
            })
    }

    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(FIXED + ENTRY * self.segments.len() + 4);
        bytes.extend_from_slice(MAGIC);
        let head = self.head_enqueued_ms.unwrap_or(u64::MAX);
        for value in [self.cursor.segment, self.cursor.offset, head, self.segments.len() as u64] {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        for entry in &self.segments {
            for value in [entry.id, entry.len, entry.records, entry.consumed] {
                bytes.extend_from_slice(&value.to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Index> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if crc32fast::hash(body).to_le_bytes() != crc || body.get(..8)? != MAGIC {
            return None;
        }
        let mut words = body[8..].chunks_exact(8).map(|word| u64::from_le_bytes(word.try_into().unwrap_or_default()));
        let (segment, offset, head, count) = (words.next()?, words.next()?, words.next()?, words.next()?);
        if body.len() != FIXED + ENTRY * usize::try_from(count).ok()? {
            return None;
        }
        let mut segments = Vec::new();
        while let (Some(id), Some(len), Some(records), Some(consumed)) = (words.next(), words.next(), words.next(), words.next()) {
            segments.push(SegmentMeta { id, len, records, consumed });
        }
        Some(Index { cursor: Position { segment, offset }, head_enqueued_ms: (head != u64::MAX).then_some(head), segments })
    }
}

#[cfg(test)]
mod tests {
    use super::{Index, Position, SegmentMeta};

    fn index() -> Index {
        Index {
            cursor: Position { segment: 3, offset: 160 },
            head_enqueued_ms: Some(1_765_000_000_000),
            segments: vec![SegmentMeta { id: 3, len: 4096, records: 40, consumed: 2 }, SegmentMeta { id: 4, len: 16, records: 0, consumed: 0 }],
        }
    }

    #[test]
    fn an_index_reads_back_as_written() {
        assert_eq!(Index::decode(&index().encode()), Some(index()));
        let empty = Index { cursor: Position::default(), head_enqueued_ms: None, segments: Vec::new() };
        assert_eq!(Index::decode(&empty.encode()), Some(empty));
    }

    #[test]
    fn a_damaged_or_cut_index_is_not_read() {
        let bytes = index().encode();
        for at in [0, 9, 40, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            assert_eq!(Index::decode(&damaged), None, "a flipped bit at {at}");
        }
        for len in [0, 3, 8, bytes.len() - 1] {
            assert_eq!(Index::decode(&bytes[..len]), None, "cut to {len} bytes");
        }
    }
}
