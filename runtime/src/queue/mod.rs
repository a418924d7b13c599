//! Store-and-forward: a crash-safe on-disk queue in front of a sink.
//!
//! - [`record`]: one message on disk (checksummed, versioned frame);
//! - [`segment`]: segment files and scanning them (finding valid frames past damage);
//! - [`lane`]: one priority lane: segments, append, peek/commit at a cursor;
//! - `opening.rs`: opening a lane: scanning its segments, or reading its index;
//! - `index.rs`: a lane's index, written at a clean close so the next open need not read
//!   the whole backlog;
//! - [`report`]: what `weir queue inspect` and `weir queue verify` print;
//! - this file: [`SinkQueue`], a sink's queue: priority lanes, group commit, the size cap
//!   and its policy, which lane is read next, and metrics.
//!
//! Layout on disk, under the pipeline's store directory:
//! `<sink>/p<priority>/<segment id>.seg`, `<sink>/p<priority>/cursor`, `<sink>/p<priority>/index`
//! (after a clean stop), `<sink>/lock`,
//! `<sink>/quarantine/*.bad`. Why a segmented log of our own and not an embedded store:
//! `docs/store-and-forward.md`.

mod index;
pub mod lane;
mod opening;
pub mod record;
pub mod report;
pub mod segment;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use tracing::{error, info, warn};
use weir_core::Message;

use crate::telemetry;
pub use lane::{Finding, Lane, Limits, Mode, Peek, Position};

/// What happens when a queue reaches its size cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Stop taking messages from the sources until the sink catches up (back-pressure).
    Block,
    /// Delete the oldest segment of the lowest-priority lane (counted and logged).
    DropOldest,
}

/// When written records are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fsync {
    /// One fsync per group of records written together, before any of them is acknowledged
    /// to its source: survives power loss.
    Batch,
    /// Leave write-back to the operating system: survives a crash or kill of weir, not a
    /// power loss (the last few seconds of acknowledged messages can be lost).
    Never,
}

/// A queue's settings, resolved from `[store]` and the sink's `queue` table.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub when_full: WhenFull,
    pub fsync: Fsync,
    /// Default time to live, counted from when weir received the message.
    pub time_to_live: Duration,
}

impl QueueSettings {
    /// Segment size: small enough that `drop_oldest` frees space in steps of a sixteenth
    /// of the cap, at most 64 MiB.
    pub fn limits(&self) -> Limits {
        let segment_bytes = (self.max_bytes / 16).clamp(64 * 1024, 64 << 20);
        Limits { segment_bytes, max_body: (segment_bytes - segment::HEADER) as usize - record::FRAME_HEADER }
    }
}

/// A message to queue: where the route put it, and when it expires (0: never).
#[derive(Debug)]
pub struct Item {
    pub message: Message,
    pub priority: u8,
    pub expires_ms: u64,
}

/// What could not be queued.
#[derive(Debug, Default)]
pub struct Unqueued {
    /// Bigger than a record may be: for `$deadletter` with reason `too-large`.
    pub too_large: Vec<(Message, String)>,
    /// Not written because shutdown came while the queue was full: leave unacknowledged.
    pub not_written: Vec<Message>,
}

/// A sink's queue, shared by its writer (one thread) and its forwarder (one task).
pub struct SinkQueue {
    pub sink: Arc<str>,
    settings: QueueSettings,
    limits: Limits,
    state: Mutex<State>,
    /// Signalled when a commit or a drop frees space (the writer waits on it under `block`).
    space: Condvar,
    /// Notified after records were written (the forwarder waits on it when the queue is empty).
    pub written: tokio::sync::Notify,
    gauges: Gauges,
    _lock: File,
}

/// The queue's gauges, registered once.
struct Gauges {
    depth: metrics::Gauge,
    bytes: metrics::Gauge,
    oldest_seconds: metrics::Gauge,
    /// 1 while writes to the queue fail (a full disk) and are being retried.
    write_failing: metrics::Gauge,
}

struct State {
    lanes: BTreeMap<u8, Lane>,
    /// Batches handed out so far: every [`FAIR_EVERY`]th goes to the lane waiting longest.
    peeks: u64,
    scratch: Vec<u8>,
}

/// One batch in this many is read from the lane whose oldest record has waited longest,
/// whatever its priority, so a low priority is slowed down but never starved.
pub const FAIR_EVERY: u64 = 8;
const CLEAN_MARKER: &str = "clean-shutdown";

impl SinkQueue {
    /// Open (or create) the queue of sink `sink`. Damage is logged and quarantined, never fatal.
    /// After a clean stop each lane's index stands in for reading every segment.
    pub fn open(sink: &str, settings: QueueSettings) -> anyhow::Result<Arc<SinkQueue>> {
        Self::open_with(sink, settings, true)
    }

    /// [`SinkQueue::open`], reading and checking every segment whatever the index says
    /// (`weir queue repair`).
    pub fn open_scanning(sink: &str, settings: QueueSettings) -> anyhow::Result<Arc<SinkQueue>> {
        Self::open_with(sink, settings, false)
    }

    fn open_with(sink: &str, settings: QueueSettings, trust_index: bool) -> anyhow::Result<Arc<SinkQueue>> {
        let dir = &settings.dir;
        std::fs::create_dir_all(dir).with_context(|| format!("creating the queue directory {} (set [store] dir to a writable place)", dir.display()))?;
        let lock = File::options().create(true).truncate(false).write(true).open(dir.join("lock")).with_context(|| format!("opening {}", dir.display()))?;
        if lock.try_lock().is_err() {
            anyhow::bail!("the queue {} is in use by another weir process; give each pipeline its own [store] dir", dir.display());
        }
        let clean = dir.join(CLEAN_MARKER);
        let was_clean = clean.exists();
        let _ = std::fs::remove_file(&clean);
        let limits = settings.limits();
        let mut lanes = BTreeMap::new();
        for priority in lane_priorities(dir) {
            let (lane, findings) = open_lane_or_set_it_aside(sink, dir, priority, limits, trust_index && was_clean)?;
            log_findings(sink, &findings);
            if !was_clean && lane.depth() > 0 {
                warn!(sink, lane = priority, "weir did not stop cleanly: the last batch delivered from this lane may be delivered again");
                metrics::counter!(telemetry::QUEUE_POSSIBLE_DUPLICATES, "sink" => sink.to_owned()).increment(1);
            }
            lanes.insert(priority, lane);
        }
        let queue = SinkQueue {
            sink: sink.into(),
            settings,
            limits,
            state: Mutex::new(State { lanes, peeks: 0, scratch: Vec::new() }),
            space: Condvar::new(),
            written: tokio::sync::Notify::new(),
            gauges: Gauges {
                depth: metrics::gauge!(telemetry::QUEUE_DEPTH, "sink" => sink.to_owned()),
                bytes: metrics::gauge!(telemetry::QUEUE_BYTES, "sink" => sink.to_owned()),
                oldest_seconds: metrics::gauge!(telemetry::QUEUE_OLDEST_SECONDS, "sink" => sink.to_owned()),
                write_failing: metrics::gauge!(telemetry::QUEUE_WRITE_FAILING, "sink" => sink.to_owned()),
            },
            _lock: lock,
        };
        let stats = queue.stats();
        if stats.depth > 0 {
            info!(
                sink,
                messages = stats.depth,
                bytes = stats.bytes,
                oldest_age_s = stats.oldest_age_ms / 1000,
                "queue has a backlog from before; it is delivered first, in order"
            );
        }
        queue.refresh_metrics();
        Ok(Arc::new(queue))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Write `items` as one group: one write per lane and (under `fsync = "batch"`) one
    /// fsync, then return. Acknowledge the messages only after this returns.
    /// `stopping` says whether shutdown has given up waiting for space.
    ///
    /// A write that fails (a full disk, say) is retried until it works, while the group's
    /// messages wait unacknowledged and their sources hold back (see [`SinkQueue::until_written`]).
    /// `Err` only once shutdown gives up waiting: nothing of the group is acknowledged then.
    pub fn enqueue(&self, items: Vec<Item>, stopping: &dyn Fn() -> bool) -> anyhow::Result<Unqueued> {
        let mut unqueued = Unqueued::default();
        let mut outage = None;
        let mut state = self.lock();
        let mut items = items.into_iter();
        while let Some(item) = items.next() {
            let now = weir_core::message::now_ms();
            let mut frame = std::mem::take(&mut state.scratch);
            frame.clear();
            let len = record::encode(&mut frame, &item.message, now, item.expires_ms);
            if len - record::FRAME_HEADER > self.limits.max_body {
                let detail = format!(
                    "{len} bytes is more than the queue of sink `{}` takes in one record ({} bytes; raise its max_size)",
                    self.sink, self.limits.max_body
                );
                unqueued.too_large.push((item.message, detail));
                state.scratch = frame;
                continue;
            }
            loop {
                let used: u64 = state.lanes.values().map(Lane::disk_bytes).sum();
                if used + len as u64 <= self.settings.max_bytes {
                    break;
                }
                match self.settings.when_full {
                    WhenFull::DropOldest => {
                        if !self.drop_oldest(&mut state)? {
                            break;
                        }
                    }
                    WhenFull::Block => {
                        // Make what is written so far readable and durable, then wait for the sink.
                        state = self.until_written(state, stopping, &mut outage, |state| self.flush(state))?.0;
                        if stopping() {
                            unqueued.not_written.push(item.message);
                            unqueued.not_written.extend(items.map(|i| i.message));
                            state.scratch = frame;
                            return Ok(unqueued);
                        }
                        metrics::counter!(telemetry::QUEUE_FULL_WAITS, "sink" => self.sink.to_string()).increment(1);
                        state = self.space.wait_timeout(state, Duration::from_millis(100)).map(|(guard, _)| guard).unwrap_or_else(|p| p.into_inner().0);
                    }
                }
            }
            state = self.until_written(state, stopping, &mut outage, |state| self.append(state, item.priority, &frame, now))?.0;
            state.scratch = frame;
        }
        state = self.until_written(state, stopping, &mut outage, |state| self.flush(state))?.0;
        drop(state);
        if let Some(since) = outage {
            info!(sink = %self.sink, after_s = since.elapsed().as_secs_f32(), "the queue takes writes again; the messages that waited are queued and acknowledged");
            self.gauges.write_failing.set(0.0);
        }
        self.written.notify_one();
        Ok(unqueued)
    }

    /// Run `write` until it works. A write that fails (a full disk, an I/O error) is tried
    /// again after a pause (50 ms, doubling to 2 s), and the caller's messages wait
    /// unacknowledged meanwhile, so their sources hold back instead of losing them; under
    /// `when_full = "drop_oldest"` a full disk first sheds the oldest segment. The first
    /// failure of an outage is logged and `weir_queue_write_failing` is 1 until it ends.
    /// Gives up (and forgets the unwritten group) only when `stopping`.
    fn until_written<'a, T>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        stopping: &dyn Fn() -> bool,
        outage: &mut Option<Instant>,
        mut write: impl FnMut(&mut State) -> std::io::Result<T>,
    ) -> anyhow::Result<(MutexGuard<'a, State>, T)> {
        let mut pause = Duration::from_millis(50);
        loop {
            let err = match write(&mut state) {
                Ok(value) => return Ok((state, value)),
                Err(err) => err,
            };
            if stopping() {
                for lane in state.lanes.values_mut() {
                    lane.discard_pending();
                }
                return Err(anyhow::Error::from(err).context(format!("writing to the queue of sink `{}` (shutdown stopped retrying)", self.sink)));
            }
            if self.settings.when_full == WhenFull::DropOldest && is_disk_full(&err) && self.drop_oldest(&mut state)? {
                continue;
            }
            if outage.is_none() {
                *outage = Some(Instant::now());
                let hint = if is_disk_full(&err) { "its disk is full: free space there" } else { "check the disk" };
                error!(
                    sink = %self.sink,
                    dir = %self.settings.dir.display(),
                    error = %err,
                    "could not write to the queue ({hint}); its messages wait unacknowledged, their sources hold back, and the write is retried until it works"
                );
                self.gauges.write_failing.set(1.0);
            }
            metrics::counter!(telemetry::QUEUE_WRITE_ERRORS, "sink" => self.sink.to_string()).increment(1);
            // Released while waiting: the forwarder's commits free space (and wake us).
            state = self.space.wait_timeout(state, pause).map(|(guard, _)| guard).unwrap_or_else(|p| p.into_inner().0);
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Add a frame to its priority's lane (opened on first use).
    fn append(&self, state: &mut State, priority: u8, frame: &[u8], now: u64) -> std::io::Result<()> {
        let lane = match state.lanes.entry(priority) {
            std::collections::btree_map::Entry::Occupied(lane) => lane.into_mut(),
            std::collections::btree_map::Entry::Vacant(slot) => {
                let dir = lane_dir(&self.settings.dir, priority);
                let (lane, findings) = Lane::open(&dir, priority, &self.settings.dir.join("quarantine"), self.limits, Mode::ReadWrite, false)?;
                log_findings(&self.sink, &findings);
                slot.insert(lane)
            }
        };
        lane.append(frame, now)
    }

    fn flush(&self, state: &mut State) -> std::io::Result<()> {
        for lane in state.lanes.values_mut() {
            lane.flush()?;
            if self.settings.fsync == Fsync::Batch {
                lane.sync()?;
            }
        }
        Ok(())
    }

    /// Drop the oldest segment of the lowest-priority lane that has one. False if nothing could go.
    fn drop_oldest(&self, state: &mut State) -> std::io::Result<bool> {
        for lane in state.lanes.values_mut().rev() {
            if let Some((records, bytes)) = lane.drop_oldest()? {
                warn!(sink = %self.sink, lane = lane.priority, records, bytes, "queue full (when_full = \"drop_oldest\"): dropped its oldest messages");
                metrics::counter!(telemetry::QUEUE_DROPPED, "sink" => self.sink.to_string(), "reason" => "full").increment(records);
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The next batch to deliver, without removing it. Higher priority first, except that
    /// every [`FAIR_EVERY`]th batch comes from the lane whose oldest record waited longest.
    pub fn peek(&self, max_records: usize, max_bytes: usize) -> anyhow::Result<Option<Peek>> {
        let mut state = self.lock();
        state.peeks += 1;
        let fair_turn = state.peeks.is_multiple_of(FAIR_EVERY);
        let mut order: Vec<u8> = state.lanes.iter().filter(|(_, lane)| lane.depth() > 0).map(|(p, _)| *p).collect();
        if fair_turn {
            order.sort_by_key(|p| state.lanes[p].head_enqueued_ms.unwrap_or(u64::MAX));
        }
        let mut findings = Vec::new();
        let mut result = None;
        for priority in order {
            let Some(lane) = state.lanes.get_mut(&priority) else { continue };
            match lane.peek(max_records, max_bytes, &mut findings) {
                Ok(Some(peek)) => {
                    result = Some(peek);
                    break;
                }
                Ok(None) => {}
                // One lane that cannot be read does not hold up the others.
                Err(err) => {
                    error!(sink = %self.sink, lane = priority, %err, "could not read this lane of the queue; the other lanes go on");
                    findings.extend(lane.read_failed(&err));
                }
            }
        }
        log_findings(&self.sink, &findings);
        Ok(result)
    }

    /// `peek`'s records were delivered (or dead-lettered, or expired): forget them.
    pub fn commit(&self, peek: &Peek) -> anyhow::Result<()> {
        let mut state = self.lock();
        let lane = state.lanes.get_mut(&peek.lane).context("commit for a lane that does not exist")?;
        lane.commit(peek).with_context(|| format!("moving the cursor of the queue of sink `{}`", self.sink))?;
        drop(state);
        self.space.notify_all();
        Ok(())
    }

    /// Where each lane's next record will be written.
    pub fn write_positions(&self) -> BTreeMap<u8, Position> {
        self.lock().lanes.iter().map(|(p, lane)| (*p, lane.write_position())).collect()
    }

    pub fn stats(&self) -> QueueStats {
        stats_of(&self.lock())
    }

    /// Update the depth, bytes and age gauges. The forwarder does it once a second rather
    /// than every write and commit, so the hot path does not pay for it and the age of a
    /// stuck backlog still grows on dashboards.
    pub fn refresh_metrics(&self) {
        let stats = self.stats();
        self.gauges.depth.set(stats.depth as f64);
        self.gauges.bytes.set(stats.bytes as f64);
        self.gauges.oldest_seconds.set(stats.oldest_age_ms as f64 / 1000.0);
    }

    /// Flush, fsync and mark a clean shutdown.
    pub fn close(&self) -> anyhow::Result<()> {
        let mut state = self.lock();
        for lane in state.lanes.values_mut() {
            lane.close()?;
        }
        File::create(self.settings.dir.join(CLEAN_MARKER))?.sync_all()?;
        Ok(())
    }

    /// The settings this queue runs with.
    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }
}

/// Depth and age of a queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub depth: u64,
    pub bytes: u64,
    pub disk_bytes: u64,
    pub oldest_age_ms: u64,
}

fn stats_of(state: &State) -> QueueStats {
    let now = weir_core::message::now_ms();
    let oldest = state.lanes.values().filter(|l| l.depth() > 0).filter_map(|l| l.head_enqueued_ms).min();
    QueueStats {
        depth: state.lanes.values().map(Lane::depth).sum(),
        bytes: state.lanes.values().map(Lane::depth_bytes).sum(),
        disk_bytes: state.lanes.values().map(Lane::disk_bytes).sum(),
        oldest_age_ms: oldest.map(|t| now.saturating_sub(t)).unwrap_or(0),
    }
}

/// Open a lane of the queue in `dir`. One that cannot be opened (an I/O error reading its
/// directory or cursor) is moved aside whole into the quarantine directory, and an empty lane
/// starts in its place: weir starts all the same. Only if that fails too is it an error.
fn open_lane_or_set_it_aside(sink: &str, dir: &Path, priority: u8, limits: Limits, trust_index: bool) -> anyhow::Result<(Lane, Vec<Finding>)> {
    let path = lane_dir(dir, priority);
    let quarantine = dir.join("quarantine");
    match Lane::open(&path, priority, &quarantine, limits, Mode::ReadWrite, trust_index) {
        Ok(opened) => Ok(opened),
        Err(err) => {
            let aside = quarantine.join(format!("p{priority}-lane-{}", weir_core::message::now_ms()));
            let moved = std::fs::create_dir_all(&quarantine).and_then(|()| std::fs::rename(&path, &aside));
            error!(sink, lane = priority, %err, moved_to = %aside.display(), moved = moved.is_ok(), "a lane of the queue cannot be opened; it is set aside whole and an empty one starts");
            Lane::open(&path, priority, &quarantine, limits, Mode::ReadWrite, false)
                .with_context(|| format!("opening lane p{priority} of the queue of sink `{sink}` in {} (set aside after: {err})", dir.display()))
        }
    }
}

/// Whether `err` says the disk (or the user's quota) is full.
fn is_disk_full(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::StorageFull || err.kind() == std::io::ErrorKind::QuotaExceeded
}

/// The directory of one priority lane.
pub fn lane_dir(queue_dir: &Path, priority: u8) -> PathBuf {
    queue_dir.join(format!("p{priority}"))
}

/// The lanes present in a queue directory.
pub fn lane_priorities(queue_dir: &Path) -> Vec<u8> {
    (0..=9).filter(|p| lane_dir(queue_dir, *p).is_dir()).collect()
}

fn log_findings(sink: &str, findings: &[Finding]) {
    for finding in findings {
        let quarantined = finding.quarantined.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        let bytes = finding.damage.end - finding.damage.start;
        if finding.torn_tail {
            warn!(
                sink,
                segment = finding.segment,
                offset = finding.damage.start,
                bytes,
                quarantined,
                "cut off an unfinished write at the end of the queue (its message was never acknowledged, so its source still has it)"
            );
        } else {
            error!(
                sink,
                segment = finding.segment,
                offset = finding.damage.start,
                bytes,
                reason = finding.damage.reason,
                quarantined,
                "damaged queue data: the messages in these bytes are lost; the bytes were copied to the quarantine file and the queue continues after them"
            );
            metrics::counter!(telemetry::QUEUE_DAMAGED_BYTES, "sink" => sink.to_owned()).increment(bytes);
        }
    }
}
