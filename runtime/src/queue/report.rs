//! What `weir queue inspect` and `weir queue verify` show: depth, age and damage of a
//! queue, read without changing anything (safe while weir runs, though the newest
//! records may be mid-write).

use std::fmt;
use std::path::PathBuf;

use super::lane::{Finding, Lane, Limits, Mode};
use super::{lane_dir, lane_priorities};

/// One lane's state.
#[derive(Debug)]
pub struct LaneReport {
    pub priority: u8,
    pub depth: u64,
    pub bytes: u64,
    pub segments: usize,
    pub oldest_age_ms: Option<u64>,
    pub findings: Vec<Finding>,
}

/// A whole queue's state.
#[derive(Debug)]
pub struct QueueReport {
    pub sink: String,
    pub dir: PathBuf,
    pub lanes: Vec<LaneReport>,
    /// Files in `quarantine/` with their sizes.
    pub quarantined: Vec<(PathBuf, u64)>,
    /// Whether the last run stopped cleanly (or never ran).
    pub clean: bool,
    /// Whether a weir process has the queue open now.
    pub in_use: bool,
}

impl QueueReport {
    /// Damage that is not just an unfinished last write.
    pub fn damaged(&self) -> bool {
        self.lanes.iter().flat_map(|l| &l.findings).any(|f| !f.torn_tail)
    }
}

/// Read a queue directory.
pub fn inspect(sink: &str, dir: &std::path::Path, limits: Limits) -> std::io::Result<QueueReport> {
    let now = weir_core::message::now_ms();
    let mut lanes = Vec::new();
    for priority in lane_priorities(dir) {
        let (lane, findings) = Lane::open(&lane_dir(dir, priority), priority, &dir.join("quarantine"), limits, Mode::ReadOnly, false)?;
        lanes.push(LaneReport {
            priority,
            depth: lane.depth(),
            bytes: lane.depth_bytes(),
            segments: lane.segment_count(),
            oldest_age_ms: lane.head_enqueued_ms.map(|t| now.saturating_sub(t)),
            findings,
        });
    }
    let mut quarantined = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir.join("quarantine")) {
        for entry in entries.flatten() {
            quarantined.push((entry.path(), entry.metadata().map(|m| m.len()).unwrap_or(0)));
        }
    }
    quarantined.sort();
    let has_data = lanes.iter().any(|l| l.depth > 0);
    let in_use = std::fs::File::open(dir.join("lock")).is_ok_and(|lock| lock.try_lock_shared().is_err());
    let clean = !has_data || dir.join(super::CLEAN_MARKER).exists();
    Ok(QueueReport { sink: sink.to_owned(), dir: dir.to_owned(), lanes, quarantined, clean, in_use })
}

impl fmt::Display for QueueReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let depth: u64 = self.lanes.iter().map(|l| l.depth).sum();
        let bytes: u64 = self.lanes.iter().map(|l| l.bytes).sum();
        writeln!(f, "sink `{}`: {depth} messages, {bytes} bytes queued in {}", self.sink, self.dir.display())?;
        for lane in &self.lanes {
            let age = lane.oldest_age_ms.map(|ms| format!(", oldest {:.1} s old", ms as f64 / 1000.0)).unwrap_or_default();
            writeln!(f, "  priority {}: {} messages, {} bytes, {} segment(s){age}", lane.priority, lane.depth, lane.bytes, lane.segments)?;
            for finding in &lane.findings {
                let kind = if finding.torn_tail { "unfinished write at the end" } else { finding.damage.reason };
                writeln!(f, "    damage in segment {} at bytes {}..{}: {kind}", finding.segment, finding.damage.start, finding.damage.end)?;
            }
        }
        if self.in_use {
            writeln!(f, "  in use by a running weir (figures are a snapshot; the newest records may be mid-write)")?;
        } else if !self.clean {
            writeln!(f, "  the last run did not stop cleanly (the last delivered batch per lane may be delivered again)")?;
        }
        for (path, size) in &self.quarantined {
            writeln!(f, "  quarantined: {} ({size} bytes)", path.display())?;
        }
        Ok(())
    }
}
