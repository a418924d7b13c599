//! Delivering to a sink.
//!
//! - [`SinkDriver`]: hands a batch to a sink, retries while the destination is unavailable,
//!   dead-letters what the sink rejects. Used directly, and by a queue's forwarder.
//! - [`SinkWorker`]: a sink without a queue: batches from the sink's channel go straight to
//!   the driver, or, for a sink that pipelines ([`Sink::pipeline_depth`]), several at once,
//!   each finished in order when its acceptance comes back. A message is acknowledged (once
//!   its other copies are done) only after the sink accepted it; what shutdown abandons
//!   stays unacknowledged at its source.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use weir_core::connector::Pending;
use weir_core::{Backoff, Message, Sink, SinkError};

use super::deadletter::{self, DeadLetter, LastResort};
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
    /// For a dead letter this sink rejects (it cannot be dead-lettered again).
    pub last_resort: LastResort,
    backoff: Backoff,
    /// Set when a delivery failed; cleared by the next success (see [`SinkDriver::recovered`]).
    failing: bool,
    recovered: bool,
}

impl SinkDriver {
    pub fn new(name: Arc<str>, sink: Box<dyn Sink>, dispatcher: Option<Arc<Dispatcher>>, abandon: CancellationToken, last_resort: LastResort) -> Self {
        SinkDriver { name, sink, dispatcher, abandon, last_resort, backoff: Backoff::default(), failing: false, recovered: false }
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
        // Shutdown may stop waiting for a destination that does not answer.
        let outcome = tokio::select! {
            outcome = self.sink.deliver(batch) => outcome,
            () = self.abandon.cancelled() => return Attempt::Done(Delivered::Abandoned),
        };
        self.settle(batch, outcome).await
    }

    /// Finish a pipelined batch whose acceptance came back; retries it while the
    /// destination is unavailable, like [`SinkDriver::deliver`].
    async fn finish(&mut self, batch: &[Message], outcome: Option<Result<(), SinkError>>) -> Delivered {
        let Some(outcome) = outcome else { return Delivered::Abandoned };
        match self.settle(batch, outcome).await {
            Attempt::Done(delivered) => delivered,
            Attempt::Unavailable(delay) => {
                tokio::select! {
                    () = tokio::time::sleep(delay) => self.deliver(batch).await,
                    () = self.abandon.cancelled() => Delivered::Abandoned,
                }
            }
        }
    }

    /// Count, dead-letter what was rejected, or say when to try again.
    async fn settle(&mut self, batch: &[Message], outcome: Result<(), SinkError>) -> Attempt {
        let name = self.name.to_string();
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
                        _ => self.last_resort.keep(&message, &format!("sink `{name}` rejected it: {reason}")),
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

/// Wait for a pipelined batch's acceptance; `None` when shutdown stops waiting first.
async fn accepted(abandon: &CancellationToken, pending: &mut Pending) -> Option<Result<(), SinkError>> {
    tokio::select! {
        outcome = pending => Some(outcome),
        () = abandon.cancelled() => None,
    }
}

/// What the worker does next.
enum Next {
    Received(usize),
    /// The oldest batch in flight was accepted (or not); `None`: shutdown stopped waiting.
    Finished(Option<Result<(), SinkError>>),
}

/// A message that shutdown kept from its sink stays unacknowledged at its source.
fn abandon_if(delivered: Delivered, sink: &str, batch: &[Message]) {
    if delivered == Delivered::Abandoned {
        for message in batch {
            message.ack.fail();
        }
        warn!(sink, batch = batch.len(), "shutting down with undelivered messages; they stay unacknowledged at their source");
    }
}

impl SinkWorker {
    /// Wait for every batch in flight, oldest first.
    async fn finish_all(&mut self, in_flight: &mut VecDeque<(Vec<Message>, Pending)>) {
        while let Some((batch, mut pending)) = in_flight.pop_front() {
            let outcome = accepted(&self.driver.abandon, &mut pending).await;
            let delivered = self.driver.finish(&batch, outcome).await;
            abandon_if(delivered, &self.driver.name, &batch);
        }
    }

    pub async fn run(mut self) {
        let batching = self.driver.sink.batching();
        let max = batching.map(|b| b.max_messages).unwrap_or(self.batch_size).max(1);
        let depth = self.driver.sink.pipeline_depth().max(1);
        // Batches sent and waiting for their acceptance (pipelined sinks only), oldest first.
        let mut in_flight: VecDeque<(Vec<Message>, Pending)> = VecDeque::new();
        let mut work = Vec::with_capacity(max.min(4096));
        loop {
            // Take new work, or finish the oldest batch in flight: when the pipeline is full,
            // or when it comes back before more work does.
            let full = in_flight.len() >= depth;
            let next = match in_flight.front_mut() {
                Some((_, pending)) if full => Next::Finished(accepted(&self.driver.abandon, pending).await),
                Some((_, pending)) => tokio::select! {
                    biased;
                    outcome = accepted(&self.driver.abandon, pending) => Next::Finished(outcome),
                    received = self.queue.recv_many(&mut work, max) => Next::Received(received),
                },
                None => Next::Received(self.queue.recv_many(&mut work, max).await),
            };
            match next {
                Next::Finished(outcome) => {
                    if let Some((batch, _)) = in_flight.pop_front() {
                        let delivered = self.driver.finish(&batch, outcome).await;
                        abandon_if(delivered, &self.driver.name, &batch);
                    }
                    continue;
                }
                Next::Received(0) => break,
                Next::Received(_) => {}
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
            // The work before a stop, if any. Sized up front: collected from a `filter_map`, the
            // batch grew by doubling (a few reallocations per batch).
            let end = stop_at.unwrap_or(work.len());
            let mut batch: Vec<Message> = Vec::with_capacity(end);
            batch.extend(work.drain(..).take(end).filter_map(|w| match w {
                Work::Message { message, .. } => Some(message),
                Work::Stop => None,
            }));
            if !batch.is_empty() {
                let pipelined = depth > 1 && !self.driver.abandon.is_cancelled();
                let sent = if pipelined { self.driver.sink.send(&batch).await } else { None };
                match sent {
                    Some(Ok(pending)) => in_flight.push_back((batch, pending)),
                    // Not pipelined, or the sink could not send: the batches before it finish
                    // first (keeping their order), then it goes the ordinary way, with retries.
                    Some(Err(_)) | None => {
                        self.finish_all(&mut in_flight).await;
                        let delivered = self.driver.deliver(&batch).await;
                        abandon_if(delivered, &self.driver.name, &batch);
                    }
                }
            }
            if stop_at.is_some() {
                break;
            }
        }
        self.finish_all(&mut in_flight).await;
        self.driver.close().await;
    }
}
