//! `[store]` and a sink's `queue`: the store-and-forward settings in the pipeline TOML.
//!
//! The sink `upstream` names gets a queue unless it says `queue = false`; any other sink
//! gets one with `queue = true` or a `queue = { … }` table overriding `[store]`.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use super::units::{ByteSize, HumanDuration};
use crate::queue::{Fsync, WhenFull};

/// Where queues live and the defaults for every sink's queue.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Directory of the queues (one sub-directory per sink), relative to the pipeline file.
    /// Default: `<pipeline file name>.queue` beside the pipeline file.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// How long a message may wait for its sink, counted from when weir received it
    /// (IoT Edge's `timeToLiveSecs`). A route's `time_to_live` overrides it. Default "2h".
    #[serde(default = "StoreConfig::default_time_to_live")]
    pub time_to_live: HumanDuration,
    /// Disk space one sink's queue may take. Default "1GiB".
    #[serde(default = "StoreConfig::default_max_size")]
    pub max_size: ByteSize,
    /// At `max_size`: "block" stops taking messages from the sources until the sink catches
    /// up; "drop_oldest" deletes the oldest messages of the lowest priority (counted).
    /// Default "block".
    #[serde(default = "StoreConfig::default_when_full")]
    pub when_full: WhenFull,
    /// "batch": one fsync per group of messages, before they are acknowledged (survives
    /// power loss). "never": the OS writes back (survives a crash of weir, not of the
    /// machine). Default "batch".
    #[serde(default = "StoreConfig::default_fsync")]
    pub fsync: Fsync,
}

impl StoreConfig {
    fn default_time_to_live() -> HumanDuration {
        HumanDuration(std::time::Duration::from_secs(7200))
    }
    fn default_max_size() -> ByteSize {
        ByteSize(1 << 30)
    }
    fn default_when_full() -> WhenFull {
        WhenFull::Block
    }
    fn default_fsync() -> Fsync {
        Fsync::Batch
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            dir: None,
            time_to_live: Self::default_time_to_live(),
            max_size: Self::default_max_size(),
            when_full: Self::default_when_full(),
            fsync: Self::default_fsync(),
        }
    }
}

/// A sink's `queue`: `true`, `false`, or a table overriding `[store]`.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(untagged)]
pub enum QueueSpec {
    Enabled(bool),
    Settings(QueueOverride),
}

/// Per-sink overrides of `[store]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueOverride {
    #[serde(default)]
    pub time_to_live: Option<HumanDuration>,
    #[serde(default)]
    pub max_size: Option<ByteSize>,
    #[serde(default)]
    pub when_full: Option<WhenFull>,
    #[serde(default)]
    pub fsync: Option<Fsync>,
}

impl<'de> Deserialize<'de> for QueueSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = QueueSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false, or a table { max_size = \"…\", when_full = \"block\", time_to_live = \"…\", fsync = \"batch\" }")
            }
            fn visit_bool<E: serde::de::Error>(self, enabled: bool) -> Result<QueueSpec, E> {
                Ok(QueueSpec::Enabled(enabled))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<QueueSpec, A::Error> {
                QueueOverride::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(QueueSpec::Settings)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}
