//! The message types a module sees and produces.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::weir::module::types as wit;
use crate::raw::{RawBatch, RawHeader, RawProperty};
pub use wit::{Property, Qos as QoS};

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

/// One incoming message, borrowed from the batch it came in: nothing is copied or decoded
/// until a field is asked for, so a filter pays only for what it reads.
#[derive(Clone, Copy)]
pub struct Message<'a> {
    repr: Repr<'a>,
}

#[derive(Clone, Copy)]
enum Repr<'a> {
    Batch { data: &'a [u8], header: Header<'a>, properties: Properties<'a> },
    Test { payload: &'a [u8], topic: &'a str, properties: &'a [(&'a str, &'a str)] },
}

/// A message's header: lifted by wit-bindgen (map, flat-map, aggregate) or read in place
/// where the host laid it out (filters, see [`raw`](crate::raw)).
#[derive(Clone, Copy)]
enum Header<'a> {
    Lifted(&'a wit::Message),
    Raw(&'a RawHeader),
}

#[derive(Clone, Copy)]
enum Properties<'a> {
    Lifted(&'a [wit::PropertySpan]),
    Raw(&'a [RawProperty]),
}

impl<'a> Properties<'a> {
    fn spans(self) -> impl Iterator<Item = (wit::Span, wit::Span)> + 'a {
        let (lifted, raw) = match self {
            Properties::Lifted(list) => (list, &[][..]),
            Properties::Raw(list) => (&[][..], list),
        };
        lifted.iter().map(|p| (p.name, p.value)).chain(raw.iter().map(|p| (p.name(), p.value())))
    }
}

impl Header<'_> {
    #[inline]
    fn payload(self) -> wit::Span {
        match self {
            Header::Lifted(h) => h.payload,
            Header::Raw(h) => h.payload(),
        }
    }
    #[inline]
    fn topic(self) -> wit::Span {
        match self {
            Header::Lifted(h) => h.topic,
            Header::Raw(h) => h.topic(),
        }
    }
    #[inline]
    fn content_type(self) -> Option<wit::Span> {
        match self {
            Header::Lifted(h) => h.content_type,
            Header::Raw(h) => h.content_type(),
        }
    }
    #[inline]
    fn correlation_data(self) -> Option<wit::Span> {
        match self {
            Header::Lifted(h) => h.correlation_data,
            Header::Raw(h) => h.correlation_data(),
        }
    }
    #[inline]
    fn response_topic(self) -> Option<wit::Span> {
        match self {
            Header::Lifted(h) => h.response_topic,
            Header::Raw(h) => h.response_topic(),
        }
    }
    #[inline]
    fn expiry_secs(self) -> Option<u32> {
        match self {
            Header::Lifted(h) => h.expiry_secs,
            Header::Raw(h) => h.expiry_secs(),
        }
    }
    #[inline]
    fn qos(self) -> QoS {
        match self {
            Header::Lifted(h) => h.qos,
            Header::Raw(h) => h.qos(),
        }
    }
    #[inline]
    fn retain(self) -> bool {
        match self {
            Header::Lifted(h) => h.retain,
            Header::Raw(h) => h.retain(),
        }
    }
    #[inline]
    fn ingest_time_ms(self) -> u64 {
        match self {
            Header::Lifted(h) => h.ingest_time_ms,
            Header::Raw(h) => h.ingest_time_ms(),
        }
    }
    #[inline]
    fn source(self) -> wit::Span {
        match self {
            Header::Lifted(h) => h.source,
            Header::Raw(h) => h.source(),
        }
    }
}

fn bytes(data: &[u8], span: wit::Span) -> &[u8] {
    let start = span.offset as usize;
    data.get(start..start.saturating_add(span.len as usize)).unwrap_or_default()
}

fn text(data: &[u8], span: wit::Span) -> &str {
    std::str::from_utf8(bytes(data, span)).unwrap_or_default()
}

/// The messages of a batch lifted by wit-bindgen, in order (used by the attribute macros).
pub fn messages(batch: &wit::Batch) -> impl ExactSizeIterator<Item = Message<'_>> {
    let data = batch.data.as_slice();
    batch.messages.iter().map(move |header| {
        let start = header.properties_start as usize;
        let properties = batch.properties.get(start..start.saturating_add(header.properties_len as usize)).unwrap_or_default();
        Message { repr: Repr::Batch { data, header: Header::Lifted(header), properties: Properties::Lifted(properties) } }
    })
}

/// The messages of a batch read in place (used by `#[weir::filter]`), in order.
pub fn raw_messages(batch: &RawBatch) -> impl ExactSizeIterator<Item = Message<'_>> {
    let data = batch.data.as_slice();
    batch.headers.iter().map(move |header| {
        let (start, len) = header.properties();
        let properties = batch.properties.get(start..start.saturating_add(len)).unwrap_or_default();
        Message { repr: Repr::Batch { data, header: Header::Raw(header), properties: Properties::Raw(properties) } }
    })
}

impl<'a> Message<'a> {
    /// A message for unit tests: `payload` on `topic`, QoS 1, no properties.
    pub fn for_test<P: AsRef<[u8]> + ?Sized>(topic: &'a str, payload: &'a P) -> Message<'a> {
        Message { repr: Repr::Test { payload: payload.as_ref(), topic, properties: &[] } }
    }

    /// For unit tests: the same message with these properties.
    pub fn with_properties(self, pairs: &'a [(&'a str, &'a str)]) -> Message<'a> {
        match self.repr {
            Repr::Test { payload, topic, .. } => Message { repr: Repr::Test { payload, topic, properties: pairs } },
            Repr::Batch { .. } => self,
        }
    }

    fn header(&self) -> Option<(&'a [u8], Header<'a>)> {
        match self.repr {
            Repr::Batch { data, header, .. } => Some((data, header)),
            Repr::Test { .. } => None,
        }
    }

    pub fn payload(&self) -> &'a [u8] {
        match self.repr {
            Repr::Batch { data, header, .. } => bytes(data, header.payload()),
            Repr::Test { payload, .. } => payload,
        }
    }

    /// The broker topic it was published to.
    pub fn topic(&self) -> &'a str {
        match self.repr {
            Repr::Batch { data, header, .. } => text(data, header.topic()),
            Repr::Test { topic, .. } => topic,
        }
    }

    /// Topic level `index` (0-based): `factory/m1/telemetry` has `m1` at 1.
    pub fn topic_level(&self, index: usize) -> Option<&'a str> {
        self.topic().split('/').nth(index)
    }

    /// The application properties (MQTT 5 user properties), in order.
    pub fn properties(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let (batch, pairs) = match self.repr {
            Repr::Batch { data, properties, .. } => (Some((data, properties)), None),
            Repr::Test { properties, .. } => (None, Some(properties)),
        };
        let from_batch = batch.into_iter().flat_map(|(data, spans)| spans.spans().map(move |(name, value)| (text(data, name), text(data, value))));
        from_batch.chain(pairs.into_iter().flat_map(|pairs| pairs.iter().copied()))
    }

    /// The first application property named `name`.
    pub fn property(&self, name: &str) -> Option<&'a str> {
        self.properties().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    pub fn content_type(&self) -> Option<&'a str> {
        self.header().and_then(|(data, h)| h.content_type().map(|s| text(data, s)))
    }
    pub fn correlation_data(&self) -> Option<&'a [u8]> {
        self.header().and_then(|(data, h)| h.correlation_data().map(|s| bytes(data, s)))
    }
    pub fn response_topic(&self) -> Option<&'a str> {
        self.header().and_then(|(data, h)| h.response_topic().map(|s| text(data, s)))
    }
    pub fn expiry_secs(&self) -> Option<u32> {
        self.header().and_then(|(_, h)| h.expiry_secs())
    }
    pub fn qos(&self) -> QoS {
        self.header().map(|(_, h)| h.qos()).unwrap_or(QoS::AtLeastOnce)
    }
    pub fn retain(&self) -> bool {
        self.header().is_some_and(|(_, h)| h.retain())
    }
    /// When weir received it, in milliseconds since the Unix epoch.
    pub fn ingest_time_ms(&self) -> u64 {
        self.header().map(|(_, h)| h.ingest_time_ms()).unwrap_or(0)
    }
    /// The pipeline source it came from.
    pub fn source(&self) -> &'a str {
        self.header().map(|(data, h)| text(data, h.source())).unwrap_or("test")
    }

    /// The payload parsed as JSON into `T`. The error says why it is not.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(self.payload()).map_err(|err| Error(format!("payload is not the JSON expected: {err}")))
    }

    /// The number at a dotted path of a JSON payload (`temperature`, `sensors.t1`). The
    /// error says whether the payload is not JSON, the field is missing or not a number.
    /// Only that value is decoded (the SDK's `json_path` module says how).
    pub fn number_at(&self, path: &str) -> Result<f64> {
        match crate::json_path::locate(self.payload(), path) {
            Some(None) => return Err(Error(format!("field `{path}` is missing"))),
            Some(Some(range)) => {
                if let Some(number) = crate::json_path::number(&self.payload()[range]) {
                    return Ok(number);
                }
            }
            // Not a JSON object, or not a number: serde_json's walk words the error.
            None => {}
        }
        let value = crate::json_path::value_at(self.payload(), path)
            .map_err(|err| Error(format!("payload is not the JSON expected: {err}")))?
            .ok_or_else(|| Error(format!("field `{path}` is missing")))?;
        value.as_f64().ok_or_else(|| Error(format!("field `{path}` is not a number: {value}")))
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message").field("topic", &self.topic()).field("payload", &String::from_utf8_lossy(self.payload())).finish_non_exhaustive()
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
    pub fn with_properties<'p>(mut self, properties: impl IntoIterator<Item = (&'p str, &'p str)>) -> Self {
        self.properties = Some(properties.into_iter().map(|(name, value)| Property { name: name.to_owned(), value: value.to_owned() }).collect());
        self
    }

    #[doc(hidden)]
    pub fn into_wit(self) -> wit::OutputMessage {
        wit::OutputMessage { payload: self.payload, output: self.output, topic: self.topic, properties: self.properties, content_type: self.content_type }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_become_slices() {
        let data = b"factory/m1/t{\"a\":1}sitep7".to_vec();
        let span = |offset, len| wit::Span { offset, len };
        let batch = wit::Batch {
            data,
            messages: vec![wit::Message {
                payload: span(12, 7),
                topic: span(0, 12),
                properties_start: 0,
                properties_len: 1,
                content_type: None,
                correlation_data: None,
                response_topic: None,
                expiry_secs: Some(5),
                qos: QoS::ExactlyOnce,
                retain: true,
                ingest_time_ms: 9,
                source: span(0, 0),
            }],
            properties: vec![wit::PropertySpan { name: span(19, 4), value: span(23, 2) }],
        };
        let message = messages(&batch).next().unwrap();
        assert_eq!(message.topic(), "factory/m1/t");
        assert_eq!(message.payload(), b"{\"a\":1}");
        assert_eq!(message.property("site"), Some("p7"));
        assert_eq!(message.topic_level(1), Some("m1"));
        assert_eq!((message.expiry_secs(), message.retain(), message.ingest_time_ms()), (Some(5), true, 9));
    }

    #[test]
    fn test_messages_take_pairs() {
        let message = Message::for_test("a/b", "x").with_properties(&[("k", "v")]);
        assert_eq!(message.property("k"), Some("v"));
        assert_eq!(message.properties().count(), 1);
    }
}
