//! The message model.
//!
//! A [`Message`] is payload bytes plus [`Metadata`] plus an [`Ack`]. Payload and metadata
//! sit behind shared pointers, so handing a message to several routes copies neither; a
//! module output that changes the payload gets a new buffer and shares the rest until it
//! changes something else (copy on write through [`Message::meta_mut`]).

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ack::Ack;
use crate::json_fields::BodyFields;

/// MQTT quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(into = "u8", try_from = "u8")]
pub enum QoS {
    #[default]
    AtMostOnce,
    AtLeastOnce,
    ExactlyOnce,
}

impl From<QoS> for u8 {
    fn from(qos: QoS) -> u8 {
        qos as u8
    }
}

impl TryFrom<u8> for QoS {
    type Error = String;
    fn try_from(value: u8) -> Result<Self, String> {
        match value {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            other => Err(format!("QoS is 0, 1 or 2, not {other}")),
        }
    }
}

/// The property a source sets on a message whose payload it could not take (over the size
/// it may read: MQTT 3.1.1 cannot tell the broker its limit) and dropped as it arrived: the
/// payload is empty, the value is the dropped payload's size in bytes. The pipeline
/// dead-letters such a message as `too-large`.
pub const DROPPED_PAYLOAD: &str = "weir-dropped-payload";

/// An application property: an MQTT 5 user property, a Kafka header, an AMQP header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Property {
    pub name: String,
    pub value: String,
}

impl Property {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Property { name: name.into(), value: value.into() }
    }
}

/// The module output a message came out of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleOutput {
    pub module: Arc<str>,
    pub output: Arc<str>,
}

/// Everything about a message except its payload. Every connector maps each field to its
/// own format explicitly (see `docs/connectors.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Broker topic; empty for sources without topics.
    pub topic: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_base64")]
    pub correlation_data: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_topic: Option<String>,
    /// MQTT 5 message expiry interval in seconds, counted from `ingest_time_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_secs: Option<u32>,
    #[serde(default)]
    pub qos: QoS,
    #[serde(default)]
    pub retain: bool,
    /// When the sender says it produced the message (Kafka timestamp …), ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_time_ms: Option<u64>,
    /// When weir received it, ms since the epoch.
    pub ingest_time_ms: u64,
    /// The pipeline source it entered through.
    pub source: Arc<str>,
    /// The module output that produced it, if a module did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<ModuleOutput>,
}

impl Metadata {
    /// Metadata for a message arriving now on `topic` from `source`.
    pub fn new(source: Arc<str>, topic: impl Into<String>) -> Self {
        Metadata {
            topic: topic.into(),
            properties: Vec::new(),
            content_type: None,
            correlation_data: None,
            response_topic: None,
            expiry_secs: None,
            qos: QoS::AtMostOnce,
            retain: false,
            source_time_ms: None,
            ingest_time_ms: now_ms(),
            source,
            origin: None,
        }
    }

    /// The first property with this name.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.iter().find(|p| p.name == name).map(|p| p.value.as_str())
    }
}

/// A payload decoded once and shared by every route that looks at it.
pub type DecodedBody = Option<Arc<serde_json::Value>>;

/// A message in flight.
#[derive(Debug, Clone)]
pub struct Message {
    pub payload: Bytes,
    meta: Arc<Metadata>,
    pub ack: Ack,
    /// Made on first use (most messages are never decoded: one allocation less each);
    /// copies made after that share it.
    decoded: OnceLock<Arc<BodyCache>>,
}

/// What has been decoded of a payload, shared by every copy of the message made after it.
#[derive(Debug, Default)]
struct BodyCache {
    /// The whole payload as a JSON tree.
    tree: OnceLock<DecodedBody>,
    /// A JSON object's top-level fields (`None`: not an object).
    fields: OnceLock<Option<BodyFields>>,
}

impl Message {
    pub fn new(payload: impl Into<Bytes>, meta: Metadata, ack: Ack) -> Self {
        Message { payload: payload.into(), meta: Arc::new(meta), ack, decoded: OnceLock::new() }
    }

    pub fn meta(&self) -> &Metadata {
        &self.meta
    }

    /// The metadata as a shared handle (cheap to keep).
    pub fn shared_meta(&self) -> Arc<Metadata> {
        self.meta.clone()
    }

    /// The same message without its acknowledgement: for keeping a copy (an aggregate's
    /// retained messages) without delaying the acknowledgement to the source.
    pub fn without_ack(&self) -> Message {
        Message { payload: self.payload.clone(), meta: self.meta.clone(), ack: Ack::none(), decoded: self.decoded.clone() }
    }

    /// Change metadata; copies it only if another holder shares it.
    pub fn meta_mut(&mut self) -> &mut Metadata {
        Arc::make_mut(&mut self.meta)
    }

    /// A new message produced from this one: new payload, same metadata and acknowledgement.
    pub fn derive(&self, payload: Bytes) -> Message {
        Message { payload, meta: self.meta.clone(), ack: self.ack.clone(), decoded: OnceLock::new() }
    }

    /// A top-level field of a JSON object payload, e.g. `temperature` for
    /// `$body.temperature`. The object is scanned once (nothing built) and each field decoded
    /// once, on first use, however many routes ask; cheaper than [`Message::json_body`] when
    /// conditions look at a few fields. `None` if the payload is not a JSON object or has no
    /// such field (with duplicate names, the last counts, as in `json_body`).
    pub fn body_field(&self, name: &str) -> Option<&serde_json::Value> {
        let decoded = self.body_cache();
        if let Some(tree) = decoded.tree.get() {
            return tree.as_deref()?.get(name);
        }
        decoded.fields.get_or_init(|| BodyFields::index(&self.payload)).as_ref()?.get(&self.payload, name)
    }

    /// A top-level field of a JSON object payload whose value is a string without escapes,
    /// borrowed from the payload. Unless the body was decoded already, this is one
    /// validating pass that builds and keeps nothing: for a single read of one field (an
    /// aggregate's key), where [`Message::body_field`]'s index would cost more than it saves.
    /// `None` if the payload is not a JSON object, lacks the field, or has another kind of
    /// value there (read it with `body_field` then).
    pub fn body_plain_string(&self, name: &str) -> Option<&str> {
        if self.decoded.get().is_some_and(|decoded| decoded.tree.get().is_some() || decoded.fields.get().is_some()) {
            return self.body_field(name)?.as_str();
        }
        crate::json_fields::plain_string_field(&self.payload, name)
    }

    /// The payload parsed as JSON, decoded at most once however many routes ask.
    /// `None` if the payload is not JSON.
    pub fn json_body(&self) -> Option<&serde_json::Value> {
        self.body_cache().tree.get_or_init(|| serde_json::from_slice(&self.payload).ok().map(Arc::new)).as_deref()
    }

    fn body_cache(&self) -> &BodyCache {
        self.decoded.get_or_init(Arc::default)
    }

    /// The JSON Lines form used by file and blob sinks and dead letters.
    pub fn to_json_line(&self) -> serde_json::Value {
        let mut record = serde_json::to_value(&*self.meta).unwrap_or_else(|_| serde_json::Value::Object(Default::default()));
        if let serde_json::Value::Object(fields) = &mut record {
            let (key, value) = match (self.json_body(), std::str::from_utf8(&self.payload)) {
                (Some(json), _) => ("payload", json.clone()),
                (None, Ok(text)) => ("payload_text", serde_json::Value::String(text.to_owned())),
                (None, Err(_)) => ("payload_base64", serde_json::Value::String(base64_encode(&self.payload))),
            };
            fields.insert(key.to_owned(), value);
        }
        record
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

mod opt_base64 {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Bytes>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => serializer.serialize_str(&super::base64_encode(bytes)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Bytes>, D::Error> {
        // Correlation data read back from JSON (samples, dead letters) is taken as its text bytes.
        Ok(Option::<String>::deserialize(deserializer)?.map(Bytes::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_fields_agree_with_the_whole_tree() {
        let bodies: [&[u8]; 6] = [
            b"{ \"temperature\" : 71.5, \"machine\": \"m1\", \"nested\": {\"a\": [1, 2]}, \"esc\\u0061ped\": true }",
            b"{\"dup\": 1, \"dup\": 2}",
            b"[1, 2, 3]",
            b"42",
            b"not json",
            b"{\"cut\": ",
        ];
        for body in bodies {
            let fresh = || Message::new(body.to_vec(), Metadata::new("s".into(), "t"), Ack::none());
            let (lazy, eager) = (fresh(), fresh());
            let tree = eager.json_body().cloned();
            for name in ["temperature", "machine", "nested", "escaped", "dup", "cut", "missing"] {
                let expected = tree.as_ref().and_then(|t| t.get(name));
                assert_eq!(lazy.body_field(name), expected, "{name} in {}", String::from_utf8_lossy(body));
                assert_eq!(eager.body_field(name), expected, "after the whole tree was decoded");
            }
        }
    }

    #[test]
    fn clones_share_payload_and_metadata() {
        let msg = Message::new(Bytes::from_static(b"{\"t\":1}"), Metadata::new("s".into(), "a/b"), Ack::none());
        let copy = msg.clone();
        assert_eq!(msg.payload.as_ptr(), copy.payload.as_ptr());
        assert!(std::ptr::eq(msg.meta(), copy.meta()));
    }

    #[test]
    fn meta_mut_copies_only_when_shared() {
        let msg = Message::new(Bytes::new(), Metadata::new("s".into(), "a"), Ack::none());
        let mut copy = msg.clone();
        copy.meta_mut().topic = "b".into();
        assert_eq!(msg.meta().topic, "a");
        assert_eq!(copy.meta().topic, "b");
    }

    #[test]
    fn json_line_embeds_json_and_encodes_binary() {
        let json = Message::new(Bytes::from_static(b"{\"t\":1}"), Metadata::new("s".into(), "a"), Ack::none());
        assert_eq!(json.to_json_line()["payload"]["t"], 1);
        let binary = Message::new(Bytes::from_static(&[0xff, 0, 1]), Metadata::new("s".into(), "a"), Ack::none());
        assert_eq!(binary.to_json_line()["payload_base64"], "/wAB");
    }
}
