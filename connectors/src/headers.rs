//! Message metadata as name/value headers, for formats that have headers but not MQTT's
//! fields (Kafka records; AMQP messages for what AMQP's own properties lack).
//!
//! The mapping is symmetric: what [`to_headers`] writes, [`apply`] reads back, so a
//! message's metadata survives weir → broker → weir. Every property becomes a header of
//! its name; MQTT fields use the reserved names below.

use bytes::Bytes;
use weir_core::{Metadata, Property};

/// The MQTT topic the message was published on.
pub const TOPIC: &str = "mqtt-topic";
pub const CONTENT_TYPE: &str = "content-type";
pub const CORRELATION_DATA: &str = "correlation-data";
pub const RESPONSE_TOPIC: &str = "response-topic";

/// Which MQTT fields to write as headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fields {
    /// Topic, content type, correlation data and response topic (Kafka has none of them).
    All,
    /// The topic only (AMQP carries the others in its own properties).
    TopicOnly,
}

/// Properties first, in order, then the MQTT fields that are set.
pub fn to_headers(meta: &Metadata, fields: Fields) -> Vec<(&str, &[u8])> {
    let mut headers: Vec<(&str, &[u8])> = meta.properties.iter().map(|p| (p.name.as_str(), p.value.as_bytes())).collect();
    if !meta.topic.is_empty() {
        headers.push((TOPIC, meta.topic.as_bytes()));
    }
    if fields == Fields::All {
        if let Some(content_type) = &meta.content_type {
            headers.push((CONTENT_TYPE, content_type.as_bytes()));
        }
        if let Some(correlation) = &meta.correlation_data {
            headers.push((CORRELATION_DATA, &correlation[..]));
        }
        if let Some(response) = &meta.response_topic {
            headers.push((RESPONSE_TOPIC, response.as_bytes()));
        }
    }
    headers
}

/// Read one header back into the metadata: a reserved name sets its field, any other
/// becomes a property (a value that is not UTF-8 is kept with replacement characters).
pub fn apply(meta: &mut Metadata, name: &str, value: &[u8]) {
    let text = || String::from_utf8_lossy(value).into_owned();
    match name {
        TOPIC => meta.topic = text(),
        CONTENT_TYPE => meta.content_type = Some(text()),
        CORRELATION_DATA => meta.correlation_data = Some(Bytes::copy_from_slice(value)),
        RESPONSE_TOPIC => meta.response_topic = Some(text()),
        _ => meta.properties.push(Property::new(name, text())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_survives_a_round_trip() {
        let mut meta = Metadata::new("in".into(), "plant/m1");
        meta.properties = vec![Property::new("machine", "m1"), Property::new("unit", "°C")];
        meta.content_type = Some("application/json".into());
        meta.correlation_data = Some(Bytes::from_static(&[0, 159, 1]));
        meta.response_topic = Some("replies/m1".into());
        let mut back = Metadata::new("out".into(), "");
        for (name, value) in to_headers(&meta, Fields::All) {
            apply(&mut back, name, value);
        }
        assert_eq!((back.topic.as_str(), &back.properties, &back.content_type), ("plant/m1", &meta.properties, &meta.content_type));
        assert_eq!((&back.correlation_data, &back.response_topic), (&meta.correlation_data, &meta.response_topic));
        let names: Vec<&str> = to_headers(&meta, Fields::TopicOnly).into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["machine", "unit", TOPIC]);
    }
}
