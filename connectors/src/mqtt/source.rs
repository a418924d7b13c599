use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use weir_core::{Ack, AckOutcome, Backoff, BuildContext, Message, QoS, Source, SourceContext, SourceKind};

use super::client::{self, AckToken, Event};
use super::config::{ConnectionConfig, MqttSourceConfig};
use super::exactly_once::{Arrival, Unreleased};

/// Subscribes to topics and hands each message to the pipeline.
pub struct MqttSource {
    connection: ConnectionConfig,
    topics: Vec<String>,
    base_dir: PathBuf,
    default_client_id: String,
}

#[async_trait]
impl SourceKind for MqttSource {
    const TYPE: &'static str = "mqtt";
    type Config = MqttSourceConfig;

    async fn build(mut config: MqttSourceConfig, ctx: &BuildContext) -> anyhow::Result<Box<dyn Source>> {
        // The URL was checked when the config was read (`config::broker_url`).
        config.connection.max_incoming_bytes = Some(max_packet_for(ctx.max_message_bytes));
        Ok(Box::new(MqttSource::new(config.connection, config.topics, &ctx.base_dir, &format!("weir-{}", ctx.name))))
    }
}

impl MqttSource {
    pub fn new(connection: ConnectionConfig, topics: Vec<String>, base_dir: &Path, default_client_id: &str) -> Self {
        MqttSource { connection, topics, base_dir: base_dir.to_owned(), default_client_id: default_client_id.to_owned() }
    }
}

#[async_trait]
impl Source for MqttSource {
    async fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()> {
        let url = self.connection.url.clone();
        let (client, mut eventloop) = client::connect(&self.connection, &self.default_client_id, "", &self.base_dir, true)?;
        // Acknowledgements come back from whichever task dropped the last copy of a message;
        // one task sends them so the event loop never waits on the pipeline.
        let (ack_tx, ack_rx) = mpsc::unbounded_channel::<Settled>();
        let redelivery = Arc::new(Redelivery::default());
        let unreleased = Arc::new(Unreleased::default());
        let acker = tokio::spawn(acknowledge(client.clone(), ack_rx, redelivery.clone(), unreleased.clone(), ctx.clone(), self.connection.clean_session));
        let mut backoff = Backoff::default();
        let mut subscribed = false;
        let source = ctx.name.clone();
        // Registered once: the per-message path only increments.
        let messages_in = metrics::counter!(weir_core::metric_names::SOURCE_MESSAGES, "source" => source.to_string());
        let resent = metrics::counter!(weir_core::metric_names::SOURCE_QOS2_RESENT, "source" => source.to_string());
        // One future for the whole loop, cancelled at shutdown, instead of a `select!` per
        // event: each event's poll future (2.7 KB in rumqttc) would be moved into it again.
        let receiving = async {
            loop {
                let event = match eventloop.buffered() {
                    Some(event) => Ok(event),
                    None => eventloop.poll().await,
                };
                match event {
                    Ok(Event::Connected { session_present, .. }) => {
                        backoff.reset();
                        info!(%source, broker = %url, session_present, "connected");
                        if !session_present {
                            unreleased.forget_all();
                        }
                        // A broker that lost our session (or a clean session) needs the
                        // subscriptions again, or the pipeline would go silently deaf.
                        if !session_present || !subscribed {
                            client.subscribe(&self.topics, self.connection.qos).await?;
                            subscribed = true;
                            debug!(%source, topics = ?self.topics, "subscribed");
                        } else {
                            // The broker kept the session and its subscriptions.
                            ctx.ready.send_replace(true);
                        }
                    }
                    Ok(Event::Publish(received)) => {
                        let token = received.ack_token();
                        if let Some(pkid) = token.exactly_once() {
                            match unreleased.arrived(pkid) {
                                Arrival::New => {}
                                Arrival::InPipeline => {
                                    resent.increment(1);
                                    continue;
                                }
                                Arrival::Accepted => {
                                    resent.increment(1);
                                    let _ = ack_tx.send(Settled::Accepted(token));
                                    continue;
                                }
                            }
                        }
                        let (payload, meta) = received.to_parts(source.clone());
                        messages_in.increment(1);
                        // A large message waits for room for its bytes instead of piling up.
                        let Ok(bytes) = ctx.reserve_payload(payload.len()).await else { return Ok(()) };
                        if received.qos() == QoS::AtMostOnce {
                            // No acknowledgement to hold back, but no reason to drop either:
                            // wait for room like any subscriber reading at its own pace, so
                            // TCP slows the broker down (dropping here lost up to 92 % of an
                            // overload run).
                            let ack = if bytes.is_some() { Ack::with_permits(drop, [None, bytes]) } else { Ack::none() };
                            if !ctx.hand_on(Message::new(payload, meta, ack)).await {
                                return Ok(());
                            }
                            continue;
                        }
                        let Some(permit) = ctx.reserve().await else { return Ok(()) };
                        let tx = ack_tx.clone();
                        let ack = Ack::with_permits(
                            move |outcome| {
                                let _ = tx.send(match outcome {
                                    AckOutcome::Accepted => Settled::Accepted(token),
                                    AckOutcome::Failed => Settled::Failed(token),
                                });
                            },
                            [Some(permit), bytes],
                        );
                        // Shutdown cancels this future, maybe in the middle of the send: the
                        // message must then count as not handed on (no PUBACK, redelivered).
                        let unsent = FailOnDrop(Some(ack.clone()));
                        if !ctx.hand_on(Message::new(payload, meta, ack)).await {
                            return Ok(());
                        }
                        unsent.sent();
                    }
                    Ok(Event::Subscribed { refused }) if refused.is_empty() => {
                        ctx.ready.send_replace(true);
                    }
                    Ok(Event::Subscribed { refused }) => {
                        // An ACL that refuses a filter: weir would wait for messages that never
                        // come. Not ready, and said why.
                        ctx.ready.send_replace(false);
                        for (at, reason) in refused {
                            let filter = self.topics.get(at).map(String::as_str).unwrap_or("?");
                            tracing::error!(%source, broker = %url, filter, reason, "the broker refused this subscription (is an ACL in the way?); weir stays not ready");
                        }
                    }
                    Ok(Event::Released(pkid)) => unreleased.forget(pkid),
                    Ok(_) => {}
                    Err(err) if redelivery.asked.swap(false, Ordering::SeqCst) => {
                        let messages = redelivery.failed.swap(0, Ordering::SeqCst);
                        info!(%source, broker = %url, messages, %err, "reconnecting so that the broker sends again the messages the pipeline could not take");
                    }
                    Err(err) => {
                        ctx.ready.send_replace(false);
                        let delay = backoff.next_delay();
                        warn!(%source, broker = %url, %err, retry_in = ?delay, "MQTT connection lost or refused; {}", client::what_to_check(&url));
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        };
        if let Some(Err(err)) = ctx.shutdown.run_until_cancelled(receiving).await {
            return Err(err);
        }
        // Keep the connection alive until what is in flight has been accepted, so its
        // acknowledgements reach the broker; publishes that arrive now are not
        // acknowledged and come back after the restart.
        let deadline = tokio::time::Instant::now() + ctx.drain_timeout;
        while !ctx.drained() && tokio::time::Instant::now() < deadline {
            tokio::select! {
                _ = eventloop.poll() => {}
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        drop(ack_tx);
        // Flush queued acknowledgements through the event loop before disconnecting.
        let flush_until = tokio::time::Instant::now() + Duration::from_millis(300);
        while tokio::time::Instant::now() < flush_until {
            tokio::select! {
                _ = eventloop.poll() => {}
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
        acker.abort();
        info!(%source, "stopped");
        Ok(())
    }
}

/// The largest packet to take for messages of `max_message_bytes`: room for a topic and
/// properties besides the payload (a message over the limit that still fits is dead-lettered
/// by the pipeline, with the reason).
pub fn max_packet_for(max_message_bytes: usize) -> usize {
    max_message_bytes.saturating_add(128 << 10)
}

/// How the pipeline settled a message this source handed on.
enum Settled {
    /// Acknowledge it to the broker.
    Accepted(AckToken),
    /// Not handed on (a sink or module could not take it): the broker must send it again.
    Failed(AckToken),
}

/// A reconnection asked for so that the broker redelivers failed messages.
#[derive(Default)]
struct Redelivery {
    /// Set when the disconnect is asked for; the event loop's error that follows is expected.
    asked: AtomicBool,
    /// Failed messages since the last reconnection (for the log).
    failed: AtomicUsize,
}

/// How long failures are gathered before the one reconnection that gets them all redelivered.
const GATHER_FAILURES: Duration = Duration::from_millis(100);

/// Send the acknowledgements of accepted messages. A broker sends a message it is not
/// acknowledged for again only on a new connection, and until then it holds a place of its
/// in-flight window (20 by default in Mosquitto): withheld acknowledgements would silence
/// the source for good. So a failure outside shutdown reconnects (once for a burst), and the
/// broker redelivers every unacknowledged message of the session. At shutdown failures stay
/// unacknowledged, for the broker to redeliver after the restart.
///
/// A QoS 2 message is marked accepted before its PUBREC is queued, so a copy the broker sends
/// again is answered instead of handed on twice (`exactly_once.rs`).
async fn acknowledge(
    client: client::Client,
    mut settled: mpsc::UnboundedReceiver<Settled>,
    redelivery: Arc<Redelivery>,
    unreleased: Arc<Unreleased>,
    ctx: SourceContext,
    clean: bool,
) {
    while let Some(outcome) = settled.recv().await {
        if let Settled::Failed(token) = &outcome
            && let Some(pkid) = token.exactly_once()
        {
            unreleased.forget(pkid);
        }
        match outcome {
            Settled::Accepted(token) => {
                if let Some(pkid) = token.exactly_once() {
                    unreleased.accepted(pkid);
                }
                if let Err(err) = client.ack(token).await {
                    warn!(%err, "could not queue an acknowledgement; the broker will redeliver the message");
                }
            }
            Settled::Failed(_) if ctx.shutdown.is_cancelled() => {}
            Settled::Failed(_) => {
                redelivery.failed.fetch_add(1, Ordering::SeqCst);
                if redelivery.asked.swap(true, Ordering::SeqCst) {
                    continue;
                }
                if clean {
                    warn!(source = %ctx.name, "a message could not be handed on and `clean_session = true` lets the broker forget it at the reconnection: set clean_session = false so that it is redelivered");
                }
                let (client, shutdown) = (client.clone(), ctx.shutdown.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(GATHER_FAILURES).await;
                    if !shutdown.is_cancelled() {
                        client.disconnect().await;
                    }
                });
            }
        }
    }
}

/// Fails an acknowledgement when dropped before [`FailOnDrop::sent`]: a message whose hand-off
/// was cancelled (shutdown) is not acknowledged to the broker, which redelivers it.
struct FailOnDrop(Option<Ack>);

impl FailOnDrop {
    fn sent(mut self) {
        self.0 = None;
    }
}

impl Drop for FailOnDrop {
    fn drop(&mut self) {
        if let Some(ack) = self.0.take() {
            ack.fail();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use weir_core::{Ack, AckOutcome};

    use super::FailOnDrop;

    fn tracked() -> (Ack, mpsc::Receiver<AckOutcome>) {
        let (tx, rx) = mpsc::channel();
        (Ack::new(move |outcome| tx.send(outcome).expect("receiver alive")), rx)
    }

    #[test]
    fn a_cancelled_hand_off_is_not_acknowledged() {
        let (ack, outcome) = tracked();
        let guard = FailOnDrop(Some(ack.clone()));
        drop(ack); // the message, dropped with the cancelled send
        drop(guard);
        assert_eq!(outcome.try_recv().expect("callback ran"), AckOutcome::Failed);
    }

    #[test]
    fn a_completed_hand_off_leaves_the_outcome_to_the_pipeline() {
        let (ack, outcome) = tracked();
        FailOnDrop(Some(ack.clone())).sent();
        assert!(outcome.try_recv().is_err(), "the message is still in the pipeline");
        drop(ack);
        assert_eq!(outcome.try_recv().expect("callback ran"), AckOutcome::Accepted);
    }
}
