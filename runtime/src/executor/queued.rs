//! A sink with a store-and-forward queue: a writer thread puts what the routes send into
//! the queue (which acknowledges it), a forwarder task takes it out in order and delivers
//! it with a [`SinkDriver`].
//!
//! The writer groups whatever is waiting (up to [`GROUP_LIMIT`] messages) into one write
//! and one fsync — group commit — and only then lets the messages go, which is what
//! acknowledges them to their source. The forwarder commits a batch only after the sink
//! accepted it (or it expired, or went to `$deadletter`), so a crash re-delivers at most
//! the batch in flight.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use weir_core::Message;

use super::deadletter::{DeadLetter, LastResort};
use super::dispatch::{Dispatcher, Work};
use super::sink_worker::{Attempt, Delivered, SinkDriver};
use crate::queue::{Item, Position, SinkQueue};
use crate::telemetry;

/// At most this many messages are written (and fsynced) as one group.
pub const GROUP_LIMIT: usize = 1024;
/// A delivery that takes longer than this counts as an outage of the sink (for telling
/// replayed backlog from live traffic).
const STALLED: std::time::Duration = std::time::Duration::from_secs(2);
/// A forwarder reads at most this many bytes per batch.
const BATCH_BYTES: usize = 4 << 20;

/// Takes a sink's channel and writes it to the queue.
pub struct QueueWriter {
    pub queue: Arc<SinkQueue>,
    pub channel: mpsc::Receiver<Work>,
    /// For messages too large for the queue; `None` when this is the dead-letter sink.
    pub dispatcher: Option<Arc<Dispatcher>>,
    /// Cancelled when shutdown stops waiting for space in a full queue.
    pub abandon: CancellationToken,
    /// For a dead letter too large for this queue, when this is the dead-letter sink's.
    pub last_resort: LastResort,
}

impl QueueWriter {
    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new().name(format!("weir-queue-{}", self.queue.sink)).spawn(move || self.run())
    }

    fn run(mut self) {
        let default_ttl_ms = self.queue.settings().time_to_live.as_millis() as u64;
        let mut group = Vec::with_capacity(GROUP_LIMIT);
        loop {
            let mut stop = false;
            match self.channel.blocking_recv() {
                Some(work) => stop |= take(work, &mut group, default_ttl_ms),
                None => stop = true,
            }
            while !stop && group.len() < GROUP_LIMIT {
                match self.channel.try_recv() {
                    Ok(work) => stop |= take(work, &mut group, default_ttl_ms),
                    Err(_) => break,
                }
            }
            if !group.is_empty() {
                // The messages stay in `acks` (unacknowledged) until the group is durable.
                let acks: Vec<weir_core::Ack> = group.iter().map(|item: &Item| item.message.ack.clone()).collect();
                let abandon = self.abandon.clone();
                match self.queue.enqueue(std::mem::take(&mut group), &move || abandon.is_cancelled()) {
                    Ok(unqueued) => {
                        for (message, detail) in unqueued.too_large {
                            self.dead_letter(message, detail);
                        }
                        for message in &unqueued.not_written {
                            message.ack.fail();
                        }
                        if !unqueued.not_written.is_empty() {
                            warn!(sink = %self.queue.sink, messages = unqueued.not_written.len(), "shutdown while the queue was full: these messages stay unacknowledged at their source");
                        }
                    }
                    // Only at shutdown: until then a failed write is retried (`SinkQueue::enqueue`).
                    Err(err) => {
                        warn!(sink = %self.queue.sink, error = %format!("{err:#}"), messages = acks.len(), "shutdown while the queue could not be written: these messages stay unacknowledged at their source");
                        for ack in &acks {
                            ack.fail();
                        }
                    }
                }
                drop(acks);
            }
            if stop {
                break;
            }
        }
        info!(sink = %self.queue.sink, "queue writer stopped");
    }

    fn dead_letter(&self, message: Message, detail: String) {
        match &self.dispatcher {
            Some(dispatcher) => {
                dispatcher.dead_letter_blocking(DeadLetter::new(message, "too-large", detail).sink(&self.queue.sink));
            }
            None => self.last_resort.keep(&message, &format!("too large for the dead-letter queue: {detail}")),
        }
    }
}

/// Turn one piece of work into a queue item; true on `Stop`.
fn take(work: Work, group: &mut Vec<Item>, default_ttl_ms: u64) -> bool {
    match work {
        Work::Message { message, priority, expires_ms, .. } => {
            let meta = message.meta();
            let mut expires_ms = if expires_ms == 0 { meta.ingest_time_ms + default_ttl_ms } else { expires_ms };
            // An MQTT 5 message expiry is honoured too.
            if let Some(expiry) = meta.expiry_secs {
                expires_ms = expires_ms.min(meta.ingest_time_ms + u64::from(expiry) * 1000);
            }
            group.push(Item { message, priority, expires_ms });
            false
        }
        Work::Stop => true,
    }
}

/// Delivers a queue's records to its sink, oldest first within a priority.
pub struct Forwarder {
    pub queue: Arc<SinkQueue>,
    pub driver: SinkDriver,
    /// Messages per batch, unless the sink asks for other [`weir_core::connector::Batching`].
    pub batch_size: usize,
    /// Cancelled at shutdown (after the writer stopped): deliver one last batch (the one a
    /// batching sink was gathering; one try) and stop. The rest stays queued.
    pub stop: CancellationToken,
}

impl Forwarder {
    pub async fn run(mut self) {
        let sink = self.queue.sink.to_string();
        // Records before these positions were queued before weir started or before the
        // sink's last outage ended: they are the replayed backlog.
        let mut replay_until: BTreeMap<u8, Position> = self.queue.write_positions();
        // Depth and age gauges, once a second (also while the sink is down and nothing moves).
        let ticker = {
            let (queue, stop) = (self.queue.clone(), self.stop.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
                while tokio::select! { _ = every.tick() => true, () = stop.cancelled() => false } {
                    queue.refresh_metrics();
                }
            })
        };
        let batching = self.driver.sink.batching();
        let max_messages = batching.map(|b| b.max_messages).unwrap_or(self.batch_size).max(1);
        let max_bytes = batching.map(|b| b.max_bytes).unwrap_or(BATCH_BYTES).max(1);
        let max_age = batching.map(|b| b.max_age).unwrap_or_default();
        loop {
            // At shutdown one last batch goes (the one a batching sink was gathering), then stop.
            let stopping = self.stop.is_cancelled();
            let queue = self.queue.clone();
            let peek = match tokio::task::spawn_blocking(move || queue.peek(max_messages, max_bytes)).await {
                Ok(Ok(peek)) => peek,
                Ok(Err(err)) => {
                    error!(sink, error = %format!("{err:#}"), "could not read the queue; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                        () = self.stop.cancelled() => break,
                    }
                }
                Err(_) => break,
            };
            let Some(peek) = peek else {
                if stopping {
                    break;
                }
                tokio::select! {
                    () = self.queue.written.notified() => continue,
                    () = self.stop.cancelled() => continue,
                }
            };
            // A sink that wants bigger batches: wait for more until the oldest is `max_age` old
            // (at shutdown, what is there goes now).
            let bytes: usize = peek.records.iter().map(|r| r.message.payload.len()).sum();
            if let Some(first) = peek.records.first()
                && !stopping
                && !max_age.is_zero()
                && (peek.records.len() as u64) < max_messages as u64
                && bytes < max_bytes
            {
                let waited = std::time::Duration::from_millis(weir_core::message::now_ms().saturating_sub(first.enqueued_ms));
                if let Some(left) = max_age.checked_sub(waited).filter(|left| !left.is_zero()) {
                    tokio::select! {
                        () = tokio::time::sleep(left) => {}
                        () = self.queue.written.notified() => {}
                        () = self.stop.cancelled() => {}
                    }
                    continue;
                }
            }
            let now = weir_core::message::now_ms();
            let (expired, live): (Vec<_>, Vec<_>) = peek.records.iter().partition(|r| r.is_expired(now));
            let messages: Vec<Message> = live.iter().map(|r| r.message.clone()).collect();
            if !messages.is_empty() {
                let started = std::time::Instant::now();
                match self.driver.attempt(&messages).await {
                    Attempt::Done(Delivered::Done) => {}
                    Attempt::Done(Delivered::Abandoned) => break,
                    Attempt::Unavailable(_) if stopping => break,
                    Attempt::Unavailable(delay) => {
                        // Wait, then read the batch again: what expired meanwhile drops out.
                        tokio::select! {
                            () = tokio::time::sleep(delay) => continue,
                            () = self.stop.cancelled() => break,
                        }
                    }
                }
                // After a failed try, or one that stalled (an MQTT broker that went away while
                // a batch waited for its acknowledgements), what queued up meanwhile is backlog.
                if self.driver.recovered() || started.elapsed() > STALLED {
                    replay_until = self.queue.write_positions();
                }
                let replayed = replay_until.get(&peek.lane).is_some_and(|until| peek.start < *until);
                let kind = if replayed { "replayed" } else { "live" };
                metrics::counter!(telemetry::QUEUE_DELIVERED, "sink" => sink.clone(), "kind" => kind).increment(messages.len() as u64);
            }
            // Expired messages are counted once the batch is done with (a failed try re-reads it).
            if !expired.is_empty() {
                let oldest = expired.iter().map(|r| now.saturating_sub(r.message.meta().ingest_time_ms)).max().unwrap_or(0);
                warn!(
                    sink,
                    lane = peek.lane,
                    messages = expired.len(),
                    oldest_age_s = oldest / 1000,
                    "dropped messages that waited longer than their time to live"
                );
                metrics::counter!(telemetry::QUEUE_EXPIRED, "sink" => sink.clone()).increment(expired.len() as u64);
            }
            let queue = self.queue.clone();
            match tokio::task::spawn_blocking(move || queue.commit(&peek)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    error!(sink, error = %format!("{err:#}"), "could not record delivery in the queue; these messages will be delivered again after a restart")
                }
                Err(_) => break,
            }
            if stopping {
                break;
            }
        }
        ticker.abort();
        self.driver.close().await;
    }
}
