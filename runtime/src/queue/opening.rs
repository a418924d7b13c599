//! Opening a lane: scanning its segments (every byte: each frame checked, damage found and
//! quarantined, a torn tail cut off), or, after a clean stop, reading the index the last
//! close wrote instead ([`super::index`]).

use std::collections::VecDeque;
use std::fs::File;
use std::path::Path;

use super::index::Index;
use super::lane::{Finding, Mode, Position, SegmentMeta, quarantine, remove_or_log, set_aside};
use super::segment::{self, Damage, HEADER};

/// What opening found: the segments and where delivery stands.
pub(super) struct Opened {
    pub segments: VecDeque<SegmentMeta>,
    pub cursor: Position,
    /// Damage ahead of the cursor, skipped when the reader gets there.
    pub known_damage: Vec<(u64, Damage)>,
    pub head_enqueued_ms: Option<u64>,
    /// Whether appends go on in the newest segment (its torn end could be cut off).
    pub append_to_last: bool,
    pub findings: Vec<Finding>,
}

impl Opened {
    /// As the index says (it fits the directory: [`Index::fits`]).
    pub fn from_index(index: Index) -> Opened {
        Opened {
            segments: index.segments.into(),
            cursor: index.cursor,
            known_damage: Vec::new(),
            head_enqueued_ms: index.head_enqueued_ms,
            append_to_last: true,
            findings: Vec::new(),
        }
    }

    /// Read and check every segment `ids` of the lane in `dir` from the cursor on.
    pub fn scan(dir: &Path, priority: u8, quarantine_dir: &Path, mode: Mode, ids: &[u64], stored_cursor: Option<Position>) -> Opened {
        let mut findings = Vec::new();
        let mut segments = VecDeque::new();
        let mut known_damage = Vec::new();
        let mut head_enqueued_ms = None;
        let first_id = ids.first().copied().unwrap_or(0);
        // A cursor pointing at a deleted segment means everything before the next one was delivered.
        let mut cursor = match stored_cursor {
            Some(cursor) if cursor.segment >= first_id => cursor,
            _ => Position { segment: first_id, offset: HEADER },
        };
        let last = ids.last().copied();
        let mut append_to_last = true;
        for id in ids {
            if *id < cursor.segment {
                // Delivered, but not yet deleted when weir stopped.
                if mode == Mode::ReadWrite {
                    remove_or_log(&segment::path(dir, *id));
                }
                continue;
            }
            let data = match segment::read_all(dir, *id) {
                Ok(data) => data,
                Err(err) => {
                    // An I/O error must not keep weir from starting: the segment goes aside whole.
                    findings.push(set_aside(dir, quarantine_dir, priority, *id, mode, &err));
                    continue;
                }
            };
            let count_before = if *id == cursor.segment { cursor.offset } else { 0 };
            let scan = segment::scan(&data, *id, count_before);
            for damage in &scan.damage {
                let torn_tail = Some(*id) == last && damage.end == data.len() as u64 && damage.reason == segment::CUT_SHORT;
                let quarantined = match mode {
                    Mode::ReadWrite if damage.end > damage.start => quarantine(quarantine_dir, priority, *id, damage, &data),
                    _ => None,
                };
                findings.push(Finding { segment: *id, damage: damage.clone(), quarantined, torn_tail });
                let ahead_of_cursor = *id > cursor.segment || (*id == cursor.segment && damage.end > cursor.offset);
                if ahead_of_cursor && !torn_tail {
                    known_damage.push((*id, damage.clone()));
                }
            }
            if scan.bad_header {
                if mode == Mode::ReadWrite {
                    remove_or_log(&segment::path(dir, *id));
                }
                continue;
            }
            if scan.header_damaged && mode == Mode::ReadWrite {
                let rewritten = File::options().write(true).open(segment::path(dir, *id)).and_then(|file| segment::write_header(&file, *id));
                if let Err(err) = rewritten {
                    tracing::warn!(segment = *id, %err, "could not write the damaged segment header again; its records are read all the same");
                }
            }
            let mut len = data.len() as u64;
            if Some(*id) == last && scan.valid_end < len {
                // Cut a torn or damaged tail so appends continue at a frame boundary; if that
                // fails, appends go to a new segment instead.
                if mode == Mode::ReadWrite
                    && let Err(err) = File::options().write(true).open(segment::path(dir, *id)).and_then(|file| file.set_len(scan.valid_end))
                {
                    tracing::warn!(segment = *id, %err, "could not cut off the damaged end of the newest segment; new records go to a new one");
                    append_to_last = false;
                }
                known_damage.retain(|(segment, damage)| !(*segment == *id && damage.end == len));
                len = scan.valid_end;
            }
            if *id == cursor.segment && cursor.offset > len {
                cursor.offset = len;
            }
            if head_enqueued_ms.is_none() && *id >= cursor.segment {
                head_enqueued_ms = scan.first_enqueued_ms;
            }
            segments.push_back(SegmentMeta { id: *id, len, records: scan.records_before + scan.records, consumed: scan.records_before });
        }
        Opened { segments, cursor, known_damage, head_enqueued_ms, append_to_last, findings }
    }
}
