//! The pipeline TOML.
//!
//! - this file: the types, which are the documentation of the format (every field has a
//!   doc comment, unknown keys are errors) and, through `schemars`, its JSON Schema;
//! - [`load`]: reading a file into a [`LoadedPipeline`] with errors that name file, line,
//!   column and key;
//! - [`validate`]: the checks `weir check` runs beyond syntax: routes, references,
//!   connector tables, module files;
//! - [`store`]: `[store]` and a sink's `queue` (store-and-forward settings);
//! - [`units`]: durations (`"500ms"`) and sizes (`"64MiB"`);
//! - [`window`]: an aggregate module's `window` table.
//!
//! Example: `pipelines/demo.toml`.

pub mod load;
pub mod store;
pub mod units;
pub mod validate;
pub mod window;

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

pub use load::{ConfigError, ConfigErrors, LoadedPipeline};
pub use store::{QueueSpec, StoreConfig};
pub use units::{ByteSize, HumanDuration};
use weir_connectors::mqtt::ConnectionConfig;

/// A pipeline: where messages come from, what modules do to them, where they go.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// The local MQTT broker that `/topics/…` routes read from and write to. Leave it out
    /// to run weir's embedded broker (see `embedded_broker`).
    #[serde(default)]
    pub broker: Option<ConnectionConfig>,
    /// Where the embedded broker listens when `broker` is not set.
    #[serde(default)]
    pub embedded_broker: Option<EmbeddedBroker>,
    /// Extra sources by name (`[sources.NAME]` with `type = "…"`), besides the local broker.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceTable>,
    /// WebAssembly modules by name: `/modules/NAME/…` in routes.
    #[serde(default)]
    pub modules: BTreeMap<String, ModuleConfig>,
    /// Sinks by name (`[sinks.NAME]` with `type = "…"`).
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkTable>,
    /// Routes by name, in Azure IoT Edge syntax: `FROM … [WHERE …] INTO …`.
    #[serde(default)]
    pub routes: BTreeMap<String, RouteSpec>,
    /// The sink `INTO $upstream` means.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Where `$deadletter` and failed messages go: a sink's name (`"dlq"`, which can be the
    /// upstream sink or have its own queue), or a local topic (`"/topics/plant/deadletter"`).
    /// Default: the local topic `weir/deadletter`. Each dead letter keeps its payload and
    /// carries `weir-dl-reason`, `weir-dl-detail`, `weir-dl-module`, `weir-dl-route`,
    /// `weir-dl-sink` as properties.
    #[serde(default)]
    pub deadletter: Option<String>,
    /// Store-and-forward: where sink queues live, and their default size cap, time to live
    /// and fsync policy.
    #[serde(default)]
    pub store: StoreConfig,
    /// Engine and executor settings.
    #[serde(default)]
    pub runtime: RuntimeSettings,
}

impl Pipeline {
    /// The local topic dead letters go to (`deadletter = "/topics/…"`, default
    /// `weir/deadletter`), or `None` when `deadletter` names a sink.
    pub fn deadletter_topic(&self) -> Option<String> {
        match &self.deadletter {
            None => Some("weir/deadletter".to_owned()),
            Some(value) => value.strip_prefix("/topics/").map(str::to_owned),
        }
    }
}

/// The in-process MQTT broker.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedBroker {
    /// Listen address, e.g. "127.0.0.1:1883". Use "0.0.0.0:1883" to accept other machines.
    #[serde(default = "EmbeddedBroker::default_listen")]
    pub listen: String,
}

impl EmbeddedBroker {
    fn default_listen() -> String {
        "127.0.0.1:1883".to_owned()
    }
}

impl Default for EmbeddedBroker {
    fn default() -> Self {
        EmbeddedBroker { listen: Self::default_listen() }
    }
}

/// A WebAssembly module.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModuleConfig {
    /// The component file (`.wasm`), relative to this pipeline file.
    pub path: PathBuf,
    /// `filter`, `map`, `flat-map` or `aggregate`. Default: the one kind the module exports.
    #[serde(default)]
    pub kind: Option<crate::wasm::ModuleKind>,
    /// Handed to the module at start (like an IoT Edge module twin's desired properties).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub config: toml::Table,
    /// Linear memory cap per instance. Default "64MiB".
    #[serde(default)]
    pub memory: Option<ByteSize>,
    /// Wall-clock deadline per call (per batch). Default "1s".
    #[serde(default)]
    pub deadline: Option<HumanDuration>,
    /// Messages per call, at most. Default: `runtime.batch_size`.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Call this module only on its own thread. By default a module whose calls stay under
    /// `runtime.inline_call_budget` (1 ms) is called on the thread its messages arrive on,
    /// which saves two thread hand-offs per batch, and goes back to its own thread for good
    /// once its calls take longer (three in a row, or one stopped by `deadline`; each such
    /// call is set aside after the budget and finished on another thread). Set this for a
    /// module that may sometimes run long. Default false.
    #[serde(default)]
    pub own_thread: bool,
    /// Aggregate modules: how the host windows their messages (kind, size, key, time).
    #[serde(default)]
    pub window: Option<window::WindowConfig>,
}

/// A route: a string, or a table with priority and time to live (IoT Edge schema 1.1).
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(untagged)]
pub enum RouteSpec {
    /// `"FROM … INTO …"`.
    Plain(String),
    Detailed(RouteTable),
}

/// The table form of a route.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    /// The route text.
    pub route: String,
    /// 0 (highest) to 9 (lowest). Default 0.
    #[serde(default)]
    pub priority: u8,
    /// Seconds a message may wait for this route's sink (IoT Edge `timeToLiveSecs`).
    #[serde(default)]
    pub time_to_live: Option<u64>,
    /// How the condition reads `$body`: "json" (default: as JSON whatever the sender
    /// declared), "iot-edge" (only with content type application/json, as IoT Edge does) or
    /// "none" (never; `$body…` is undefined).
    #[serde(default)]
    pub decode: crate::route::BodyDecode,
}

impl RouteSpec {
    pub fn text(&self) -> &str {
        match self {
            RouteSpec::Plain(text) => text,
            RouteSpec::Detailed(table) => &table.route,
        }
    }

    pub fn priority(&self) -> u8 {
        match self {
            RouteSpec::Plain(_) => 0,
            RouteSpec::Detailed(table) => table.priority,
        }
    }
}

impl<'de> Deserialize<'de> for RouteSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RouteSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a route string (\"FROM … INTO …\") or a table { route = \"…\", priority = 0, time_to_live = 7200 }")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RouteSpec, E> {
                Ok(RouteSpec::Plain(text.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RouteSpec, A::Error> {
                let table = RouteTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                if table.priority > 9 {
                    return Err(serde::de::Error::custom(format!("priority is 0 (highest) to 9 (lowest), not {}", table.priority)));
                }
                Ok(RouteSpec::Detailed(table))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A source table: `type` picks the connector, the other keys are its config.
#[derive(Debug, Clone, JsonSchema)]
pub struct SourceTable {
    /// The connector type, e.g. "mqtt" or "kafka".
    #[serde(rename = "type")]
    pub kind: String,
    /// The connector's own keys (checked against its config type).
    #[serde(skip)]
    pub table: toml::Table,
}

/// A sink table: `type` picks the connector, `queue` is weir's, the other keys are the
/// connector's config.
#[derive(Debug, Clone, JsonSchema)]
pub struct SinkTable {
    /// The connector type, e.g. "mqtt" or "file".
    #[serde(rename = "type")]
    pub kind: String,
    /// A store-and-forward queue in front of the sink (`true`, `false`, or a table
    /// overriding `[store]`). Default: a queue for the `upstream` sink only.
    #[schemars(with = "Option<QueueSpec>")]
    pub queue: Option<toml::Value>,
    /// The connector's own keys (checked against its config type).
    #[serde(skip)]
    pub table: toml::Table,
}

/// A connector table's `type` and the rest of its keys.
fn split_type<'de, D: Deserializer<'de>>(deserializer: D) -> Result<(String, toml::Table), D::Error> {
    let mut table = toml::Table::deserialize(deserializer)?;
    match table.remove("type") {
        Some(toml::Value::String(kind)) => Ok((kind, table)),
        Some(other) => Err(serde::de::Error::custom(format!("`type` is a string naming the connector, not {}", other.type_str()))),
        None => Err(serde::de::Error::custom("missing `type` (the connector, e.g. type = \"mqtt\")")),
    }
}

impl<'de> Deserialize<'de> for SourceTable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (kind, table) = split_type(deserializer)?;
        Ok(SourceTable { kind, table })
    }
}

impl<'de> Deserialize<'de> for SinkTable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (kind, mut table) = split_type(deserializer)?;
        Ok(SinkTable { kind, queue: table.remove("queue"), table })
    }
}

/// Executor and engine settings.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSettings {
    /// Unacknowledged messages a source may have in the pipeline before it waits.
    #[serde(default = "RuntimeSettings::default_in_flight")]
    pub in_flight: usize,
    /// Messages per module call and per sink delivery, at most.
    #[serde(default = "RuntimeSettings::default_batch_size")]
    pub batch_size: usize,
    /// Where compiled modules are cached. Default: `~/.cache/weir/modules`.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// At shutdown, how long sources wait for in-flight messages and sinks keep retrying an
    /// unavailable destination; what is left stays unacknowledged and is redelivered by the
    /// broker after a restart. Default "15s".
    #[serde(default = "RuntimeSettings::default_drain_timeout")]
    pub drain_timeout: HumanDuration,
    /// Serve `/metrics` (Prometheus; every name is in `runtime/src/telemetry.rs`), `/healthz`
    /// and `/readyz` over HTTP on this address, e.g. "127.0.0.1:9464". Default: not served.
    #[serde(default)]
    pub http_listen: Option<String>,
    /// A module whose calls take less than this is called where its messages arrive, with no
    /// thread hand-off. A call that outlives it is set aside at the next epoch tick (5 ms) and
    /// finished on another thread, so other messages keep flowing; calls that take longer
    /// (three in a row, or one stopped by the module's `deadline`) send the module back to
    /// its own thread for good. "0s" keeps every module on its own thread. Default "1ms".
    #[serde(default = "RuntimeSettings::default_inline_call_budget")]
    pub inline_call_budget: HumanDuration,
    /// The largest message weir takes. A bigger one goes to `$deadletter` (reason
    /// `too-large`) as it arrives; an MQTT 5 source also tells its broker (CONNECT's maximum
    /// packet size), which then does not send weir bigger ones at all; over MQTT 3.1.1 the
    /// payload is dropped as it is read. Default "16MiB".
    #[serde(default = "RuntimeSettings::default_max_message_size")]
    pub max_message_size: ByteSize,
    /// Payload bytes a source may have in the pipeline before it waits (besides `in_flight`
    /// messages), so that large messages cannot exhaust memory. Default "256MiB".
    #[serde(default = "RuntimeSettings::default_in_flight_bytes")]
    pub in_flight_bytes: ByteSize,
}

impl RuntimeSettings {
    fn default_in_flight() -> usize {
        4096
    }
    fn default_batch_size() -> usize {
        64
    }
    fn default_drain_timeout() -> HumanDuration {
        HumanDuration(std::time::Duration::from_secs(15))
    }
    fn default_inline_call_budget() -> HumanDuration {
        HumanDuration(std::time::Duration::from_millis(1))
    }
    fn default_max_message_size() -> ByteSize {
        ByteSize(16 << 20)
    }
    fn default_in_flight_bytes() -> ByteSize {
        ByteSize(256 << 20)
    }
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            in_flight: Self::default_in_flight(),
            batch_size: Self::default_batch_size(),
            cache_dir: None,
            drain_timeout: Self::default_drain_timeout(),
            http_listen: None,
            inline_call_budget: Self::default_inline_call_budget(),
            max_message_size: Self::default_max_message_size(),
            in_flight_bytes: Self::default_in_flight_bytes(),
        }
    }
}
