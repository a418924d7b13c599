//! The records of `weir:module/types` as Rust types for typed calls.
//!
//! Inputs go in as one [`BatchRef`]: a data buffer holding every variable-length field of
//! every message, plus fixed-size headers of spans into it. That is three allocations in
//! the module per call instead of several per message (see docs/benchmarks.md). The host's
//! buffers are reused from call to call. Outputs are owned and become `Bytes` without
//! another copy.

use wasmtime::component::{ComponentType, Lift, Lower};
use weir_core::message::QoS;

#[derive(ComponentType, Lower, Clone, Copy, Debug, Default)]
#[component(record)]
pub struct Span {
    pub offset: u32,
    pub len: u32,
}

/// Laid out in its canonical ABI bytes by [`bulk`]; the derive type-checks it against the WIT.
#[derive(ComponentType, Clone, Copy, Debug)]
#[component(record)]
pub struct PropertySpan {
    pub name: Span,
    pub value: Span,
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

/// `weir:module/types.message`: one message's fields as spans of the batch data.
/// Laid out in its canonical ABI bytes by [`bulk`], not lowered field by field (see there);
/// the derive type-checks it against the WIT.
#[derive(ComponentType, Clone, Copy, Debug)]
#[component(record)]
pub struct MessageHeader {
    pub payload: Span,
    pub topic: Span,
    #[component(name = "properties-start")]
    pub properties_start: u32,
    #[component(name = "properties-len")]
    pub properties_len: u32,
    #[component(name = "content-type")]
    pub content_type: Option<Span>,
    #[component(name = "correlation-data")]
    pub correlation_data: Option<Span>,
    #[component(name = "response-topic")]
    pub response_topic: Option<Span>,
    #[component(name = "expiry-secs")]
    pub expiry_secs: Option<u32>,
    pub qos: Qos,
    pub retain: bool,
    #[component(name = "ingest-time-ms")]
    pub ingest_time_ms: u64,
    pub source: Span,
}

/// `weir:module/types.batch`, borrowed from [`BatchBuffers`] and the messages.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct BatchRef<'a> {
    pub data: BatchData<'a>,
    pub messages: Records<'a, MessageHeader>,
    pub properties: Records<'a, PropertySpan>,
}

/// The batch's `data` (a `list<u8>`): every payload, then the metadata bytes. Payloads are
/// copied once, from the messages' shared buffers straight into guest memory (see [`bulk`]).
pub struct BatchData<'a> {
    pub(crate) messages: &'a [weir_core::Message],
    /// The payloads' total length: where the metadata starts.
    pub(crate) payload_bytes: usize,
    pub(crate) metadata: &'a [u8],
}

/// A `list<T>` already laid out in `T`'s canonical ABI bytes (see [`bulk`]): lowering it is
/// one copy into guest memory.
pub struct Records<'a, T> {
    pub(crate) bytes: &'a [u8],
    pub(crate) count: usize,
    _record: std::marker::PhantomData<T>,
}

/// Reusable buffers a batch's headers and metadata are laid out in.
#[derive(Debug, Default)]
pub struct BatchBuffers {
    metadata: Vec<u8>,
    /// `list<message>` in canonical ABI bytes.
    messages: Vec<u8>,
    /// `list<property-span>` in canonical ABI bytes.
    properties: Vec<u8>,
}

impl BatchBuffers {
    /// Metadata bytes go after all payloads: their spans start at `base`.
    fn push(&mut self, base: usize, bytes: &[u8]) -> Span {
        let span = Span { offset: (base + self.metadata.len()) as u32, len: bytes.len() as u32 };
        self.metadata.extend_from_slice(bytes);
        span
    }

    /// Lay `batch` out and borrow it for a call.
    pub fn fill<'a>(&'a mut self, batch: &'a [weir_core::Message]) -> BatchRef<'a> {
        self.metadata.clear();
        self.messages.clear();
        self.properties.clear();
        let base: usize = batch.iter().map(|m| m.payload.len()).sum();
        let mut payload_offset = 0usize;
        // Most batches come from one source: write its name once.
        let mut last_source: Option<(&str, Span)> = None;
        for message in batch {
            let meta = message.meta();
            let payload = Span { offset: payload_offset as u32, len: message.payload.len() as u32 };
            payload_offset += message.payload.len();
            let topic = self.push(base, meta.topic.as_bytes());
            let properties_start = (self.properties.len() / PROPERTY_SIZE) as u32;
            for property in &meta.properties {
                let name = self.push(base, property.name.as_bytes());
                let value = self.push(base, property.value.as_bytes());
                self.properties.extend_from_slice(&PropertySpan { name, value }.abi_bytes());
            }
            let content_type = meta.content_type.as_deref().map(|s| self.push(base, s.as_bytes()));
            let correlation_data = meta.correlation_data.as_deref().map(|b| self.push(base, b));
            let response_topic = meta.response_topic.as_deref().map(|s| self.push(base, s.as_bytes()));
            let source = match last_source {
                Some((name, span)) if std::ptr::eq(name, &*meta.source) || name == &*meta.source => span,
                _ => {
                    let span = self.push(base, meta.source.as_bytes());
                    last_source = Some((&meta.source, span));
                    span
                }
            };
            let header = MessageHeader {
                payload,
                topic,
                properties_start,
                properties_len: meta.properties.len() as u32,
                content_type,
                correlation_data,
                response_topic,
                expiry_secs: meta.expiry_secs,
                qos: meta.qos.into(),
                retain: meta.retain,
                ingest_time_ms: meta.ingest_time_ms,
                source,
            };
            self.messages.extend_from_slice(&header.abi_bytes());
        }
        BatchRef {
            data: BatchData { messages: batch, payload_bytes: base, metadata: &self.metadata },
            messages: Records { bytes: &self.messages, count: batch.len(), _record: std::marker::PhantomData },
            properties: Records { bytes: &self.properties, count: self.properties.len() / PROPERTY_SIZE, _record: std::marker::PhantomData },
        }
    }
}

mod bulk;
mod verdicts;

use bulk::PROPERTY_SIZE;

pub use verdicts::Verdicts;

#[derive(ComponentType, Lift, Clone, Debug)]
#[component(record)]
pub struct Property {
    pub name: String,
    pub value: String,
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
