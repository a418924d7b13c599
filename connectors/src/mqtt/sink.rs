use std::borrow::Cow;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use foldhash::HashMap;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use weir_core::connector::Pending;
use weir_core::{Backoff, BuildContext, Message, QoS, Sink, SinkError, SinkKind};

use super::ack_delays::{self, AckDelays};
use super::client::{self, Client, Endpoint, Event};
use super::config::{ConnectionConfig, MqttSinkConfig, PasswordProvider};
use super::inbound::Inbound;
use super::limits;

/// How long a batch waits for the broker's acknowledgements before it counts as not
/// accepted (and is retried: at least once, duplicates possible).
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why publishing cannot go on, and what to check.
fn unavailable(state: &Mutex<ConnectionState>, url: &str, what: &str) -> SinkError {
    let state = state.lock().map(|s| (s.connected, s.last_error.clone())).unwrap_or((false, None));
    let detail = match state {
        (true, _) => "the broker is connected but did not acknowledge in time".to_owned(),
        (false, Some(err)) => format!("not connected: {err}"),
        (false, None) => "not connected yet".to_owned(),
    };
    SinkError::Unavailable(anyhow::anyhow!("MQTT broker {url}: {what}: {detail}. Check that the broker runs and accepts this client"))
}

/// Batches on their way at once (see `pipeline_depth`).
const PIPELINE_DEPTH: usize = 4;

/// Publishes each message; a batch is accepted when the broker has acknowledged all of it.
pub struct MqttSink {
    client: Client,
    url: String,
    qos: QoS,
    topic: Option<String>,
    retain: Option<bool>,
    waiters: Arc<Mutex<Waiters>>,
    state: Arc<Mutex<ConnectionState>>,
    driver: JoinHandle<()>,
}

/// Publishes waiting for their packet id (in request order), then for their acknowledgement.
#[derive(Default)]
struct Waiters {
    unsent: VecDeque<Arc<BatchAcks>>,
    /// With when the publish left (to notice acknowledgements that a broker's Nagle delays).
    /// foldhash: three lookups per QoS 1 publish, where SipHash cost 1.5 % of weir's work.
    by_packet: HashMap<u16, (Arc<BatchAcks>, Instant)>,
}

/// What a batch waits for: one count of its messages not yet acknowledged, shared by their
/// entries in [`Waiters`] (a channel each cost an allocation per message). If the connection
/// task drops the entries before all are acknowledged (it ended), `done` is dropped unsent
/// and the batch hears so.
struct BatchAcks {
    remaining: AtomicUsize,
    done: Mutex<Option<oneshot::Sender<()>>>,
}

impl BatchAcks {
    fn acknowledged(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(done) = self.done.lock().ok().and_then(|mut done| done.take())
        {
            let _ = done.send(());
        }
    }
}

#[derive(Default)]
struct ConnectionState {
    connected: bool,
    /// `close` was called: connection errors are expected now.
    closing: bool,
    last_error: Option<String>,
    /// The largest packet the broker takes, if its CONNACK said (MQTT 5).
    max_packet: Option<usize>,
}

#[async_trait]
impl SinkKind for MqttSink {
    const TYPE: &'static str = "mqtt";
    type Config = MqttSinkConfig;

    async fn build(config: MqttSinkConfig, ctx: &BuildContext) -> anyhow::Result<Box<dyn Sink>> {
        Ok(Box::new(MqttSink::connect(&config.connection, &ctx.base_dir, &format!("weir-{}", ctx.name), "", config.topic, config.retain, None)?))
    }
}

impl MqttSink {
    /// Connect (in the background) to the broker. `topic` may contain `{topic}`. `role`
    /// is appended to a configured client id (see `client::connect`). Publishes from the
    /// broker go to `inbound` if given (whose listener acknowledges them).
    pub fn connect(
        connection: &ConnectionConfig,
        base_dir: &Path,
        default_client_id: &str,
        role: &str,
        topic: Option<String>,
        retain: Option<bool>,
        inbound: Option<Arc<Inbound>>,
    ) -> anyhow::Result<Self> {
        let (client, eventloop) = client::connect(connection, default_client_id, role, base_dir, inbound.is_some())?;
        let driver = Driver {
            client: client.clone(),
            url: connection.url.clone(),
            waiters: Arc::default(),
            state: Arc::default(),
            renew: connection.password_provider.clone().zip(connection.username.clone()),
            inbound,
            over_tcp: matches!(client::parse_url(&connection.url), Ok(Endpoint::Tcp { .. })),
        };
        let (waiters, state) = (driver.waiters.clone(), driver.state.clone());
        let driver = tokio::spawn(driver.run(eventloop));
        Ok(MqttSink { client, url: connection.url.clone(), qos: connection.qos, topic, retain, waiters, state, driver })
    }

    /// The connection's client (to subscribe and acknowledge on it).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    fn topic_for<'a>(&self, message: &'a Message) -> Cow<'a, str> {
        match &self.topic {
            Some(template) => Cow::Owned(template.replace("{topic}", &message.meta().topic)),
            None => Cow::Borrowed(&message.meta().topic),
        }
    }

    /// Publish a batch; what it returns resolves once the broker acknowledged all of it.
    async fn publish(&mut self, batch: &[Message]) -> Result<Pending, SinkError> {
        // While disconnected, publishing would only park the batch inside the client, to go
        // out whenever the broker is back (however old it is by then): say so now instead,
        // so the caller keeps it (a queue re-checks its time to live before the next try).
        if !self.state.lock().map(|s| s.connected).unwrap_or(false) {
            return Err(unavailable(&self.state, &self.url, "cannot publish"));
        }
        let mut rejected = Vec::new();
        let mut valid = Vec::with_capacity(batch.len());
        let max_packet = self.state.lock().ok().and_then(|s| s.max_packet).unwrap_or(limits::MAX_PACKET);
        for (index, message) in batch.iter().enumerate() {
            let topic = self.topic_for(message);
            match limits::unpublishable(&topic, message.payload.len(), message.meta(), self.client.is_v5(), max_packet) {
                None => valid.push((message, topic)),
                Some(reason) => rejected.push((index, reason)),
            }
        }
        let (done, all_acknowledged) = oneshot::channel();
        let published = valid.len();
        if published == 0 {
            let _ = done.send(());
        } else if let Ok(mut waiters) = self.waiters.lock() {
            let acks = Arc::new(BatchAcks { remaining: AtomicUsize::new(published), done: Mutex::new(Some(done)) });
            waiters.unsent.extend(std::iter::repeat_n(acks, published));
        }
        for (sent, (message, topic)) in valid.into_iter().enumerate() {
            let retain = self.retain.unwrap_or(message.meta().retain);
            if let Err(err) = self.client.publish(&topic, message.payload.clone(), message.meta(), self.qos, retain).await {
                // This publish and the ones after it never reached the client: their entries
                // are the newest.
                if let Ok(mut waiters) = self.waiters.lock() {
                    let keep = waiters.unsent.len().saturating_sub(published - sent);
                    waiters.unsent.truncate(keep);
                }
                return Err(SinkError::Unavailable(anyhow::anyhow!("MQTT broker {}: publish failed: {err}", self.url)));
            }
        }
        let (state, url) = (self.state.clone(), self.url.clone());
        Ok(Box::pin(async move {
            match tokio::time::timeout(ACCEPT_TIMEOUT, async { all_acknowledged.await.map_err(drop) }).await {
                Ok(Ok(())) if rejected.is_empty() => Ok(()),
                Ok(Ok(())) => Err(SinkError::Rejected(rejected)),
                Ok(Err(())) => Err(unavailable(&state, &url, "the connection task ended")),
                Err(_) => Err(unavailable(&state, &url, "no acknowledgement within 30 s")),
            }
        }))
    }
}

/// Polls the connection: matches acknowledgements to waiting publishes, hands inbound
/// publishes on, reconnects with back-off, and renews an expiring password (a SAS token)
/// by reconnecting with a fresh one before it runs out.
struct Driver {
    client: Client,
    url: String,
    waiters: Arc<Mutex<Waiters>>,
    state: Arc<Mutex<ConnectionState>>,
    renew: Option<(PasswordProvider, String)>,
    inbound: Option<Arc<Inbound>>,
    /// TCP (not a Unix socket): Nagle and delayed ACKs apply.
    over_tcp: bool,
}

impl Driver {
    async fn run(self, mut eventloop: client::EventLoop) {
        let mut backoff = Backoff::default();
        let mut ack_delays = AckDelays::default();
        // When the password in use should be replaced (four fifths of its life).
        let mut renew_at: Option<tokio::time::Instant> = None;
        let mut renewing = false;
        loop {
            // Without a password to renew, no `select!`: it would move each event's poll
            // future (2.7 KB in rumqttc) once more.
            let event = match (eventloop.buffered(), renew_at) {
                (Some(event), _) => Ok(event),
                (None, None) => eventloop.poll().await,
                (None, Some(at)) => tokio::select! {
                    event = eventloop.poll() => event,
                    () = tokio::time::sleep_until(at) => {
                        renew_at = None;
                        renewing = true;
                        info!(broker = %self.url, "renewing the password (SAS token) before it expires: reconnecting");
                        let client = self.client.clone();
                        // Not awaited here: the request goes through the event loop polled below.
                        tokio::spawn(async move { client.disconnect().await });
                        continue;
                    }
                },
            };
            match event {
                Ok(Event::Connected { max_packet_size, .. }) => {
                    backoff.reset();
                    info!(broker = %self.url, ?max_packet_size, "publisher connected");
                    if let Ok(mut state) = self.state.lock() {
                        state.connected = true;
                        state.max_packet = max_packet_size.map(|size| size as usize);
                    }
                    renew_at = self.renew.as_ref().map(|(provider, _)| tokio::time::Instant::now() + provider.valid_for.mul_f64(0.8));
                    if let Some(inbound) = self.inbound.clone().filter(|inbound| inbound.listening()) {
                        let client = self.client.clone();
                        tokio::spawn(async move { client.subscribe(&inbound.topics, inbound.qos).await });
                    }
                }
                Ok(Event::Sent(packet)) => {
                    let Ok(mut waiters) = self.waiters.lock() else { break };
                    if packet == 0 {
                        if let Some(waiter) = waiters.unsent.pop_front() {
                            waiter.acknowledged();
                        }
                    } else if !waiters.by_packet.contains_key(&packet) {
                        // Not a retransmission: the oldest unsent publish got this id.
                        if let Some(waiter) = waiters.unsent.pop_front() {
                            waiters.by_packet.insert(packet, (waiter, Instant::now()));
                        }
                    }
                }
                Ok(Event::Acknowledged(packet)) => {
                    if let Some((waiter, sent)) = self.waiters.lock().ok().and_then(|mut w| w.by_packet.remove(&packet)) {
                        waiter.acknowledged();
                        if self.over_tcp && ack_delays.record(sent.elapsed()) {
                            warn!("{}", ack_delays::advice(&self.url));
                        }
                    }
                }
                Ok(Event::Subscribed { refused }) => {
                    for (at, reason) in &refused {
                        tracing::error!(broker = %self.url, filter = at, reason, "the broker refused a subscription of this connection (is an ACL in the way?)");
                    }
                    if let Some(inbound) = &self.inbound {
                        inbound.set_subscribed(refused.is_empty());
                    }
                }
                Ok(Event::Publish(received)) => {
                    if let Some(inbound) = &self.inbound {
                        inbound.deliver(received);
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    if self.state.lock().map(|s| s.closing).unwrap_or(true) {
                        break;
                    }
                    if let Some(inbound) = &self.inbound {
                        inbound.set_subscribed(false);
                    }
                    let delay = if std::mem::take(&mut renewing) {
                        std::time::Duration::ZERO
                    } else {
                        let delay = backoff.next_delay();
                        warn!(broker = %self.url, %err, retry_in = ?delay, "publisher connection lost or refused; {}", client::what_to_check(&self.url));
                        delay
                    };
                    if let Ok(mut state) = self.state.lock() {
                        state.connected = false;
                        state.last_error = Some(err);
                    }
                    // A token that expired (IoT Hub closes the connection then) is made anew.
                    if let Some((provider, user)) = &self.renew {
                        match (provider.make)() {
                            Ok(password) => eventloop.set_credentials(user, password),
                            Err(err) => warn!(broker = %self.url, error = %format!("{err:#}"), "could not renew the password"),
                        }
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

#[async_trait]
impl Sink for MqttSink {
    async fn deliver(&mut self, batch: &[Message]) -> Result<(), SinkError> {
        self.publish(batch).await?.await
    }

    /// PUBACKs come back in order on one connection, so several batches can be on their
    /// way: the next one is published while earlier ones wait for their acknowledgements.
    /// Without this a QoS 1 republish waited a round trip per batch, and a broker that
    /// delays small packets (Mosquitto's default, Nagle) made that round trip 40 ms.
    fn pipeline_depth(&self) -> usize {
        PIPELINE_DEPTH
    }

    async fn send(&mut self, batch: &[Message]) -> Option<Result<Pending, SinkError>> {
        Some(self.publish(batch).await)
    }

    async fn close(&mut self) -> anyhow::Result<()> {
        if let Ok(mut state) = self.state.lock() {
            state.closing = true;
        }
        self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.driver.abort();
        Ok(())
    }
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        self.driver.abort();
    }
}
