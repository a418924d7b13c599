//! The message types a module sees and produces.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::bindings::weir::module::types::{Message, Property, Qos as QoS};
use crate::bindings::weir::module::types::OutputMessage;

/// Why a module could not handle a message; becomes the dead-letter reason.
pub struct Error(String);

impl Error {
    pub fn msg(text: impl fmt::Display) -> Self {
        Error(text.to_string())
    }
    pub fn into_reason(self) -> String {
        self.0
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(err: E) -> Self {
        Error(err.to_string())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Message {
    /// A message for unit tests: `payload` on `topic`, everything else empty.
    pub fn for_test(topic: &str, payload: impl Into<Vec<u8>>) -> Message {
        Message {
            payload: payload.into(),
            topic: topic.to_owned(),
            properties: Vec::new(),
            content_type: None,
            correlation_data: None,
            response_topic: None,
            expiry_secs: None,
            qos: QoS::AtLeastOnce,
            retain: false,
            ingest_time_ms: 0,
            source: "test".to_owned(),
        }
    }

    /// The payload parsed as JSON into `T`. The error says why it is not.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.payload).map_err(|err| Error(format!("payload is not the JSON expected: {err}")))
    }

    /// The first application property named `name`.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.iter().find(|p| p.name == name).map(|p| p.value.as_str())
    }

    /// Topic level `index` (0-based): `factory/m1/telemetry` has `m1` at 1.
    pub fn topic_level(&self, index: usize) -> Option<&str> {
        self.topic.split('/').nth(index)
    }
}

/// A message a module sends on. Unset fields are copied from the input message.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub payload: Vec<u8>,
    pub output: Option<String>,
    pub topic: Option<String>,
    pub properties: Option<Vec<Property>>,
    pub content_type: Option<String>,
}

impl Output {
    /// Raw payload bytes.
    pub fn bytes(payload: impl Into<Vec<u8>>) -> Self {
        Output { payload: payload.into(), ..Output::default() }
    }

    /// A JSON payload, with content type `application/json`.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        Ok(Output { payload: serde_json::to_vec(value)?, content_type: Some("application/json".into()), ..Output::default() })
    }

    /// Send to the named output (`/messages/modules/{id}/outputs/{name}`) instead of "out".
    pub fn to_output(mut self, name: impl Into<String>) -> Self {
        self.output = Some(name.into());
        self
    }

    /// Publish on another topic.
    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// Replace the application properties.
    pub fn with_properties(mut self, properties: Vec<Property>) -> Self {
        self.properties = Some(properties);
        self
    }

    #[doc(hidden)]
    pub fn into_wit(self) -> OutputMessage {
        OutputMessage { payload: self.payload, output: self.output, topic: self.topic, properties: self.properties, content_type: self.content_type }
    }
}
