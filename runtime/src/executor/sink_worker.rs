//! Delivering to a sink.
//!
//! - [`SinkDriver`]: hands a batch to a sink, retries while the destination is unavailable,
//!   dead-letters what the sink rejects. Used directly, and by a queue's forwarder.
//! - [`SinkWorker`]: a sink without a queue: batches from the sink's channel go straight to
//!   the driver. A message is acknowledged (once its other copies are done) only after the
//!   sink accepted it; what shutdown abandons stays unacknowledged at its source.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use weir_core::{Backoff, Message, Sink, SinkError};

use super::deadletter::{self, DeadLetter};
use super::dispatch::{Dispatcher, Work};
use crate::telemetry;

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Every message was accepted by the sink or handed to `$deadletter`.
    Done,
    /// Shutdown stopped the retries, or a dead letter could not be handed on.
    Abandoned,
}

/// How one try ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Done(Delivered),
    /// The destination is unavailable: try again after this long.
    Unavailable(std::time::Duration),
}

pub struct SinkDriver {
    pub name: Arc<str>,
    pub sink: Box<dyn Sink>,
    /// For rejected messages; `None` for the dead-letter sink itself.
    pub dispatcher: Option<Arc<Dispatcher>>,
    /// Cancelled when shutdown stops waiting for an unavailable destination.
    pub abandon: CancellationToken,
    backoff: Backoff,
    /// Set when a delivery failed; cleared by the next success (see [`SinkDriver::recovered`]).
    failing: bool,
    recovered: bool,
}

impl SinkDriver {
    pub fn new(name: Arc<str>, sink: Box<dyn Sink>, dispatcher: Option<Arc<Dispatcher>>, abandon: CancellationToken) -> Self {
        SinkDriver { name, sink, dispatcher, abandon, backoff: Backoff::default(), failing: false, recovered: false }
    }

    /// Whether the last delivery was the first success after an outage (and forget it).
    pub fn recovered(&mut self) -> bool {
        std::mem::take(&mut self.recovered)
    }

    /// Deliver, retrying with backoff while the destination is unavailable.
    pub async fn deliver(&mut self, batch: &[Message]) -> Delivered {
        loop {
            match self.attempt(batch).await {
                Attempt::Done(delivered) => return delivered,
                Attempt::Unavailable(delay) => {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.abandon.cancelled() => return Delivered::Abandoned,
                    }
                }
            }
        }
    }

    /// One try. On `Unavailable`, the caller waits the delay it says and tries again
    /// (a queue's forwarder re-reads the batch first, so expired messages drop out).
    pub async fn attempt(&mut self, batch: &[Message]) -> Attempt {
        let name = self.name.to_string();
        // Shutdown may stop waiting for a destination that does not answer.
        let outcome = tokio::select! {
            outcome = self.sink.deliver(batch) => outcome,
            () = self.abandon.cancelled() => return Attempt::Done(Delivered::Abandoned),
        };
        match outcome {
            Ok(()) => {
                self.succeeded();
                metrics::counter!(telemetry::SINK_MESSAGES, "sink" => name.clone()).increment(batch.len() as u64);
                metrics::counter!(telemetry::SINK_BYTES, "sink" => name).increment(batch.iter().map(|m| m.payload.len() as u64).sum());
                Attempt::Done(Delivered::Done)
            }
            Err(SinkError::Rejected(rejected)) => {
                self.succeeded();
                let accepted = batch.len() - rejected.len();
                metrics::counter!(telemetry::SINK_MESSAGES, "sink" => name.clone()).increment(accepted as u64);
                let mut outcome = Delivered::Done;
                for (index, reason) in rejected {
                    let Some(message) = batch.get(index).cloned() else { continue };
                    // A rejected dead letter is not dead-lettered again (that could loop).
                    let is_dead_letter = message.meta().property(deadletter::REASON).is_some();
                    match &self.dispatcher {
                        Some(dispatcher) if !is_dead_letter => {
                            if !dispatcher.dead_letter(DeadLetter::new(message, "sink-rejected", reason).sink(&name)).await {
                                outcome = Delivered::Abandoned;
                            }
                        }
                        _ => error!(sink = %name, %reason, "a dead letter was rejected by the dead-letter sink; it is dropped"),
                    }
                }
                Attempt::Done(outcome)
            }
            Err(SinkError::Unavailable(err)) => {
                self.failing = true;
                metrics::counter!(telemetry::SINK_RETRIES, "sink" => name.clone()).increment(1);
                let delay = self.backoff.next_delay();
                warn!(sink = %name, error = %format!("{err:#}"), retry_in = ?delay, batch = batch.len(), "sink unavailable; will retry");
                Attempt::Unavailable(delay)
            }
        }
    }

    fn succeeded(&mut self) {
        self.backoff.reset();
        if std::mem::take(&mut self.failing) {
            self.recovered = true;
            info!(sink = %self.name, "sink available again");
        }
    }

    pub async fn close(mut self) {
        if let Err(err) = self.sink.close().await {
            warn!(sink = %self.name, %err, "closing the sink failed");
        }
        info!(sink = %self.name, "sink stopped");
    }
}

fn bytes_of(work: &[Work]) -> usize {
    work.iter().map(|w| if let Work::Message { message, .. } = w { message.payload.len() } else { 0 }).sum()
}

/// A sink without a queue.
pub struct SinkWorker {
    pub driver: SinkDriver,
    pub queue: mpsc::Receiver<Work>,
    pub batch_size: usize,
}

impl SinkWorker {
    pub async fn run(mut self) {
        let batching = self.driver.sink.batching();
        let max = batching.map(|b| b.max_messages).unwrap_or(self.batch_size).max(1);
        let mut work = Vec::with_capacity(max.min(4096));
        loop {
            if self.queue.recv_many(&mut work, max).await == 0 {
                break;
            }
            // A sink that wants bigger batches: wait for more, up to its age limit.
            if let Some(batching) = batching.filter(|b| !b.max_age.is_zero()) {
                let deadline = tokio::time::Instant::now() + batching.max_age;
                while work.len() < max && bytes_of(&work) < batching.max_bytes && !work.iter().any(|w| matches!(w, Work::Stop)) {
                    let room = max - work.len();
                    match tokio::time::timeout_at(deadline, self.queue.recv_many(&mut work, room)).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            }
            let stop_at = work.iter().position(|w| matches!(w, Work::Stop));
            let batch: Vec<Message> = work
                .drain(..)
                .take(stop_at.unwrap_or(usize::MAX))
                .filter_map(|w| match w {
                    Work::Message { message, .. } => Some(message),
                    Work::Stop => None,
                })
                .collect();
            if !batch.is_empty() && self.driver.deliver(&batch).await == Delivered::Abandoned {
                for message in &batch {
                    message.ack.fail();
                }
                warn!(sink = %self.driver.name, batch = batch.len(), "shutting down with undelivered messages; they stay unacknowledged at their source");
            }
            if stop_at.is_some() {
                break;
            }
        }
        self.driver.close().await;
    }
}
