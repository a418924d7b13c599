use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;
use weir_core::Secret;

/// How to reach the broker: `connection = { … }` of an amqp source or sink.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AmqpConnection {
    /// `amqp://host:5672/VHOST` or `amqps://host:5671/VHOST` (the default vhost `/` is
    /// written `%2f`). Put no credentials here: they go in `username` / `password`.
    pub url: String,
    /// Default `guest` (which RabbitMQ accepts only from localhost).
    #[serde(default)]
    pub username: Option<String>,
    /// From `{ env = "…" }` or `{ file = "…" }`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// PEM CA certificate for `amqps://`, relative to the pipeline file. Default: the system's.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Heartbeat interval in seconds: a dead connection is noticed after about twice this.
    /// Default 30.
    #[serde(default = "AmqpConnection::default_heartbeat")]
    pub heartbeat_secs: u16,
}

impl AmqpConnection {
    fn default_heartbeat() -> u16 {
        30
    }

    /// The URL, parsed; refused with advice when it is not one or carries credentials
    /// (they would be clear text in the pipeline file and in logs).
    pub fn uri(&self) -> anyhow::Result<lapin::uri::AMQPUri> {
        if self.url.contains('@') {
            anyhow::bail!("put the AMQP user and password in `username` / `password`, not in the URL (`…@{}`)", self.url.split('@').next_back().unwrap_or(""));
        }
        self.url.parse().map_err(|err: String| anyhow::anyhow!("`{}` is not an AMQP URL ({err}); write amqp://host:5672/%2f", self.url))
    }
}

fn default_true() -> bool {
    true
}

fn default_routing_key() -> String {
    "{topic}".into()
}

/// Publish to an exchange.
///
/// ```toml
/// [sinks.rabbit]
/// type = "amqp"
/// connection = { url = "amqp://rabbit.plant:5672/%2f", username = "weir", password = { env = "AMQP_PASSWORD" } }
/// exchange = "telemetry"
/// routing_key = "plant.{property:machine}"
/// ```
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AmqpSinkConfig {
    pub connection: AmqpConnection,
    /// The exchange; it must exist (weir checks at connect). Default `""`, the default
    /// exchange, where the routing key names the queue.
    #[serde(default)]
    pub exchange: String,
    /// Routing key template with `{topic}`, `{source}` and `{property:NAME}`. Default `{topic}`.
    #[serde(default = "default_routing_key")]
    pub routing_key: String,
    /// Write `{topic}` with `.` for `/` (`plant/m1/telemetry` → `plant.m1.telemetry`), as
    /// RabbitMQ's MQTT plugin does, so topic exchanges match on it. Default true.
    #[serde(default = "default_true")]
    pub topic_dots: bool,
    /// Persistent messages (delivery mode 2): they survive a broker restart in durable
    /// queues. Default true.
    #[serde(default = "default_true")]
    pub persistent: bool,
    /// An unroutable message (no queue bound for its routing key) is returned by the broker
    /// and goes to `$deadletter` with the reason, instead of being dropped. Default true.
    #[serde(default = "default_true")]
    pub mandatory: bool,
}

/// Consume a queue.
///
/// ```toml
/// [sources.commands]
/// type = "amqp"
/// connection = { url = "amqp://rabbit.plant:5672/%2f", username = "weir", password = { env = "AMQP_PASSWORD" } }
/// queue = "edge-commands"
/// ```
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AmqpSourceConfig {
    pub connection: AmqpConnection,
    /// The queue; it must exist.
    pub queue: String,
    /// How many unacknowledged deliveries the broker sends ahead (`basic.qos`). Default:
    /// the source's in-flight window, at most 65535.
    #[serde(default)]
    pub prefetch: Option<u16>,
    /// The message topic is the routing key with `/` for `.` (the reverse of the sink's
    /// `topic_dots`), unless the message carries an `mqtt-topic` header. Default true.
    #[serde(default = "default_true")]
    pub topic_dots: bool,
}
