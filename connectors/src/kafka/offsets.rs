//! Which offsets may be committed: per partition, the end of the longest run of accepted
//! messages from the start. Messages are accepted out of order (several sinks, retries), and
//! committing past one still in flight would lose it after a crash.

use std::collections::{BTreeMap, HashMap};

/// A topic and partition.
pub type Partition = (String, i32);

/// Offsets handed to the pipeline and not yet accepted, per partition.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<Partition, PartitionState>,
}

#[derive(Debug, Default)]
struct PartitionState {
    /// Offset → accepted. The first entry is the oldest not yet committed.
    in_flight: BTreeMap<i64, bool>,
    /// The next offset to commit (one past the last accepted in the run), if it moved.
    commit: Option<i64>,
}

impl OffsetTracker {
    /// A message at `offset` went into the pipeline.
    pub fn received(&mut self, partition: &Partition, offset: i64) {
        let state = self.partitions.entry(partition.clone()).or_default();
        // After a rebalance the same offset may come again: it is in flight anew.
        state.in_flight.insert(offset, false);
    }

    /// The message at `offset` was accepted by every sink it was routed to.
    pub fn accepted(&mut self, partition: &Partition, offset: i64) {
        let Some(state) = self.partitions.get_mut(partition) else { return };
        if let Some(done) = state.in_flight.get_mut(&offset) {
            *done = true;
        }
        while let Some(entry) = state.in_flight.first_entry() {
            if !*entry.get() {
                break;
            }
            let (offset, _) = entry.remove_entry();
            state.commit = Some(offset + 1);
        }
    }

    /// Forget a partition (revoked): its acknowledgements no longer count.
    pub fn forget(&mut self, partition: &Partition) {
        self.partitions.remove(partition);
    }

    /// The offsets to commit now (Kafka's "next offset to read"), each reported once.
    pub fn take_commits(&mut self) -> Vec<(Partition, i64)> {
        self.partitions.iter_mut().filter_map(|(partition, state)| state.commit.take().map(|offset| (partition.clone(), offset))).collect()
    }

    /// Messages handed on and not yet accepted.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|state| state.in_flight.values().filter(|done| !**done).count()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_the_contiguous_accepted_run() {
        let p0: Partition = ("t".into(), 0);
        let p1: Partition = ("t".into(), 1);
        let mut tracker = OffsetTracker::default();
        for offset in 10..15 {
            tracker.received(&p0, offset);
        }
        tracker.received(&p1, 3);
        tracker.accepted(&p0, 12);
        tracker.accepted(&p0, 11);
        assert_eq!(tracker.take_commits(), [], "10 is still in flight");
        tracker.accepted(&p0, 10);
        assert_eq!(tracker.take_commits(), [(p0.clone(), 13)]);
        assert_eq!(tracker.take_commits(), [], "reported once");
        tracker.accepted(&p1, 3);
        tracker.accepted(&p0, 14);
        let mut commits = tracker.take_commits();
        commits.sort();
        assert_eq!(commits, [(p1.clone(), 4)], "13 still blocks 14");
        assert_eq!(tracker.in_flight(), 1);
        tracker.forget(&p0);
        tracker.accepted(&p0, 13);
        assert_eq!(tracker.take_commits(), []);
    }
}
