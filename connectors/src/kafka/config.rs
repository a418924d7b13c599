use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;
use weir_core::Secret;

use crate::azure::connection_string_field;

/// How to reach a Kafka cluster (or an Event Hubs namespace): `connection = { … }` of a
/// kafka source or sink.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaConnection {
    /// Bootstrap servers, `host:port,host:port`. Not needed with `event_hubs_connection_string`.
    #[serde(default)]
    pub brokers: Option<String>,
    /// Azure Event Hubs: `Endpoint=sb://NAMESPACE.servicebus.windows.net/;SharedAccessKeyName=…;
    /// SharedAccessKey=…[;EntityPath=…]`. Sets the brokers (`NAMESPACE.servicebus.windows.net:9093`),
    /// SASL_SSL with PLAIN, user `$ConnectionString` and the connection string as password.
    #[serde(default)]
    pub event_hubs_connection_string: Option<Secret>,
    /// SASL for plain Kafka: `{ mechanism = "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512", username = "…", password = { env = "…" } }`.
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
    /// Use TLS. Default: on with Event Hubs, off otherwise.
    #[serde(default)]
    pub tls: Option<bool>,
    /// CA certificate (PEM) for TLS, relative to the pipeline file. Default: the system's.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Send SASL PLAIN credentials without TLS (readable by anyone on the network path).
    /// Refused unless this is true: for a broker on a trusted network only. Default false.
    #[serde(default)]
    pub allow_plaintext_credentials: bool,
    /// Further librdkafka settings (`"socket.keepalive.enable" = "true"` …). Not those weir
    /// sets itself (use its own keys), and no secrets (`sasl`, `event_hubs_connection_string`
    /// take them from the environment or a file).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// SASL credentials.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512".
    pub mechanism: String,
    pub username: String,
    pub password: Secret,
}

/// Produce to a Kafka topic (or an Event Hub).
///
/// ```toml
/// [sinks.hub]
/// type = "kafka"
/// connection = { event_hubs_connection_string = { env = "EVENTHUBS_CONNECTION_STRING" } }
/// key = "{property:machine}"
/// ```
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub connection: KafkaConnection,
    /// The topic. Default: the Event Hubs connection string's `EntityPath`.
    #[serde(default)]
    pub topic: Option<String>,
    /// Partition key: text with `{topic}` (the message's MQTT topic), `{source}` and
    /// `{property:NAME}`. Default: no key.
    #[serde(default)]
    pub key: Option<String>,
    /// `acks`: "all" (default), "1" or "0".
    #[serde(default = "KafkaConfig::default_acks")]
    pub acks: String,
    /// Idempotent producer (no duplicates from the producer's own retries). Default true.
    #[serde(default = "default_true")]
    pub idempotence: bool,
    /// "none", "gzip", "snappy", "lz4" (default) or "zstd".
    #[serde(default = "KafkaConfig::default_compression")]
    pub compression: String,
    /// How long the producer waits to fill a batch, ms. Default 0: weir hands the producer
    /// whole batches and waits for each before the next, so lingering only adds latency.
    #[serde(default)]
    pub linger_ms: u32,
    /// Messages weir hands the producer at once, at most: under load the sink takes what is
    /// waiting, up to this many, and the broker acknowledges them together. Default 4096.
    #[serde(default = "KafkaConfig::default_batch_messages")]
    pub batch_messages: usize,
    /// Largest message (payload, key and headers) accepted; bigger ones go to `$deadletter`.
    /// Default 1000000 (Event Hubs' limit is 1 MB).
    #[serde(default = "KafkaConfig::default_max_message_bytes")]
    pub max_message_bytes: usize,
}

/// Consume Kafka topics (or an Event Hub) in a consumer group: cloud-to-edge.
///
/// ```toml
/// [sources.commands]
/// type = "kafka"
/// connection = { brokers = "kafka-1:9092" }
/// topics = ["edge-commands"]
/// group = "weir-plant7"
/// ```
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    pub connection: KafkaConnection,
    /// Topics to consume. Default: the Event Hubs connection string's `EntityPath`.
    #[serde(default)]
    pub topics: Vec<String>,
    /// The consumer group (`group.id`). Offsets are committed for it, so a restarted weir
    /// goes on where it stopped. With Event Hubs, a consumer group of the hub (`$Default`).
    pub group: String,
    /// Where a group without committed offsets starts: "latest" (default, as Kafka does) or
    /// "earliest" (everything the topic still holds).
    #[serde(default = "KafkaSourceConfig::default_start")]
    pub start_from: StartFrom,
    /// How often accepted offsets are committed, ms. Default 1000. A crash replays at most
    /// this much (plus what was in flight): at least once.
    #[serde(default = "KafkaSourceConfig::default_commit_interval_ms")]
    pub commit_interval_ms: u64,
}

/// Where a new consumer group starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    Earliest,
    Latest,
}

fn default_true() -> bool {
    true
}

impl KafkaConfig {
    fn default_acks() -> String {
        "all".into()
    }
    fn default_compression() -> String {
        "lz4".into()
    }
    fn default_batch_messages() -> usize {
        4096
    }
    fn default_max_message_bytes() -> usize {
        1_000_000
    }

    /// The producer's librdkafka settings and the topic this config means.
    pub fn client_settings(&self, base: &Path) -> anyhow::Result<(BTreeMap<String, String>, String)> {
        let (mut settings, entity_path) = self.connection.settings(base)?;
        settings.insert("acks".into(), self.acks.clone());
        settings.insert("enable.idempotence".into(), self.idempotence.to_string());
        settings.insert("compression.type".into(), self.compression.clone());
        settings.insert("linger.ms".into(), self.linger_ms.to_string());
        settings.insert("message.max.bytes".into(), (self.max_message_bytes + 4096).to_string());
        self.connection.apply_options(&mut settings)?;
        let topic =
            self.topic.clone().or(entity_path).ok_or_else(|| anyhow::anyhow!("kafka: set `topic` (or EntityPath in the Event Hubs connection string)"))?;
        Ok((settings, topic))
    }
}

impl KafkaSourceConfig {
    fn default_start() -> StartFrom {
        StartFrom::Latest
    }
    fn default_commit_interval_ms() -> u64 {
        1000
    }

    /// The consumer's librdkafka settings and the topics this config means. weir stores
    /// and commits offsets itself, only for messages the pipeline accepted.
    pub fn client_settings(&self, base: &Path) -> anyhow::Result<(BTreeMap<String, String>, Vec<String>)> {
        let (mut settings, entity_path) = self.connection.settings(base)?;
        settings.insert("group.id".into(), self.group.clone());
        settings.insert("enable.auto.commit".into(), "false".into());
        settings.insert("enable.auto.offset.store".into(), "false".into());
        let start = match self.start_from {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        };
        settings.insert("auto.offset.reset".into(), start.into());
        self.connection.apply_options(&mut settings)?;
        let topics = if self.topics.is_empty() { entity_path.into_iter().collect() } else { self.topics.clone() };
        if topics.is_empty() {
            anyhow::bail!("kafka source: set `topics` (or EntityPath in the Event Hubs connection string)");
        }
        Ok((settings, topics))
    }
}

impl KafkaConnection {
    /// Brokers, security and credentials; and the Event Hub's name if the connection string has one.
    fn settings(&self, base: &Path) -> anyhow::Result<(BTreeMap<String, String>, Option<String>)> {
        let mut settings = BTreeMap::new();
        let mut entity_path = None;
        let mut brokers = self.brokers.clone();
        let mut tls = self.tls.unwrap_or(false);
        if let Some(secret) = &self.event_hubs_connection_string {
            let connection = secret.reveal(base)?;
            let hubs = EventHubs::parse(&connection)?;
            brokers.get_or_insert(format!("{}:9093", hubs.namespace_host));
            entity_path = hubs.entity_path;
            tls = self.tls.unwrap_or(true);
            settings.insert("sasl.mechanisms".into(), "PLAIN".into());
            settings.insert("sasl.username".into(), "$ConnectionString".into());
            settings.insert("sasl.password".into(), connection);
        } else if let Some(sasl) = &self.sasl {
            settings.insert("sasl.mechanisms".into(), sasl.mechanism.clone());
            settings.insert("sasl.username".into(), sasl.username.clone());
            settings.insert("sasl.password".into(), sasl.password.reveal(base)?);
        }
        let sasl = settings.contains_key("sasl.mechanisms");
        if !tls && settings.get("sasl.mechanisms").is_some_and(|m| m.eq_ignore_ascii_case("PLAIN")) && !self.allow_plaintext_credentials {
            anyhow::bail!(
                "kafka: SASL PLAIN without TLS sends the password in clear text: set `tls = true` (or use SCRAM), or `allow_plaintext_credentials = true` for a broker on a trusted network"
            );
        }
        let protocol = match (tls, sasl) {
            (true, true) => "SASL_SSL",
            (true, false) => "SSL",
            (false, true) => "SASL_PLAINTEXT",
            (false, false) => "PLAINTEXT",
        };
        settings.insert("security.protocol".into(), protocol.into());
        if let Some(ca) = &self.ca {
            settings.insert("ssl.ca.location".into(), base.join(ca).display().to_string());
        }
        let brokers = brokers.ok_or_else(|| anyhow::anyhow!("kafka: set `connection.brokers` (host:port,…) or `connection.event_hubs_connection_string`"))?;
        settings.insert("bootstrap.servers".into(), brokers);
        Ok((settings, entity_path))
    }

    /// Add `options`, refusing the settings weir makes itself (`enable.auto.commit = true`
    /// would commit what the pipeline never accepted) and secrets written in clear text.
    fn apply_options(&self, settings: &mut BTreeMap<String, String>) -> anyhow::Result<()> {
        for (key, value) in &self.options {
            if settings.contains_key(key) {
                anyhow::bail!("kafka: `options` may not set `{key}`: weir sets it itself (from its own keys; see docs/connectors.md)");
            }
            if ["password", "secret", "sasl.jaas", "ssl.key.pem", "sasl.oauthbearer.config"].iter().any(|word| key.contains(word)) {
                anyhow::bail!(
                    "kafka: `options` may not hold `{key}`: secrets are never written in the pipeline file (use `sasl` or `event_hubs_connection_string`, which read them from the environment or a file)"
                );
            }
            settings.insert(key.clone(), value.clone());
        }
        Ok(())
    }
}

/// librdkafka's configuration from weir's settings.
pub fn client_config(settings: &BTreeMap<String, String>) -> rdkafka::ClientConfig {
    let mut client = rdkafka::ClientConfig::new();
    for (key, value) in settings {
        client.set(key, value);
    }
    client
}

/// The parts of an Event Hubs connection string weir needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHubs {
    pub namespace_host: String,
    pub entity_path: Option<String>,
}

impl EventHubs {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let field = |name: &str| connection_string_field(text, name);
        let endpoint =
            field("Endpoint").ok_or_else(|| anyhow::anyhow!("the Event Hubs connection string has no Endpoint=sb://NAMESPACE.servicebus.windows.net/"))?;
        let host = endpoint.trim_start_matches("sb://").trim_end_matches('/').to_owned();
        if host.is_empty() || host.contains('/') {
            anyhow::bail!("Event Hubs Endpoint `{endpoint}` is not sb://NAMESPACE.servicebus.windows.net/");
        }
        Ok(EventHubs { namespace_host: host, entity_path: field("EntityPath") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_hubs_preset() {
        let parsed = EventHubs::parse("Endpoint=sb://plant7.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=abc=;EntityPath=telemetry")
            .expect("parses");
        assert_eq!(parsed, EventHubs { namespace_host: "plant7.servicebus.windows.net".into(), entity_path: Some("telemetry".into()) });
        assert!(EventHubs::parse("SharedAccessKey=x").is_err());
    }

    #[test]
    fn event_hubs_settings_for_librdkafka() {
        let dir = tempfile::tempdir().expect("tempdir");
        let connection = "Endpoint=sb://plant7.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=abc=;EntityPath=telemetry";
        std::fs::write(dir.path().join("eh"), connection).expect("write");
        let config: KafkaConfig = toml::from_str("connection = { event_hubs_connection_string = { file = \"eh\" } }").expect("config");
        let (settings, topic) = config.client_settings(dir.path()).expect("settings");
        assert_eq!(topic, "telemetry");
        assert_eq!(settings["bootstrap.servers"], "plant7.servicebus.windows.net:9093");
        assert_eq!(settings["security.protocol"], "SASL_SSL");
        assert_eq!(settings["sasl.mechanisms"], "PLAIN");
        assert_eq!(settings["sasl.username"], "$ConnectionString");
        assert_eq!(settings["sasl.password"], connection);
        let source: KafkaSourceConfig =
            toml::from_str("group = \"$Default\"\nstart_from = \"earliest\"\nconnection = { event_hubs_connection_string = { file = \"eh\" } }")
                .expect("config");
        let (settings, topics) = source.client_settings(dir.path()).expect("settings");
        assert_eq!(topics, ["telemetry"]);
        assert_eq!((settings["group.id"].as_str(), settings["enable.auto.commit"].as_str()), ("$Default", "false"));
        assert_eq!(settings["auto.offset.reset"], "earliest");
    }
}

#[cfg(test)]
mod refusals {
    use super::*;

    /// A consumer's settings with `connection` (a TOML table body); its password file is `pw`
    /// in a directory of its own.
    fn consumer(connection: &str) -> anyhow::Result<(BTreeMap<String, String>, Vec<String>)> {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("pw"), "p").expect("password file");
        let config: KafkaSourceConfig =
            toml::from_str(&format!("group = \"g\"\ntopics = [\"t\"]\n[connection]\nbrokers = \"b:9092\"\n{connection}")).expect("a source");
        config.client_settings(dir.path())
    }

    #[test]
    fn plain_credentials_without_tls_are_refused_unless_allowed() {
        let sasl = "sasl = { mechanism = \"PLAIN\", username = \"u\", password = { file = \"pw\" } }\n";
        let err = consumer(sasl).expect_err("refused").to_string();
        assert!(err.contains("clear text") && err.contains("allow_plaintext_credentials"), "{err}");
        assert!(consumer(&format!("{sasl}tls = true\n")).is_ok());
        assert!(consumer(&format!("{sasl}allow_plaintext_credentials = true\n")).is_ok());
        assert!(consumer(&sasl.replace("PLAIN", "SCRAM-SHA-512")).is_ok(), "SCRAM sends no password");
    }

    #[test]
    fn options_may_not_override_weir_or_hold_secrets() {
        let err = consumer("options = { \"enable.auto.commit\" = \"true\" }").expect_err("refused").to_string();
        assert!(err.contains("may not set `enable.auto.commit`"), "{err}");
        let err = consumer("options = { \"sasl.password\" = \"hunter2\" }").expect_err("refused").to_string();
        assert!(err.contains("secrets are never written") && !err.contains("hunter2"), "{err}");
        assert!(consumer("options = { \"socket.keepalive.enable\" = \"true\" }").is_ok());
    }
}
