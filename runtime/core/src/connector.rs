//! The connector contract and the registry of connector types.
//!
//! A connector type is a typed config (serde, unknown keys rejected, documented fields)
//! plus a `build` that returns a running [`Source`] or [`Sink`]. The pipeline TOML names
//! it with `type = "…"`; the [`Registry`] resolves that name explicitly, refuses
//! duplicates, and produces the JSON Schema of every registered config.
//!
//! The runtime knows connectors only through these traits: a connector never reaches into
//! the router or the wasm host.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize as _;
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::message::Message;

/// A source of messages: runs until `ctx.shutdown` is cancelled.
#[async_trait]
pub trait Source: Send + 'static {
    async fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()>;
}

/// What a running source hands messages to.
#[derive(Debug, Clone)]
pub struct SourceContext {
    /// The source's name in the pipeline.
    pub name: Arc<str>,
    pub output: mpsc::Sender<Message>,
    pub shutdown: CancellationToken,
    /// The in-flight window: hold one permit per unacknowledged message.
    pub in_flight: Arc<Semaphore>,
    /// The window's size (permits when nothing is in flight).
    pub in_flight_limit: usize,
    /// The in-flight window in payload bytes, and its size (see [`SourceContext::reserve_bytes`]).
    pub in_flight_bytes: Arc<Semaphore>,
    pub in_flight_bytes_limit: usize,
    /// Set to `true` once the source is connected and subscribed (readiness).
    pub ready: tokio::sync::watch::Sender<bool>,
    /// At shutdown, how long to wait for in-flight messages to be accepted before leaving
    /// them unacknowledged (to be redelivered).
    pub drain_timeout: std::time::Duration,
}

impl SourceContext {
    /// Whether every message this source handed on has been acknowledged or failed.
    pub fn drained(&self) -> bool {
        self.in_flight.available_permits() >= self.in_flight_limit
    }

    /// Wait for room in the in-flight window. `None` once shutdown has started.
    pub async fn reserve(&self) -> Option<OwnedSemaphorePermit> {
        if self.shutdown.is_cancelled() {
            return None;
        }
        // Room in the window, the usual case: no futures to build and poll. (A freed permit
        // goes to those already waiting first.)
        if let Ok(permit) = self.in_flight.clone().try_acquire_owned() {
            return Some(permit);
        }
        tokio::select! {
            permit = self.in_flight.clone().acquire_owned() => permit.ok(),
            () = self.shutdown.cancelled() => None,
        }
    }

    /// Whether a message of `bytes` must reserve them ([`SourceContext::reserve_bytes`]): one
    /// within its share of the byte budget (`in_flight_bytes / in_flight`, 64 KiB by default)
    /// is covered by the message window, and takes the hot path without a semaphore.
    pub fn counts_bytes(&self, bytes: usize) -> bool {
        bytes > self.in_flight_bytes_limit / self.in_flight_limit.max(1)
    }

    /// Wait for room for `bytes` of payload in the in-flight window (a message larger than
    /// the whole window takes all of it). `None` once shutdown has started. Hold the permit
    /// in the message's [`Ack`](crate::Ack) (QoS 0 too), so large messages cannot pile up in
    /// memory whatever their count.
    pub async fn reserve_bytes(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let wanted = u32::try_from(bytes.clamp(1, self.in_flight_bytes_limit.max(1))).unwrap_or(u32::MAX);
        if let Ok(permit) = self.in_flight_bytes.clone().try_acquire_many_owned(wanted) {
            return Some(permit);
        }
        tokio::select! {
            permit = self.in_flight_bytes.clone().acquire_many_owned(wanted) => permit.ok(),
            () = self.shutdown.cancelled() => None,
        }
    }

    /// Room for a message's payload of `bytes`: `Ok(None)` when the message window covers it
    /// ([`SourceContext::counts_bytes`]), else the permit to hold in its [`Ack`](crate::Ack)
    /// after waiting for room ([`SourceContext::reserve_bytes`]). `Err` once shutdown has
    /// started. Every source calls this for every message it hands on.
    pub async fn reserve_payload(&self, bytes: usize) -> Result<Option<OwnedSemaphorePermit>, Stopping> {
        if !self.counts_bytes(bytes) {
            return Ok(None);
        }
        self.reserve_bytes(bytes).await.map(Some).ok_or(Stopping)
    }

    /// Hand `message` on to the pipeline, waiting for room; false once the pipeline takes no
    /// more (it is stopping).
    pub async fn hand_on(&self, message: Message) -> bool {
        // Room in the channel, the usual case: no permit future to build and poll.
        match self.output.try_send(message) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(message)) => self.output.send(message).await.is_ok(),
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// The pipeline is stopping: a source hands nothing more on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopping;

/// Why a sink did not accept a batch.
#[derive(Debug)]
pub enum SinkError {
    /// The destination cannot be reached now; the whole batch should be retried later.
    Unavailable(anyhow::Error),
    /// These messages (by index in the batch) will never be accepted; the rest were.
    Rejected(Vec<(usize, String)>),
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkError::Unavailable(err) => write!(f, "unavailable: {err:#}"),
            SinkError::Rejected(list) => write!(f, "rejected {} message(s)", list.len()),
        }
    }
}

/// How a sink wants its batches: the runtime gathers up to `max_messages` or `max_bytes`,
/// waiting at most `max_age` after the first message for more (a blob sink writes one
/// object per batch, so it wants big ones; most sinks take what is there at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    pub max_messages: usize,
    pub max_bytes: usize,
    pub max_age: std::time::Duration,
}

/// A batch sent and waiting for the destination to accept it (see [`Sink::send`]).
pub type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SinkError>> + Send>>;

/// A destination for messages.
#[async_trait]
pub trait Sink: Send + 'static {
    /// Returns once every message of the batch is accepted: delivered or durably queued.
    async fn deliver(&mut self, batch: &[Message]) -> Result<(), SinkError>;

    /// Batches bigger or older than the runtime's default (`runtime.batch_size`, no waiting).
    fn batching(&self) -> Option<Batching> {
        None
    }

    /// Batches this sink can have on their way at once. Above 1, a sink without a queue
    /// gets [`Sink::send`] instead of `deliver`, and the next batch goes out while earlier
    /// ones wait for their acceptance (a round trip per batch otherwise bounds throughput and
    /// adds latency). A batch that fails is retried after the ones sent before it, so a
    /// failure may reorder it behind later batches; nothing is acknowledged early.
    fn pipeline_depth(&self) -> usize {
        1
    }

    /// Send a batch and return what resolves once it is accepted (for sinks whose
    /// [`Sink::pipeline_depth`] is above 1). `None`: the sink cannot send this way, or not now;
    /// the runtime then uses `deliver`.
    async fn send(&mut self, _batch: &[Message]) -> Option<Result<Pending, SinkError>> {
        None
    }

    /// Flush anything buffered; called before shutdown.
    async fn close(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// What `build` gets besides its own config.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The connector's name in the pipeline (`[sinks.NAME]`).
    pub name: Arc<str>,
    /// The largest message the pipeline takes (`runtime.max_message_size`): a source may tell
    /// its peer, so that bigger ones are not even sent.
    pub max_message_bytes: usize,
    /// The directory of the pipeline file: relative paths start here.
    pub base_dir: PathBuf,
}

impl BuildContext {
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }
}

/// A sink type: `type = TYPE` in a `[sinks.*]` table.
#[async_trait]
pub trait SinkKind: Send + Sync + 'static {
    const TYPE: &'static str;
    type Config: DeserializeOwned + schemars::JsonSchema + Send;
    async fn build(config: Self::Config, ctx: &BuildContext) -> anyhow::Result<Box<dyn Sink>>;
}

/// A source type: `type = TYPE` in a `[sources.*]` table.
#[async_trait]
pub trait SourceKind: Send + Sync + 'static {
    const TYPE: &'static str;
    type Config: DeserializeOwned + schemars::JsonSchema + Send;
    async fn build(config: Self::Config, ctx: &BuildContext) -> anyhow::Result<Box<dyn Source>>;
}

/// Validates and builds one connector type from its TOML table (without the `type` key).
#[async_trait]
trait Builder<T: ?Sized>: Send + Sync {
    fn check(&self, table: toml::Table) -> Result<(), toml::de::Error>;
    async fn build(&self, table: toml::Table, ctx: &BuildContext) -> anyhow::Result<Box<T>>;
    fn schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema;
}

struct SinkBuilder<K>(std::marker::PhantomData<K>);
struct SourceBuilder<K>(std::marker::PhantomData<K>);

#[async_trait]
impl<K: SinkKind> Builder<dyn Sink> for SinkBuilder<K> {
    fn check(&self, table: toml::Table) -> Result<(), toml::de::Error> {
        K::Config::deserialize(table).map(drop)
    }
    async fn build(&self, table: toml::Table, ctx: &BuildContext) -> anyhow::Result<Box<dyn Sink>> {
        let config = K::Config::deserialize(table)?;
        K::build(config, ctx).await
    }
    fn schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<K::Config>()
    }
}

#[async_trait]
impl<K: SourceKind> Builder<dyn Source> for SourceBuilder<K> {
    fn check(&self, table: toml::Table) -> Result<(), toml::de::Error> {
        K::Config::deserialize(table).map(drop)
    }
    async fn build(&self, table: toml::Table, ctx: &BuildContext) -> anyhow::Result<Box<dyn Source>> {
        let config = K::Config::deserialize(table)?;
        K::build(config, ctx).await
    }
    fn schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<K::Config>()
    }
}

/// The connector types a weir binary knows, by `type` name.
#[derive(Default)]
pub struct Registry {
    sinks: BTreeMap<&'static str, Box<dyn Builder<dyn Sink>>>,
    sources: BTreeMap<&'static str, Box<dyn Builder<dyn Source>>>,
    /// Connector types weir has that this binary was built without (cargo features).
    left_out: Vec<&'static str>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").field("sinks", &self.sinks.keys()).field("sources", &self.sources.keys()).finish()
    }
}

/// An error from a connector's table, with the key it is about when serde names one.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorConfigError {
    #[error("unknown {kind} type `{name}`; known types: {known}")]
    UnknownType { kind: &'static str, name: String, known: String },
    #[error(
        "this weir was built without the `{name}` connector (cargo feature `{name}` of the `weir` crate); use a build that has it, such as the default one"
    )]
    LeftOut { name: String },
    #[error("{0}")]
    Invalid(#[from] toml::de::Error),
}

impl Registry {
    /// Register a sink type. Panics on a duplicate name: that is a bug in the binary, not input.
    pub fn sink<K: SinkKind>(mut self) -> Self {
        let previous = self.sinks.insert(K::TYPE, Box::new(SinkBuilder::<K>(Default::default())));
        assert!(previous.is_none(), "sink type `{}` registered twice", K::TYPE);
        self
    }

    /// Say that connector type `type_name` exists but is not in this binary, so a pipeline
    /// that uses it is told why, not only that the type is unknown.
    pub fn left_out(mut self, type_name: &'static str) -> Self {
        self.left_out.push(type_name);
        self
    }

    fn unknown(&self, kind: &'static str, type_name: &str, known: impl Iterator<Item = &'static str>) -> ConnectorConfigError {
        if self.left_out.contains(&type_name) {
            return ConnectorConfigError::LeftOut { name: type_name.to_owned() };
        }
        ConnectorConfigError::UnknownType { kind, name: type_name.to_owned(), known: Self::known(known) }
    }

    /// Register a source type. Panics on a duplicate name.
    pub fn source<K: SourceKind>(mut self) -> Self {
        let previous = self.sources.insert(K::TYPE, Box::new(SourceBuilder::<K>(Default::default())));
        assert!(previous.is_none(), "source type `{}` registered twice", K::TYPE);
        self
    }

    pub fn sink_types(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.sinks.keys().copied()
    }

    pub fn source_types(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.sources.keys().copied()
    }

    fn known(names: impl Iterator<Item = &'static str>) -> String {
        names.map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
    }

    /// Check a sink table against its type's config without building anything.
    pub fn check_sink(&self, type_name: &str, table: toml::Table) -> Result<(), ConnectorConfigError> {
        let builder = self.sinks.get(type_name).ok_or_else(|| self.unknown("sink", type_name, self.sink_types()))?;
        Ok(builder.check(table)?)
    }

    /// Check a source table against its type's config without building anything.
    pub fn check_source(&self, type_name: &str, table: toml::Table) -> Result<(), ConnectorConfigError> {
        let builder = self.sources.get(type_name).ok_or_else(|| self.unknown("source", type_name, self.source_types()))?;
        Ok(builder.check(table)?)
    }

    pub async fn build_sink(&self, type_name: &str, table: toml::Table, ctx: &BuildContext) -> anyhow::Result<Box<dyn Sink>> {
        let builder = self.sinks.get(type_name).ok_or_else(|| anyhow::anyhow!("unknown sink type `{type_name}`"))?;
        builder.build(table, ctx).await
    }

    pub async fn build_source(&self, type_name: &str, table: toml::Table, ctx: &BuildContext) -> anyhow::Result<Box<dyn Source>> {
        let builder = self.sources.get(type_name).ok_or_else(|| anyhow::anyhow!("unknown source type `{type_name}`"))?;
        builder.build(table, ctx).await
    }

    /// JSON Schemas of every registered config, by type name: (sinks, sources).
    pub fn schemas(&self, generator: &mut schemars::SchemaGenerator) -> (BTreeMap<&'static str, schemars::Schema>, BTreeMap<&'static str, schemars::Schema>) {
        let sinks = self.sinks.iter().map(|(name, b)| (*name, b.schema(generator))).collect();
        let sources = self.sources.iter().map(|(name, b)| (*name, b.schema(generator))).collect();
        (sinks, sources)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::{Semaphore, mpsc, watch};
    use tokio_util::sync::CancellationToken;

    use super::SourceContext;
    use crate::{Ack, Message, Metadata};

    fn context(channel: usize, window: usize) -> (SourceContext, mpsc::Receiver<Message>) {
        let (output, received) = mpsc::channel(channel);
        let context = SourceContext {
            name: "test".into(),
            output,
            shutdown: CancellationToken::new(),
            in_flight: Arc::new(Semaphore::new(window)),
            in_flight_limit: window,
            in_flight_bytes: Arc::new(Semaphore::new(1 << 20)),
            in_flight_bytes_limit: 1 << 20,
            ready: watch::channel(false).0,
            drain_timeout: Duration::from_secs(1),
        };
        (context, received)
    }

    fn message(n: u8) -> Message {
        Message::new(vec![n], Metadata::new("test".into(), "t"), Ack::none())
    }

    #[tokio::test]
    async fn hand_on_waits_for_room_keeps_order_and_stops_with_the_pipeline() {
        let (context, mut received) = context(1, 4);
        assert!(context.hand_on(message(1)).await);
        let context = Arc::new(context);
        let second = tokio::spawn({
            let context = context.clone();
            async move { context.hand_on(message(2)).await }
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished(), "the channel is full: the second waits");
        assert_eq!(&received.recv().await.unwrap().payload[..], [1]);
        assert!(second.await.unwrap());
        assert_eq!(&received.recv().await.unwrap().payload[..], [2]);
        drop(received);
        assert!(!context.hand_on(message(3)).await, "no pipeline any more");
    }

    #[tokio::test]
    async fn reserve_bytes_waits_for_room_and_a_huge_message_takes_the_whole_window() {
        let (context, _received) = context(1, 1);
        let limit = context.in_flight_bytes_limit;
        let half = context.reserve_bytes(limit / 2).await.expect("room");
        let context = Arc::new(context);
        let huge = tokio::spawn({
            let context = context.clone();
            async move { context.reserve_bytes(limit * 10).await.is_some() }
        });
        tokio::task::yield_now().await;
        assert!(!huge.is_finished(), "half the window is taken: a message bigger than the window waits for all of it");
        drop(half);
        assert!(huge.await.unwrap(), "then it goes, alone");
        assert_eq!(context.in_flight_bytes.available_permits(), limit, "its permit was dropped with it");
    }

    #[tokio::test]
    async fn a_small_payload_needs_no_byte_permit_and_a_large_one_waits_for_room() {
        let (context, _received) = context(1, 4);
        let share = context.in_flight_bytes_limit / context.in_flight_limit;
        assert!(context.reserve_payload(share).await.expect("running").is_none(), "within its share: the message window covers it");
        let taken = context.reserve_payload(context.in_flight_bytes_limit).await.expect("running").expect("a permit");
        assert_eq!(context.in_flight_bytes.available_permits(), 0);
        context.shutdown.cancel();
        assert_eq!(context.reserve_payload(share + 1).await.err(), Some(super::Stopping), "no room, and stopping");
        drop(taken);
    }

    #[tokio::test]
    async fn reserve_takes_room_in_the_window_until_shutdown() {
        let (context, _received) = context(1, 1);
        let permit = context.reserve().await.expect("room in the window");
        assert!(!context.drained());
        let context = Arc::new(context);
        let waiting = tokio::spawn({
            let context = context.clone();
            async move { context.reserve().await.is_some() }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the window is full: the next waits");
        drop(permit);
        assert!(waiting.await.unwrap(), "a freed permit goes to the one waiting");
        context.shutdown.cancel();
        assert!(context.reserve().await.is_none(), "none once shutdown has started, room or not");
    }
}
