//! Recovering from a failed call (a trap, the deadline, the memory cap) without losing or
//! double-counting a message.
//!
//! A failed call takes the instance, and with it every window's state since the last
//! checkpoint. So the runner goes back to that checkpoint (window table and states), gives a
//! new instance what it was given since (the journal: messages with the times they were
//! assigned at, and clock advances) and then the batch that failed one message at a time: a
//! message that fails alone goes to `$deadletter` with the reason (and the runner rolls back
//! once more), the others are counted once. A replay sends nothing on: its dead letters and
//! refusals went out the first time, and a window it closes again was emitted already (see
//! `emitted_since`). Only if a replay fails too (a module that does not give the same result
//! twice) does the runner give up on the journal: its messages are left unacknowledged, and
//! their source sends them again.
//!
//! When the clock closes windows and that fails, they are closed one at a time on a new
//! instance; one whose close fails there too is given up: it goes to `$deadletter` (reason
//! `close-failed`) with its state as the module snapshots it, and the others close as usual.

use tracing::{error, warn};
use weir_core::{Message, Metadata, Property};

use super::{AggregateRunner, Slot, Window, WindowId, WindowTable};
use crate::aggregate::windows::Step;
use crate::telemetry;
use crate::wasm::Failure;

/// What the window table was given since the last checkpoint, in order.
pub(super) enum Journaled {
    /// A message, assigned at `time` (its event time, or the processing time it was given).
    Input { message: Message, time: u64 },
    /// The clock advanced to this time and closed windows.
    Advance(u64),
    /// The clock advanced to this time and closed windows one at a time, but these, whose
    /// close failed (they went to `$deadletter` with their state).
    GaveUp { now: u64, windows: Vec<WindowId> },
}

impl AggregateRunner {
    /// A call on `batch` failed (`done` marks what was dealt with before it did): roll back,
    /// then give the batch's other messages to the new instance one at a time.
    pub(super) fn recover(&mut self, failure: Failure, batch: &[Message], times: &[u64], done: &mut [bool]) {
        let left = done.iter().filter(|done| !**done).count();
        warn!(module = %self.name, reason = failure.reason.as_str(), detail = %failure.detail, batch = left, journaled = self.journal.len(),
            "aggregate call failed; windows rolled back to the last checkpoint and the messages since given to a new instance, then this batch one at a time");
        metrics::counter!(telemetry::MODULE_FAILURES, "module" => self.name.to_string(), "reason" => failure.reason.as_str()).increment(1);
        if !self.rollback() {
            return self.give_up(batch, done, &failure);
        }
        if left == 1 {
            // The one message left is the one that failed.
            if let Some(index) = done.iter().position(|done| !*done) {
                done[index] = true;
                self.dead_letter(batch[index].clone(), failure.reason.as_str(), failure.detail.clone());
            }
            return;
        }
        for index in 0..batch.len() {
            if done[index] {
                continue;
            }
            if let Err(alone) = self.feed(&batch[index..=index], &times[index..=index], &mut [false]) {
                done[index] = true;
                self.dead_letter(batch[index].clone(), alone.reason.as_str(), alone.detail.clone());
                metrics::counter!(telemetry::MODULE_FAILURES, "module" => self.name.to_string(), "reason" => alone.reason.as_str()).increment(1);
                if !self.rollback() {
                    return self.give_up(batch, done, &alone);
                }
            }
            done[index] = true;
        }
    }

    /// Closing what the clock passed at `now` failed: roll back and close those windows one at
    /// a time on a new instance. A window whose close fails alone is given up (it goes to
    /// `$deadletter` with its state) and the others are tried again, until all closed.
    pub(super) fn recover_advance(&mut self, failure: Failure, now: u64) {
        warn!(module = %self.name, reason = failure.reason.as_str(), detail = %failure.detail, "closing windows failed; windows rolled back to the last checkpoint and closed one at a time on a new instance");
        metrics::counter!(telemetry::MODULE_FAILURES, "module" => self.name.to_string(), "reason" => failure.reason.as_str()).increment(1);
        let mut given_up = Vec::new();
        loop {
            if !self.rollback() {
                return self.give_up(&[], &mut [], &failure);
            }
            match self.close_one_by_one(now, &given_up) {
                Ok(letters) => {
                    for letter in letters {
                        self.dead_letter(letter, "close-failed", format!("closing the window failed on a new instance too: {failure}"));
                    }
                    self.journal.push(Journaled::GaveUp { now, windows: given_up });
                    return;
                }
                Err((window, alone)) => {
                    error!(module = %self.name, window, %alone, "a window could not be closed on a new instance either; its state goes to $deadletter");
                    given_up.push(window);
                }
            }
        }
    }

    /// Advance the table to `now`; close the windows it closes one per call, but those in
    /// `given_up`, whose states (snapshots) come back as dead letters to send. `Err`: the
    /// window whose close failed, and how.
    fn close_one_by_one(&mut self, now: u64, given_up: &[WindowId]) -> Result<Vec<Message>, (WindowId, Failure)> {
        let closing = self.advance_table(now);
        let mut letters = Vec::new();
        for (window, slot) in closing {
            if given_up.contains(&window.id) {
                let snapshot = self.instance.as_mut().and_then(|instance| instance.snapshot_windows(&[window.id]).ok()).and_then(|mut states| states.pop());
                letters.push(window_state(&window, &slot, snapshot.or(slot.checkpointed.clone())));
                continue;
            }
            let id = window.id;
            self.close(vec![(window, slot)]).map_err(|failure| (id, failure))?;
        }
        Ok(letters)
    }

    /// Advance the table to `now`: the windows it closes.
    fn advance_table(&mut self, now: u64) -> Vec<(Window, Slot)> {
        self.table.advance(now, &mut self.steps);
        self.changed = true;
        self.steps
            .drain(..)
            .filter_map(|step| match step {
                Step::Close(window, slot) => Some((window, *slot)),
                _ => None,
            })
            .collect()
    }

    /// Back to the last checkpoint, then the journal again on a new instance: the windows as
    /// they were before the call that failed. False (logged) if that cannot be done.
    fn rollback(&mut self) -> bool {
        self.restart_from_checkpoint();
        if self.instance.is_none() {
            return false;
        }
        let journal = std::mem::take(&mut self.journal);
        self.replaying = true;
        let replayed = self.replay(&journal);
        self.replaying = false;
        match replayed {
            Ok(()) => true,
            Err(failure) => {
                error!(module = %self.name, %failure, journaled = journal.len(), "giving the messages since the last checkpoint to a new instance failed too (does the module give the same result twice?)");
                self.journal = journal;
                false
            }
        }
    }

    /// Give the table and the instance `journal` again, consecutive messages as one batch.
    fn replay(&mut self, journal: &[Journaled]) -> Result<(), Failure> {
        let mut at = 0;
        while at < journal.len() {
            match &journal[at] {
                Journaled::Advance(now) => self.try_advance(*now)?,
                Journaled::GaveUp { now, windows } => {
                    for (window, slot) in self.advance_table(*now) {
                        if !windows.contains(&window.id) {
                            self.close(vec![(window, slot)])?;
                        }
                    }
                }
                Journaled::Input { .. } => {
                    let (mut batch, mut times) = (Vec::new(), Vec::new());
                    while let Some(Journaled::Input { message, time }) = journal.get(at) {
                        batch.push(message.clone());
                        times.push(*time);
                        at += 1;
                    }
                    self.feed(&batch, &times, &mut vec![false; batch.len()])?;
                    continue;
                }
            }
            at += 1;
        }
        Ok(())
    }

    /// Recovery failed: the old way. The batch's messages go to `$deadletter`, the journal's
    /// messages are left unacknowledged (their source sends them again), and a new instance
    /// starts from the last checkpoint.
    fn give_up(&mut self, batch: &[Message], done: &mut [bool], failure: &Failure) {
        for (message, done) in batch.iter().zip(done.iter_mut()) {
            if !std::mem::replace(done, true) {
                self.dead_letter(message.clone(), failure.reason.as_str(), failure.detail.clone());
            }
        }
        for entry in self.journal.drain(..) {
            if let Journaled::Input { message, .. } = entry {
                message.ack.fail();
            }
        }
        self.restart_from_checkpoint();
    }

    /// A new instance, and the window table and states of the last checkpoint.
    fn restart_from_checkpoint(&mut self) {
        self.instance = None;
        self.steps.clear();
        self.table = WindowTable::new(self.spec.table);
        if let Some(checkpoint) = self.last.clone() {
            self.load(checkpoint);
        }
        self.start_instance();
    }
}

/// A window given up, as a dead letter: its state (what the module snapshots of it) as the
/// payload, its key and bounds as properties, the topic and source its results would have had.
fn window_state(window: &Window, slot: &Slot, state: Option<Vec<u8>>) -> Message {
    let (topic, source) = super::topic_and_source(slot.origin.as_ref());
    let mut meta = Metadata::new(source, topic);
    meta.properties.push(Property::new("window_key", window.key.to_string()));
    meta.properties.push(Property::new("window_start", window.start_ms.to_string()));
    meta.properties.push(Property::new("window_end", window.end_ms.to_string()));
    Message::new(state.unwrap_or_default(), meta, weir_core::Ack::none())
}
