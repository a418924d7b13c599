//! One priority lane of a sink's queue: a directory of segments read in order, and a
//! cursor file saying how far delivery got.
//!
//! The writer appends frames to the newest segment and starts a new one when it is full;
//! the reader peeks a batch at the cursor, and commits it once the sink accepted it, which
//! moves the cursor and deletes segments that are entirely behind it. The cursor is
//! written (not fsynced) after every commit: after a crash delivery resumes at the last
//! written cursor, so at most the batch in flight is delivered twice.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::index::Index;
use super::opening::Opened;
use super::record::{self, Frame, Record};
use super::segment::{self, Damage, HEADER};

/// Where delivery has got to: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// Sizes a lane works with.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A segment is closed once it would grow past this.
    pub segment_bytes: u64,
    /// The largest record body accepted now (reading trusts up to [`record::MAX_BODY`]).
    pub max_body: usize,
}

/// Something found while opening or reading a lane, for the log and `weir queue verify`.
#[derive(Debug, Clone)]
pub struct Finding {
    pub segment: u64,
    pub damage: Damage,
    /// Where the damaged bytes were copied, if they were.
    pub quarantined: Option<PathBuf>,
    /// The damage was an unfinished write at the very end (normal after a power loss).
    pub torn_tail: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SegmentMeta {
    pub id: u64,
    /// Bytes written (and readable).
    pub len: u64,
    /// Valid records in the segment.
    pub records: u64,
    /// Of those, records before the cursor.
    pub consumed: u64,
}

/// A batch read at the cursor, not yet committed.
#[derive(Debug)]
pub struct Peek {
    pub lane: u8,
    pub records: Vec<Record>,
    pub start: Position,
    pub end: Position,
    /// Frames between `start` and `end` (includes records that failed to decode).
    pub frames: u64,
}

/// Whether opening may change files (the running queue) or only look (`weir queue inspect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    ReadWrite,
    ReadOnly,
}

pub struct Lane {
    pub priority: u8,
    dir: PathBuf,
    quarantine_dir: PathBuf,
    limits: Limits,
    mode: Mode,
    segments: VecDeque<SegmentMeta>,
    next_id: u64,
    active: Option<File>,
    pending: Vec<u8>,
    pending_records: u64,
    /// A failed write left bytes after the last whole frame that are not cut off yet.
    needs_cut: bool,
    /// Sealed during the current group commit and not yet fsynced.
    unsynced: Vec<File>,
    dir_dirty: bool,
    cursor: Position,
    cursor_file: Option<File>,
    reader: Option<(u64, File)>,
    /// Damage found ahead of the cursor, skipped when the reader gets there.
    known_damage: Vec<(u64, Damage)>,
    /// Enqueue time of the oldest record not yet delivered (as far as known).
    pub head_enqueued_ms: Option<u64>,
    /// Reads that failed in a row (an I/O error): at [`READ_ERRORS_TO_SET_ASIDE`] the oldest
    /// segment is set aside so that what comes after it is delivered.
    read_errors: u32,
}

/// Failed reads in a row after which a lane's oldest segment is set aside.
pub const READ_ERRORS_TO_SET_ASIDE: u32 = 3;

const CURSOR_FILE: &str = "cursor";
/// Once everything is delivered, a newest segment bigger than this is replaced by an empty
/// one, so a drained queue gives its disk space back.
const SHRINK_WHEN_DRAINED: u64 = 1 << 20;

impl Lane {
    /// Open (or create) the lane in `dir`. Damage is reported, never fatal: in read-write
    /// mode damaged bytes are copied to `quarantine_dir` and a torn tail is cut off. With
    /// `trust_index` (read-write, after a clean stop) the index the last close wrote stands in
    /// for scanning the segments, if it fits them ([`index`](super::index)).
    pub fn open(dir: &Path, priority: u8, quarantine_dir: &Path, limits: Limits, mode: Mode, trust_index: bool) -> io::Result<(Lane, Vec<Finding>)> {
        if mode == Mode::ReadWrite {
            std::fs::create_dir_all(dir)?;
        }
        let ids = if dir.is_dir() { segment::list(dir)? } else { Vec::new() };
        let (stored_cursor, cursor_file) = read_cursor(dir, mode)?;
        let index = if mode == Mode::ReadWrite { Index::take(dir) } else { None };
        let opened = match index {
            Some(index) if trust_index && index.fits(dir, &ids, stored_cursor) => Opened::from_index(index),
            _ => Opened::scan(dir, priority, quarantine_dir, mode, &ids, stored_cursor),
        };
        let Opened { segments, mut cursor, known_damage, head_enqueued_ms, append_to_last, findings } = opened;
        if let Some(front) = segments.front()
            && front.id != cursor.segment
        {
            cursor = Position { segment: front.id, offset: HEADER };
        }
        let next_id = ids.last().map(|id| id + 1).unwrap_or(1).max(cursor.segment + 1);
        let active = match (mode, segments.back()) {
            (Mode::ReadWrite, Some(last)) if append_to_last => Some(File::options().read(true).append(true).open(segment::path(dir, last.id))?),
            _ => None,
        };
        let lane = Lane {
            priority,
            dir: dir.to_owned(),
            quarantine_dir: quarantine_dir.to_owned(),
            limits,
            mode,
            segments,
            next_id,
            active,
            pending: Vec::new(),
            pending_records: 0,
            needs_cut: false,
            unsynced: Vec::new(),
            dir_dirty: false,
            cursor,
            cursor_file,
            reader: None,
            known_damage,
            head_enqueued_ms,
            read_errors: 0,
        };
        Ok((lane, findings))
    }

    /// Records not yet delivered.
    pub fn depth(&self) -> u64 {
        let total: u64 = self.segments.iter().map(|s| s.records - s.consumed).sum();
        total + self.pending_records
    }

    /// Bytes of undelivered records.
    pub fn depth_bytes(&self) -> u64 {
        let written: u64 = self.segments.iter().map(|s| s.len - HEADER).sum();
        let consumed = match self.segments.front() {
            Some(front) if front.id == self.cursor.segment => self.cursor.offset.saturating_sub(HEADER),
            _ => 0,
        };
        written - consumed.min(written) + self.pending.len() as u64
    }

    /// Bytes the lane takes on disk (what the size cap counts).
    pub fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum::<u64>() + self.pending.len() as u64
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Where the next record will be written: records before it were queued before now.
    pub fn write_position(&self) -> Position {
        match self.segments.back() {
            Some(last) => Position { segment: last.id, offset: last.len + self.pending.len() as u64 },
            None => Position { segment: self.next_id, offset: HEADER },
        }
    }

    /// Add a frame to the current group (written by [`Lane::flush`]).
    pub fn append(&mut self, frame: &[u8], enqueued_ms: u64) -> io::Result<()> {
        let active_len = self.segments.back().map(|s| s.len).unwrap_or(0) + self.pending.len() as u64;
        if self.active.is_none() || (active_len + frame.len() as u64 > self.limits.segment_bytes && active_len > HEADER) {
            self.flush()?;
            self.rotate()?;
        }
        if self.depth() == 0 {
            self.head_enqueued_ms = Some(enqueued_ms);
        }
        self.pending.extend_from_slice(frame);
        self.pending_records += 1;
        Ok(())
    }

    /// Write the current group to the segment file (no fsync).
    pub fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let (Some(file), Some(last)) = (&mut self.active, self.segments.back_mut()) else {
            return Err(io::Error::other("lane has no active segment"));
        };
        // A failed write (a full disk) may have written part of the group: appends would go on
        // after that fragment and the reader would later skip a frame as cut short. Cut the
        // segment back to its last whole frame; `pending` stays, to be written again.
        if self.needs_cut {
            file.set_len(last.len)?;
            self.needs_cut = false;
        }
        if let Err(err) = io::Write::write_all(file, &self.pending) {
            self.needs_cut = file.set_len(last.len).is_err();
            return Err(err);
        }
        last.len += self.pending.len() as u64;
        last.records += self.pending_records;
        self.pending.clear();
        self.pending_records = 0;
        Ok(())
    }

    /// Forget the current group without writing it (its messages were not acknowledged).
    pub fn discard_pending(&mut self) {
        self.pending.clear();
        self.pending_records = 0;
        if self.depth() == 0 {
            self.head_enqueued_ms = None;
        }
    }

    /// Make everything flushed durable: segment data and, if segments came or went, the directory.
    pub fn sync(&mut self) -> io::Result<()> {
        for file in self.unsynced.drain(..) {
            file.sync_data()?;
        }
        if let Some(active) = &self.active {
            active.sync_data()?;
        }
        if self.dir_dirty {
            File::open(&self.dir)?.sync_all()?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let id = self.next_id;
        let file = segment::create(&self.dir, id)?;
        if let Some(old) = self.active.replace(file) {
            self.unsynced.push(old);
        }
        self.next_id += 1;
        self.dir_dirty = true;
        self.segments.push_back(SegmentMeta { id, len: HEADER, records: 0, consumed: 0 });
        if self.segments.len() == 1 {
            self.cursor = Position { segment: id, offset: HEADER };
        }
        Ok(())
    }

    /// Read up to `max_records` (and about `max_bytes`) at the cursor without moving it.
    /// `findings` gets damage met on the way (which is skipped).
    pub fn peek(&mut self, max_records: usize, max_bytes: usize, findings: &mut Vec<Finding>) -> io::Result<Option<Peek>> {
        loop {
            let Some(front) = self.segments.front().cloned() else { return Ok(None) };
            if self.cursor.segment != front.id {
                self.cursor = Position { segment: front.id, offset: HEADER };
            }
            if self.cursor.offset >= front.len {
                if self.segments.len() > 1 {
                    self.retire_front()?;
                    continue;
                }
                return Ok(None);
            }
            if let Some(skip_to) = self.damage_at(front.id, self.cursor.offset) {
                self.cursor.offset = skip_to.min(front.len);
                self.write_cursor()?;
                continue;
            }
            let available = front.len - self.cursor.offset;
            // Read about what the batch needs (from the segment's average record), not more.
            let average = (front.len - HEADER) / front.records.max(1);
            let want = (max_records as u64 * average * 5 / 4).clamp(4096, (max_bytes as u64).max(4096));
            let mut chunk = self.read(front.id, self.cursor.offset, available.min(want))?;
            if let Frame::Truncated = record::check(&chunk)
                && chunk.len() >= 4
                && (chunk.len() as u64) < available
            {
                // One frame bigger than the chunk: read exactly that frame.
                let want = u32::from_le_bytes(chunk[..4].try_into().unwrap_or_default()) as u64 + record::FRAME_HEADER as u64;
                chunk = self.read(front.id, self.cursor.offset, want.min(available))?;
            }
            let mut at = 0usize;
            let mut records = Vec::new();
            let mut frames = 0u64;
            while records.len() < max_records && at < max_bytes.max(1) && at < chunk.len() {
                match record::check(&chunk[at..]) {
                    Frame::Valid(len) => {
                        match record::decode(&chunk.slice(at..at + len)) {
                            Ok(record) => records.push(record),
                            Err(reason) => findings.push(self.note_runtime_damage(front.id, self.cursor.offset + at as u64, len as u64, reason)?),
                        }
                        frames += 1;
                        at += len;
                    }
                    // The chunk ends inside a frame: the next peek reads it.
                    Frame::Truncated if at > 0 => break,
                    Frame::Truncated | Frame::Corrupt(_) => {
                        if at == 0 {
                            self.skip_damage(front.id, findings)?;
                        }
                        break;
                    }
                }
            }
            if frames == 0 {
                continue;
            }
            self.read_errors = 0;
            return Ok(Some(self.make_peek(records, frames, at as u64)));
        }
    }

    /// A read of this lane failed. After [`READ_ERRORS_TO_SET_ASIDE`] in a row, the oldest
    /// segment is moved to the quarantine directory (what it held is reported as lost) and the
    /// lane goes on after it: returns what was found then.
    pub fn read_failed(&mut self, err: &io::Error) -> Option<Finding> {
        self.read_errors += 1;
        if self.read_errors < READ_ERRORS_TO_SET_ASIDE {
            return None;
        }
        self.read_errors = 0;
        let front = self.segments.pop_front()?;
        if matches!(&self.reader, Some((id, _)) if *id == front.id) {
            self.reader = None;
        }
        if self.segments.is_empty() {
            // It was also the one appended to: the next record starts a new segment.
            self.active = None;
        }
        let finding = set_aside(&self.dir, &self.quarantine_dir, self.priority, front.id, self.mode, err);
        tracing::error!(
            lane = self.priority,
            segment = front.id,
            lost = front.records - front.consumed,
            "reads of this queue segment keep failing; it is set aside and the lane goes on after it"
        );
        self.known_damage.retain(|(segment, _)| *segment != front.id);
        self.cursor = match self.segments.front() {
            Some(next) => Position { segment: next.id, offset: HEADER },
            None => Position { segment: self.next_id, offset: HEADER },
        };
        self.head_enqueued_ms = None;
        if let Err(err) = self.write_cursor() {
            tracing::warn!(lane = self.priority, %err, "could not write the queue cursor");
        }
        Some(finding)
    }

    fn make_peek(&mut self, records: Vec<Record>, frames: u64, len: u64) -> Peek {
        if let Some(first) = records.first() {
            self.head_enqueued_ms = Some(first.enqueued_ms);
        }
        let start = self.cursor;
        Peek { lane: self.priority, records, start, end: Position { segment: start.segment, offset: start.offset + len }, frames }
    }

    /// The records of `peek` were delivered: move the cursor past them.
    pub fn commit(&mut self, peek: &Peek) -> io::Result<()> {
        if self.cursor != peek.start {
            return Err(io::Error::other("commit does not match the cursor (two readers?)"));
        }
        self.cursor = peek.end;
        if let Some(front) = self.segments.front_mut() {
            front.consumed = (front.consumed + peek.frames).min(front.records);
        }
        if self.depth() == 0 {
            self.head_enqueued_ms = None;
        }
        let front_done = self.segments.front().is_some_and(|f| self.cursor.offset >= f.len);
        if front_done && self.segments.len() == 1 && self.pending.is_empty() && self.cursor.offset > SHRINK_WHEN_DRAINED {
            self.rotate()?;
        }
        if front_done && self.segments.len() > 1 {
            self.retire_front()?;
        }
        self.write_cursor()
    }

    /// Drop the oldest segment undelivered (the size cap's `drop_oldest`).
    /// Returns the records and bytes dropped.
    pub fn drop_oldest(&mut self) -> io::Result<Option<(u64, u64)>> {
        self.flush()?;
        let Some(front) = self.segments.front().cloned() else { return Ok(None) };
        if front.records == front.consumed {
            return Ok(None);
        }
        if self.segments.len() == 1 {
            self.rotate()?;
        }
        let dropped = (front.records - front.consumed, front.len);
        self.retire_front()?;
        self.head_enqueued_ms = None;
        self.write_cursor()?;
        Ok(Some(dropped))
    }

    fn retire_front(&mut self) -> io::Result<()> {
        if let Some(done) = self.segments.pop_front() {
            if matches!(&self.reader, Some((id, _)) if *id == done.id) {
                self.reader = None;
            }
            if self.mode == Mode::ReadWrite {
                std::fs::remove_file(segment::path(&self.dir, done.id))?;
                self.dir_dirty = true;
            }
            self.known_damage.retain(|(segment, _)| *segment != done.id);
        }
        if let Some(next) = self.segments.front() {
            self.cursor = Position { segment: next.id, offset: HEADER };
        }
        Ok(())
    }

    fn read(&mut self, id: u64, offset: u64, len: u64) -> io::Result<Bytes> {
        if !matches!(&self.reader, Some((open, _)) if *open == id) {
            self.reader = Some((id, File::open(segment::path(&self.dir, id))?));
        }
        let Some((_, file)) = &self.reader else { unreachable!() };
        let mut buffer = vec![0u8; len as usize];
        file.read_exact_at(&mut buffer, offset)?;
        Ok(Bytes::from(buffer))
    }

    fn damage_at(&self, segment: u64, offset: u64) -> Option<u64> {
        self.known_damage.iter().find(|(s, d)| *s == segment && d.start <= offset && offset < d.end).map(|(_, d)| d.end)
    }

    /// A bad frame at the cursor found while running: quarantine up to the next valid frame.
    fn skip_damage(&mut self, id: u64, findings: &mut Vec<Finding>) -> io::Result<()> {
        let Some(front) = self.segments.front().cloned() else { return Ok(()) };
        let rest = self.read(id, 0, front.len)?;
        let start = self.cursor.offset as usize;
        let reason = match record::check(&rest[start..]) {
            Frame::Corrupt(reason) => reason,
            _ => segment::CUT_SHORT,
        };
        let end = segment::resync(&rest, start + 1).unwrap_or(rest.len());
        let damage = Damage { start: start as u64, end: end as u64, reason };
        let quarantined = if self.mode == Mode::ReadWrite { quarantine(&self.quarantine_dir, self.priority, id, &damage, &rest) } else { None };
        findings.push(Finding { segment: id, damage, quarantined, torn_tail: false });
        self.cursor.offset = end as u64;
        self.write_cursor()
    }

    fn note_runtime_damage(&mut self, id: u64, start: u64, len: u64, reason: &'static str) -> io::Result<Finding> {
        let damage = Damage { start, end: start + len, reason };
        let bytes = self.read(id, 0, start + len)?;
        let quarantined = if self.mode == Mode::ReadWrite { quarantine(&self.quarantine_dir, self.priority, id, &damage, &bytes) } else { None };
        Ok(Finding { segment: id, damage, quarantined, torn_tail: false })
    }

    fn write_cursor(&mut self) -> io::Result<()> {
        if let Some(file) = &self.cursor_file {
            file.write_all_at(&encode_cursor(self.cursor), 0)?;
        }
        Ok(())
    }

    /// Everything written, and the cursor, on disk (clean shutdown); then the index, so the
    /// next open need not scan the segments (not if damage ahead is still to be skipped).
    pub fn close(&mut self) -> io::Result<()> {
        self.flush()?;
        self.sync()?;
        self.write_cursor()?;
        if let Some(file) = &self.cursor_file {
            file.sync_data()?;
        }
        if self.mode == Mode::ReadWrite && self.known_damage.is_empty() && !self.needs_cut {
            let index = Index { cursor: self.cursor, head_enqueued_ms: self.head_enqueued_ms, segments: self.segments.iter().cloned().collect() };
            index.write(&self.dir)?;
        }
        Ok(())
    }
}

/// Delete a file weir is done with; a failure (a read-only or failing disk) is logged, not
/// fatal: the next start tries again.
pub(super) fn remove_or_log(path: &Path) {
    if let Err(err) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), %err, "could not delete a queue segment that is no longer needed");
    }
}

/// A segment that cannot be read: moved into the quarantine directory whole (in read-write
/// mode), so the queue opens without it. Its records are counted as damage.
pub(super) fn set_aside(dir: &Path, quarantine_dir: &Path, lane: u8, id: u64, mode: Mode, err: &io::Error) -> Finding {
    let from = segment::path(dir, id);
    let size = std::fs::symlink_metadata(&from).map(|m| m.len()).unwrap_or(0);
    let to = quarantine_dir.join(format!("p{lane}-{id:016}-unreadable.seg"));
    let moved = mode == Mode::ReadWrite && std::fs::create_dir_all(quarantine_dir).and_then(|()| std::fs::rename(&from, &to)).is_ok();
    tracing::error!(segment = %from.display(), %err, moved_to = moved.then(|| to.display().to_string()), "a queue segment cannot be read; the queue opens without it");
    Finding { segment: id, damage: Damage { start: 0, end: size, reason: UNREADABLE }, quarantined: moved.then_some(to), torn_tail: false }
}

/// Why a whole segment was set aside.
pub const UNREADABLE: &str = "segment unreadable (I/O error); set aside whole";

fn encode_cursor(cursor: Position) -> [u8; 20] {
    let mut bytes = [0u8; 20];
    bytes[..8].copy_from_slice(&cursor.segment.to_le_bytes());
    bytes[8..16].copy_from_slice(&cursor.offset.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..16]);
    bytes[16..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode_cursor(bytes: &[u8]) -> Option<Position> {
    let bytes: &[u8; 20] = bytes.get(..20)?.try_into().ok()?;
    let crc = u32::from_le_bytes(bytes[16..].try_into().ok()?);
    (crc32fast::hash(&bytes[..16]) == crc).then(|| Position {
        segment: u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default()),
        offset: u64::from_le_bytes(bytes[8..16].try_into().unwrap_or_default()),
    })
}

/// The stored cursor (None if missing or unreadable) and, in read-write mode, its file.
fn read_cursor(dir: &Path, mode: Mode) -> io::Result<(Option<Position>, Option<File>)> {
    let path = dir.join(CURSOR_FILE);
    let stored = std::fs::read(&path).ok().and_then(|bytes| decode_cursor(&bytes));
    let file = match mode {
        Mode::ReadWrite => Some(File::options().create(true).truncate(false).read(true).write(true).open(&path)?),
        Mode::ReadOnly => None,
    };
    Ok((stored, file))
}

/// Copy damaged bytes to the quarantine directory (once: the name is derived from where
/// they were). Best effort: a full disk must not keep weir from starting, so a failed copy
/// is logged and the damage skipped all the same.
pub(super) fn quarantine(dir: &Path, lane: u8, segment: u64, damage: &Damage, data: &[u8]) -> Option<PathBuf> {
    let path = dir.join(format!("p{lane}-{segment:016}-{}.bad", damage.start));
    let start = (damage.start as usize).min(data.len());
    let end = (damage.end as usize).min(data.len());
    let copied = std::fs::create_dir_all(dir).and_then(|()| if path.exists() { Ok(()) } else { std::fs::write(&path, &data[start..end]) });
    match copied {
        Ok(()) => Some(path),
        Err(err) => {
            tracing::warn!(path = %path.display(), %err, "could not copy damaged queue bytes to quarantine; skipping them anyway");
            None
        }
    }
}
