use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;
use weir_core::{QoS, Secret};

/// How to reach an MQTT broker.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// `mqtt://host:port` (TCP), `mqtts://host:port` (TLS) or `mqtt+unix:///path/to/socket` (a
    /// broker on this machine through a Unix domain socket: faster, and no TCP delays).
    #[serde(deserialize_with = "broker_url")]
    pub url: String,
    /// `"5"` (default) or `"3.1.1"`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Client id. Default: `weir-<pipeline>-<role>`. Keep it stable for persistent sessions.
    /// When one connection config serves several connections (the local broker: subscriber,
    /// publisher, dead letters), the subscriber uses it as is and the others append `-out`
    /// and `-deadletter`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// User name, if the broker wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password: `{ env = "VAR" }` or `{ file = "path" }`, never clear text.
    #[serde(default)]
    pub password: Option<Secret>,
    /// TLS settings; `mqtts://` without this table uses the system's root certificates.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Keep-alive in seconds. Default 30.
    #[serde(default = "ConnectionConfig::default_keep_alive")]
    pub keep_alive_secs: u64,
    /// Start a clean session. Default false: the broker keeps subscriptions and queued QoS 1/2
    /// messages while weir is away, so nothing is lost across a restart.
    #[serde(default)]
    pub clean_session: bool,
    /// MQTT 5 session expiry in seconds when `clean_session` is false. Default 86400 (a day).
    #[serde(default = "ConnectionConfig::default_session_expiry")]
    pub session_expiry_secs: u32,
    /// QoS for subscriptions and publishes. Default 1.
    #[serde(default = "ConnectionConfig::default_qos")]
    pub qos: QoS,
    /// Unacknowledged QoS 1/2 messages in each direction. Default 1000.
    #[serde(default = "ConnectionConfig::default_inflight")]
    pub max_inflight: u16,
    /// Set by presets (IoT Hub): a password made fresh at every (re)connect, e.g. a token
    /// that expires. Takes precedence over `password`.
    #[serde(skip)]
    #[schemars(skip)]
    pub password_provider: Option<PasswordProvider>,
    /// Set by a source from `runtime.max_message_size`: the largest packet it takes, told to
    /// an MQTT 5 broker in CONNECT so that bigger messages are not sent to weir at all. MQTT
    /// 3.1.1 cannot say it: a bigger PUBLISH arrives, its payload is dropped as it is read,
    /// and the pipeline dead-letters it. Default: 256 MiB.
    #[serde(skip)]
    #[schemars(skip)]
    pub max_incoming_bytes: Option<usize>,
}

/// Makes a password when a connection is opened (an IoT Hub SAS token). A publisher
/// reconnects with a fresh one when four fifths of `valid_for` have passed.
#[derive(Clone)]
pub struct PasswordProvider {
    pub make: std::sync::Arc<dyn Fn() -> anyhow::Result<String> + Send + Sync>,
    pub valid_for: std::time::Duration,
}

impl std::fmt::Debug for PasswordProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordProvider(..)")
    }
}

impl ConnectionConfig {
    fn default_keep_alive() -> u64 {
        30
    }
    fn default_session_expiry() -> u32 {
        86_400
    }
    fn default_qos() -> QoS {
        QoS::AtLeastOnce
    }
    fn default_inflight() -> u16 {
        1000
    }

    /// A plain TCP connection to `host:port` with defaults.
    pub fn plain(host: &str, port: u16) -> Self {
        ConnectionConfig {
            url: format!("mqtt://{host}:{port}"),
            protocol: Protocol::default(),
            client_id: None,
            username: None,
            password: None,
            tls: None,
            keep_alive_secs: Self::default_keep_alive(),
            clean_session: false,
            session_expiry_secs: Self::default_session_expiry(),
            qos: Self::default_qos(),
            max_inflight: Self::default_inflight(),
            password_provider: None,
            max_incoming_bytes: None,
        }
    }
}

/// A URL `client::parse_url` accepts: checked as the pipeline is read, so that `weir check`
/// points at it instead of the first connection attempt failing.
fn broker_url<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let url = String::deserialize(deserializer)?;
    super::client::parse_url(&url).map_err(serde::de::Error::custom)?;
    Ok(url)
}

/// MQTT protocol version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum Protocol {
    #[serde(rename = "3.1.1")]
    V311,
    #[default]
    #[serde(rename = "5")]
    V5,
}

/// TLS settings. Paths are relative to the pipeline file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA(s) to trust. Default: the system's roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate (chain), for brokers that authenticate clients by certificate.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[serde(default)]
    pub client_key: Option<Secret>,
}

/// An MQTT source: subscribe to topics on a broker.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttSourceConfig {
    pub connection: ConnectionConfig,
    /// Topic filters to subscribe to (`+` and `#` allowed, `$share/group/…` for scale-out).
    pub topics: Vec<String>,
}

/// An MQTT sink: publish to a broker.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttSinkConfig {
    pub connection: ConnectionConfig,
    /// Topic to publish to; `{topic}` stands for the message's own topic. Default `{topic}`.
    #[serde(default)]
    pub topic: Option<String>,
    /// Set the retain flag. Default: keep the message's flag.
    #[serde(default)]
    pub retain: Option<bool>,
}
