//! The records of `weir:module/types` as Rust types for typed calls.
//!
//! Inputs borrow from the host's [`weir_core::Message`] (no copy before the one into guest
//! memory); outputs are owned and become `Bytes` without another copy.

use weir_core::message::QoS;
use wasmtime::component::{ComponentType, Lift, Lower};

#[derive(ComponentType, Lower)]
#[component(record)]
pub struct PropertyRef<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

#[derive(ComponentType, Lift, Clone, Debug)]
#[component(record)]
pub struct Property {
    pub name: String,
    pub value: String,
}

#[derive(ComponentType, Lower, Lift, Clone, Copy, Debug)]
#[component(enum)]
#[repr(u8)]
pub enum Qos {
    #[component(name = "at-most-once")]
    AtMostOnce,
    #[component(name = "at-least-once")]
    AtLeastOnce,
    #[component(name = "exactly-once")]
    ExactlyOnce,
}

impl From<QoS> for Qos {
    fn from(qos: QoS) -> Self {
        match qos {
            QoS::AtMostOnce => Qos::AtMostOnce,
            QoS::AtLeastOnce => Qos::AtLeastOnce,
            QoS::ExactlyOnce => Qos::ExactlyOnce,
        }
    }
}

#[derive(ComponentType, Lower)]
#[component(record)]
pub struct MessageRef<'a> {
    pub payload: &'a [u8],
    pub topic: &'a str,
    pub properties: Vec<PropertyRef<'a>>,
    #[component(name = "content-type")]
    pub content_type: Option<&'a str>,
    #[component(name = "correlation-data")]
    pub correlation_data: Option<&'a [u8]>,
    #[component(name = "response-topic")]
    pub response_topic: Option<&'a str>,
    #[component(name = "expiry-secs")]
    pub expiry_secs: Option<u32>,
    pub qos: Qos,
    pub retain: bool,
    #[component(name = "ingest-time-ms")]
    pub ingest_time_ms: u64,
    pub source: &'a str,
}

impl<'a> From<&'a weir_core::Message> for MessageRef<'a> {
    fn from(message: &'a weir_core::Message) -> Self {
        let meta = message.meta();
        MessageRef {
            payload: &message.payload,
            topic: &meta.topic,
            properties: meta.properties.iter().map(|p| PropertyRef { name: &p.name, value: &p.value }).collect(),
            content_type: meta.content_type.as_deref(),
            correlation_data: meta.correlation_data.as_deref(),
            response_topic: meta.response_topic.as_deref(),
            expiry_secs: meta.expiry_secs,
            qos: meta.qos.into(),
            retain: meta.retain,
            ingest_time_ms: meta.ingest_time_ms,
            source: &meta.source,
        }
    }
}

#[derive(ComponentType, Lift, Clone, Debug)]
#[component(record)]
pub struct OutputMessage {
    pub payload: Vec<u8>,
    pub output: Option<String>,
    pub topic: Option<String>,
    pub properties: Option<Vec<Property>>,
    #[component(name = "content-type")]
    pub content_type: Option<String>,
}
