//! Segment files: a 16-byte header, then frames back to back (see [`super::record`]).
//!
//! Scanning a segment finds every valid frame, even past damage: after a bad frame it
//! searches forward for the next offset where a whole frame with a matching checksum
//! starts (a false match needs a 32-bit checksum collision), so one rotten sector costs
//! the records in it, not the rest of the segment.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{self, Frame};

const MAGIC: &[u8; 8] = b"WEIRQ\x01\0\0";
/// Why a frame that runs past the data is damage: a write cut short.
pub const CUT_SHORT: &str = "record cut short";
/// Bytes before the first frame.
pub const HEADER: u64 = 16;

/// Path of segment `id` in a lane directory.
pub fn path(lane_dir: &Path, id: u64) -> PathBuf {
    lane_dir.join(format!("{id:016}.seg"))
}

/// Segment ids present in a lane directory, oldest first. Only regular files count: a
/// directory, FIFO or socket named like a segment is left alone and logged (reading a FIFO
/// would wait forever).
pub fn list(lane_dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(lane_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(id) = name.strip_suffix(".seg").and_then(|stem| stem.parse().ok()) else { continue };
        match entry.file_type() {
            Ok(kind) if kind.is_file() => ids.push(id),
            Ok(kind) => tracing::warn!(path = %entry.path().display(), ?kind, "not a regular file, though named like a queue segment: left alone"),
            Err(err) => tracing::warn!(path = %entry.path().display(), %err, "cannot tell what this is: left alone"),
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Write segment `id`'s header (over a damaged one).
pub fn write_header(file: &File, id: u64) -> io::Result<()> {
    file.write_all_at(&header(id), 0)
}

fn header(id: u64) -> [u8; HEADER as usize] {
    let mut header = [0u8; HEADER as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8..].copy_from_slice(&id.to_le_bytes());
    header
}

/// Create segment `id` with its header.
pub fn create(lane_dir: &Path, id: u64) -> io::Result<File> {
    let file = std::fs::OpenOptions::new().create_new(true).read(true).append(true).open(path(lane_dir, id))?;
    if let Err(err) = write_header(&file, id) {
        // Not left behind half made: the next try creates it again (`create_new`).
        let _ = std::fs::remove_file(path(lane_dir, id));
        return Err(err);
    }
    Ok(file)
}

/// A damaged byte range in a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub start: u64,
    pub end: u64,
    pub reason: &'static str,
}

/// What a scan found.
#[derive(Debug, Default, Clone)]
pub struct Scan {
    /// Valid frames at or after the scan's start.
    pub records: u64,
    /// Valid frames before `count_before` (records already consumed).
    pub records_before: u64,
    /// Enqueue time of the first valid frame at or after `count_before`.
    pub first_enqueued_ms: Option<u64>,
    /// End of the last valid frame (where appending may continue).
    pub valid_end: u64,
    /// Damaged ranges between valid frames, and a damaged tail (which ends at the file's end).
    pub damage: Vec<Damage>,
    /// The header was not a weir segment header and no valid frame follows it: nothing in
    /// the file was trusted.
    pub bad_header: bool,
    /// The header was damaged, but valid frames follow it: they are kept (write the header
    /// again with [`write_header`]).
    pub header_damaged: bool,
}

/// Why the first 16 bytes of a segment with valid frames are reported.
pub const HEADER_DAMAGED: &str = "segment header damaged (its records are kept, the header is written again)";

/// Scan a whole segment, counting frames before and after offset `count_before`.
pub fn scan(data: &[u8], id: u64, count_before: u64) -> Scan {
    let mut scan = Scan { valid_end: HEADER, ..Scan::default() };
    if data.len() < HEADER as usize || data[..HEADER as usize] != header(id) {
        // One flipped bit must not cost a whole segment: trust it if frames follow.
        let frames = scan_frames(data, count_before, Scan { valid_end: HEADER, ..Scan::default() });
        if data.len() >= HEADER as usize && frames.records_before + frames.records > 0 {
            scan = frames;
            scan.header_damaged = true;
            scan.damage.insert(0, Damage { start: 0, end: HEADER, reason: HEADER_DAMAGED });
            return scan;
        }
        scan.bad_header = true;
        scan.valid_end = 0;
        if !data.is_empty() {
            scan.damage.push(Damage { start: 0, end: data.len() as u64, reason: "not a weir queue segment (bad header)" });
        }
        return scan;
    }
    scan_frames(data, count_before, scan)
}

/// The frames after the header.
fn scan_frames(data: &[u8], count_before: u64, mut scan: Scan) -> Scan {
    let mut at = HEADER as usize;
    while at < data.len() {
        match record::check(&data[at..]) {
            Frame::Valid(len) => {
                if (at as u64) < count_before {
                    scan.records_before += 1;
                } else {
                    scan.records += 1;
                    scan.first_enqueued_ms.get_or_insert(record::enqueued_ms(&data[at..]));
                }
                at += len;
                scan.valid_end = at as u64;
            }
            Frame::Truncated | Frame::Corrupt(_) => {
                let reason = match record::check(&data[at..]) {
                    Frame::Corrupt(reason) => reason,
                    _ => CUT_SHORT,
                };
                let next = resync(data, at + 1).unwrap_or(data.len());
                scan.damage.push(Damage { start: at as u64, end: next as u64, reason });
                at = next;
            }
        }
    }
    scan
}

/// The next offset at or after `from` where a valid frame starts.
pub fn resync(data: &[u8], from: usize) -> Option<usize> {
    (from..data.len().saturating_sub(record::FRAME_HEADER)).find(|&at| matches!(record::check(&data[at..]), Frame::Valid(_)))
}

/// Read a whole segment file.
pub fn read_all(lane_dir: &Path, id: u64) -> io::Result<Vec<u8>> {
    std::fs::read(path(lane_dir, id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::record::encode;
    use bytes::Bytes;
    use weir_core::{Ack, Message, Metadata};

    /// An enqueue time (2026-11-30).
    const T0: u64 = 1_796_000_000_000;

    fn segment_with(count: usize) -> (Vec<u8>, Vec<usize>) {
        let mut data = Vec::new();
        data.extend_from_slice(MAGIC);
        data.extend_from_slice(&7u64.to_le_bytes());
        let mut starts = Vec::new();
        for i in 0..count {
            starts.push(data.len());
            let message = Message::new(Bytes::from(format!("{{\"n\":{i}}}")), Metadata::new("s".into(), "t"), Ack::none());
            encode(&mut data, &message, T0 + i as u64, 0);
        }
        (data, starts)
    }

    #[test]
    fn counts_frames_before_and_after_a_position() {
        let (data, starts) = segment_with(10);
        let scan = scan(&data, 7, starts[4] as u64);
        assert_eq!((scan.records_before, scan.records), (4, 6));
        assert_eq!(scan.first_enqueued_ms, Some(T0 + 4));
        assert_eq!(scan.valid_end, data.len() as u64);
        assert!(scan.damage.is_empty());
    }

    #[test]
    fn damage_in_the_middle_costs_only_the_damaged_record() {
        let (mut data, starts) = segment_with(10);
        data[starts[3] + 12] ^= 0xff;
        let scan = scan(&data, 7, 0);
        assert_eq!(scan.records, 9);
        assert_eq!(scan.damage, vec![Damage { start: starts[3] as u64, end: starts[4] as u64, reason: "checksum mismatch" }]);
        assert_eq!(scan.valid_end, data.len() as u64);
    }

    #[test]
    fn a_torn_tail_is_reported_and_valid_end_stops_before_it() {
        let (data, starts) = segment_with(5);
        let cut = starts[4] + 5;
        let scan = scan(&data[..cut], 7, 0);
        assert_eq!(scan.records, 4);
        assert_eq!(scan.valid_end, starts[4] as u64);
        assert_eq!(scan.damage.len(), 1);
        assert_eq!(scan.damage[0].end, cut as u64);
    }

    #[test]
    fn a_foreign_file_is_not_trusted() {
        let scan = scan(b"hello, this is not a segment at all", 7, 0);
        assert!(scan.bad_header);
        assert_eq!(scan.records, 0);
    }
}
