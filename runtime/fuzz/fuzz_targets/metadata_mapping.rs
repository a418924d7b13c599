//! Metadata read from what other systems send: Kafka/AMQP headers (connectors/src/headers.rs)
//! and IoT Hub's cloud-to-device property bags (connectors/src/iothub/protocol.rs), from
//! arbitrary bytes. Nothing may panic, and each mapping is stable: what was read, written
//! back and read again is what was read.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir_connectors::headers::{self, Fields};
use weir_connectors::iothub::{parse_property_bag, property_bag};
use weir_core::{Ack, Message, Metadata, Property};

fuzz_target!(|data: &[u8]| {
    // Headers: NUL separates name from value, a newline one header from the next.
    let mut read = Metadata::new("fuzz".into(), "");
    for header in data.split(|b| *b == b'\n') {
        let (name, value) = header.split_at(header.iter().position(|b| *b == 0).unwrap_or(header.len()));
        headers::apply(&mut read, &String::from_utf8_lossy(name), value.get(1..).unwrap_or_default());
    }
    let mut again = Metadata::new("fuzz".into(), "");
    for (name, value) in headers::to_headers(&read, Fields::All) {
        headers::apply(&mut again, name, value);
    }
    assert_eq!(
        (&again.topic, &again.properties, &again.content_type, &again.correlation_data, &again.response_topic),
        (&read.topic, &read.properties, &read.content_type, &read.correlation_data, &read.response_topic)
    );

    // A cloud-to-device topic's property bag.
    let topic = format!("devices/d/messages/devicebound/{}", String::from_utf8_lossy(data));
    let pairs = parse_property_bag(&topic);
    let mut meta = Metadata::new("fuzz".into(), "t");
    meta.properties = pairs.iter().map(|(name, value)| Property::new(name.clone(), value.clone())).collect();
    let message = Message::new(Bytes::new(), meta, Ack::none());
    let written = format!("devices/d/messages/devicebound/{}", property_bag(&message));
    assert_eq!(parse_property_bag(&written), pairs, "{topic} → {written}");
});
