//! A sink worker: takes batches from a sink's queue, delivers them, retries while the
//! destination is unavailable, dead-letters what the sink rejects. A message is dropped
//! (and so acknowledged, once its other copies are done) only after the sink accepted it.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use weir_core::{Backoff, Message, Sink, SinkError};

use super::deadletter::{self, DeadLetter};
use super::dispatch::{Dispatcher, Work};
use crate::telemetry;

pub struct SinkWorker {
    pub name: Arc<str>,
    pub sink: Box<dyn Sink>,
    pub queue: mpsc::Receiver<Work>,
    pub batch_size: usize,
    /// For rejected messages; `None` for the dead-letter sink itself.
    pub dispatcher: Option<Arc<Dispatcher>>,
    /// Cancelled when shutdown stops waiting for an unavailable destination.
    pub abandon: CancellationToken,
}

impl SinkWorker {
    pub async fn run(mut self) {
        let mut work = Vec::with_capacity(self.batch_size);
        let mut backoff = Backoff::default();
        loop {
            if self.queue.recv_many(&mut work, self.batch_size).await == 0 {
                break;
            }
            let stop_at = work.iter().position(|w| matches!(w, Work::Stop));
            let stop = stop_at.is_some();
            let batch: Vec<Message> = work
                .drain(..)
                .take(stop_at.unwrap_or(usize::MAX))
                .filter_map(|w| match w {
                    Work::Message(_, message) => Some(message),
                    Work::Stop => None,
                })
                .collect();
            if !batch.is_empty() {
                self.deliver(batch, &mut backoff).await;
            }
            if stop {
                break;
            }
        }
        if let Err(err) = self.sink.close().await {
            warn!(sink = %self.name, %err, "closing the sink failed");
        }
        info!(sink = %self.name, "sink stopped");
    }

    async fn deliver(&mut self, batch: Vec<Message>, backoff: &mut Backoff) {
        let name = self.name.to_string();
        loop {
            // Shutdown may stop waiting for a destination that does not answer.
            let outcome = tokio::select! {
                outcome = self.sink.deliver(&batch) => outcome,
                () = self.abandon.cancelled() => Err(SinkError::Unavailable(anyhow::anyhow!("shutdown stopped waiting for the destination"))),
            };
            match outcome {
                Ok(()) => {
                    backoff.reset();
                    metrics::counter!(telemetry::SINK_MESSAGES, "sink" => name.clone()).increment(batch.len() as u64);
                    metrics::counter!(telemetry::SINK_BYTES, "sink" => name.clone()).increment(batch.iter().map(|m| m.payload.len() as u64).sum());
                    return;
                }
                Err(SinkError::Rejected(rejected)) => {
                    let accepted = batch.len() - rejected.len();
                    metrics::counter!(telemetry::SINK_MESSAGES, "sink" => name.clone()).increment(accepted as u64);
                    for (index, reason) in rejected {
                        let Some(message) = batch.get(index).cloned() else { continue };
                        // A rejected dead letter is not dead-lettered again (that could loop).
                        let is_dead_letter = message.meta().property(deadletter::REASON).is_some();
                        match &self.dispatcher {
                            Some(dispatcher) if !is_dead_letter => dispatcher.dead_letter(DeadLetter::new(message, "sink-rejected", reason).sink(&name)).await,
                            _ => error!(sink = %name, %reason, "a dead letter was rejected by the dead-letter sink; it is dropped"),
                        }
                    }
                    return;
                }
                Err(SinkError::Unavailable(err)) => {
                    metrics::counter!(telemetry::SINK_RETRIES, "sink" => name.clone()).increment(1);
                    let delay = backoff.next_delay();
                    warn!(sink = %name, error = %format!("{err:#}"), retry_in = ?delay, batch = batch.len(), "sink unavailable; will retry");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.abandon.cancelled() => {
                            for message in &batch {
                                message.ack.fail();
                            }
                            warn!(sink = %name, batch = batch.len(), "shutting down with undelivered messages; they stay unacknowledged at their source");
                            return;
                        }
                    }
                }
            }
        }
    }
}
