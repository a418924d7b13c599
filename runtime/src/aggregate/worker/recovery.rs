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
//! When closing windows fails (the clock's, or a message's that ended a window), the step is
//! taken again one close at a time, and a window whose close fails alone is given up (see
//! [`super::closing`]): the message that ended it is counted, not blamed.

use tracing::{error, warn};
use weir_core::Message;

use super::{AggregateRunner, WindowTable};
use crate::telemetry;
use crate::wasm::Failure;

/// What the window table was given since the last checkpoint, in order.
pub(super) enum Journaled {
    /// A message, assigned at `time` (its event time, or the processing time it was given).
    Input { message: Message, time: u64 },
    /// The clock advanced to this time and closed windows.
    Advance(u64),
}

impl AggregateRunner {
    /// A call on `batch` failed (`done` marks what was dealt with before it did): roll back,
    /// then give the batch's other messages to the new instance one at a time.
    pub(super) fn recover(&mut self, failure: Failure, batch: &[Message], times: &[u64], done: &mut [bool]) {
        let left = done.iter().filter(|done| !**done).count();
        warn!(module = %self.name, reason = failure.reason.as_str(), detail = %failure.detail, batch = left, journaled = self.journal.len(),
            "aggregate call failed; windows rolled back to the last checkpoint and the messages since given to a new instance, then this batch one at a time");
        metrics::counter!(telemetry::MODULE_FAILURES, "module" => self.name.to_string(), "reason" => failure.reason.as_str()).increment(1);
        let closing = self.close_failed.take().is_some();
        if !self.rollback() {
            return self.give_up(batch, done, &failure);
        }
        if left == 1 && !closing {
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
            let mut one = |runner: &mut Self| runner.feed(&batch[index..=index], &times[index..=index], &mut [false]);
            if let Err(mut alone) = one(self) {
                metrics::counter!(telemetry::MODULE_FAILURES, "module" => self.name.to_string(), "reason" => alone.reason.as_str()).increment(1);
                match self.retry_closes(&mut alone, &mut one) {
                    // It ended windows whose close failed: counted, they were given up.
                    Ok(true) => {}
                    Ok(false) => self.dead_letter(batch[index].clone(), alone.reason.as_str(), alone.detail.clone()),
                    Err(()) => {
                        done[index] = true;
                        self.dead_letter(batch[index].clone(), alone.reason.as_str(), alone.detail.clone());
                        return self.give_up(batch, done, &alone);
                    }
                }
            }
            done[index] = true;
        }
    }

    /// Closing what the clock passed at `now` failed: close those windows again one at a time
    /// on a new instance; a window whose close fails alone is given up (it goes to
    /// `$deadletter` with its state) and the others close.
    pub(super) fn recover_advance(&mut self, mut failure: Failure, now: u64) {
        warn!(module = %self.name, reason = failure.reason.as_str(), detail = %failure.detail, "closing windows failed; windows rolled back to the last checkpoint and closed one at a time on a new instance");
        metrics::counter!(telemetry::MODULE_FAILURES, "module" => self.name.to_string(), "reason" => failure.reason.as_str()).increment(1);
        // A clock step only closes windows; should it fail otherwise, the next tick tries again.
        self.close_failed.get_or_insert(super::closing::Closing::Several);
        if self.retry_closes(&mut failure, &mut |runner: &mut Self| runner.try_advance(now)).is_err() {
            self.give_up(&[], &mut [], &failure);
        }
    }

    /// Back to the last checkpoint, then the journal again on a new instance: the windows as
    /// they were before the call that failed. False (logged) if that cannot be done.
    pub(super) fn rollback(&mut self) -> bool {
        self.restart_from_checkpoint();
        if self.instance.is_none() {
            return false;
        }
        let journal = std::mem::take(&mut self.journal);
        self.replaying = true;
        let replayed = self.replay(&journal);
        self.replaying = false;
        // A replay that failed closing says nothing about the step being recovered.
        self.close_failed = None;
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
