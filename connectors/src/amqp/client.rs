//! Connecting to an AMQP broker, and a message's metadata as AMQP properties and back.
//!
//! Mapping (also in `docs/connectors.md`): properties → headers (string values); topic →
//! `mqtt-topic` header; content type → `content_type`; correlation data → `correlation_id`
//! (UTF-8, at most 255 bytes; else the `correlation-data` header); response topic →
//! `reply_to`; expiry → `expiration` (the milliseconds left); source time → `timestamp`.

use std::path::Path;

use anyhow::Context as _;
use bytes::Bytes;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use weir_core::{Message, Metadata, QoS};

use super::config::AmqpConnection;
use crate::headers;

/// Connect, naming the broker (never the password) and what to check in the error.
pub async fn connect(config: &AmqpConnection, base: &Path, name: &str) -> anyhow::Result<Connection> {
    let mut uri = config.uri()?;
    if let Some(username) = &config.username {
        uri.authority.userinfo.username.clone_from(username);
    }
    if let Some(password) = &config.password {
        uri.authority.userinfo.password = password.reveal(base)?;
    }
    uri.query.heartbeat = Some(config.heartbeat_secs);
    let mut tls = lapin::tcp::OwnedTLSConfig::default();
    if let Some(ca) = &config.ca {
        let path = base.join(ca);
        tls.cert_chain = Some(std::fs::read_to_string(&path).with_context(|| format!("reading the AMQP CA certificate {}", path.display()))?);
    }
    let properties = ConnectionProperties::default().with_connection_name(format!("weir {name}").into());
    let runtime = lapin::runtime::default_runtime()?;
    Connection::connect_uri_with_config(uri, properties, tls, runtime)
        .await
        .map_err(|err| anyhow::anyhow!("AMQP broker {}: {err}; is it running and reachable, and are the user, password and vhost right?", config.url))
}

fn short(text: &str) -> Option<ShortString> {
    ShortString::try_new(text).ok()
}

/// The message's metadata as AMQP properties.
pub fn to_properties(message: &Message, persistent: bool) -> BasicProperties {
    let meta = message.meta();
    let mut table = FieldTable::default();
    for (name, value) in headers::to_headers(meta, headers::Fields::TopicOnly) {
        if let Some(key) = short(name) {
            table.insert(key, AMQPValue::LongString(value.into()));
        }
    }
    let mut properties = BasicProperties::default()
        .with_delivery_mode(if persistent { 2 } else { 1 })
        .with_timestamp(meta.source_time_ms.unwrap_or(meta.ingest_time_ms) / 1000)
        .with_app_id("weir".into());
    if let Some(content_type) = meta.content_type.as_deref().and_then(short) {
        properties = properties.with_content_type(content_type);
    }
    if let Some(correlation) = &meta.correlation_data {
        match std::str::from_utf8(correlation).ok().and_then(short) {
            Some(id) => properties = properties.with_correlation_id(id),
            None => {
                table.insert(headers::CORRELATION_DATA.into(), AMQPValue::LongString(correlation.to_vec().into()));
            }
        }
    }
    if let Some(reply_to) = meta.response_topic.as_deref().and_then(short) {
        properties = properties.with_reply_to(reply_to);
    }
    if let Some(expiry) = meta.expiry_secs {
        let age = weir_core::message::now_ms().saturating_sub(meta.ingest_time_ms);
        let left = (u64::from(expiry) * 1000).saturating_sub(age).max(1);
        properties = properties.with_expiration(left.to_string().into());
    }
    properties.with_headers(table)
}

/// A header value as bytes: strings as they are, numbers and booleans written out.
fn value_bytes(value: &AMQPValue) -> Vec<u8> {
    match value {
        AMQPValue::LongString(text) => text.as_bytes().to_vec(),
        AMQPValue::ShortString(text) => text.as_str().as_bytes().to_vec(),
        AMQPValue::Boolean(b) => b.to_string().into_bytes(),
        AMQPValue::ShortShortInt(n) => n.to_string().into_bytes(),
        AMQPValue::ShortShortUInt(n) => n.to_string().into_bytes(),
        AMQPValue::ShortInt(n) => n.to_string().into_bytes(),
        AMQPValue::ShortUInt(n) => n.to_string().into_bytes(),
        AMQPValue::LongInt(n) => n.to_string().into_bytes(),
        AMQPValue::LongUInt(n) => n.to_string().into_bytes(),
        AMQPValue::LongLongInt(n) => n.to_string().into_bytes(),
        AMQPValue::Timestamp(n) => n.to_string().into_bytes(),
        AMQPValue::Float(n) => n.to_string().into_bytes(),
        AMQPValue::Double(n) => n.to_string().into_bytes(),
        AMQPValue::ByteArray(bytes) => bytes.as_slice().to_vec(),
        other => format!("{other:?}").into_bytes(),
    }
}

/// A delivery's metadata: the reverse of [`to_properties`]. The topic is the routing key
/// (with `/` for `.` when `topic_dots`) unless an `mqtt-topic` header says otherwise.
pub fn to_metadata(routing_key: &str, properties: &BasicProperties, source: std::sync::Arc<str>, topic_dots: bool) -> Metadata {
    let topic = if topic_dots { routing_key.replace('.', "/") } else { routing_key.to_owned() };
    let mut meta = Metadata::new(source, topic);
    meta.qos = QoS::AtLeastOnce;
    if let Some(table) = properties.headers() {
        for (name, value) in table {
            headers::apply(&mut meta, name.as_str(), &value_bytes(value));
        }
    }
    if let Some(content_type) = properties.content_type() {
        meta.content_type = Some(content_type.to_string());
    }
    if let Some(id) = properties.correlation_id() {
        meta.correlation_data = Some(Bytes::copy_from_slice(id.as_str().as_bytes()));
    }
    if let Some(reply_to) = properties.reply_to() {
        meta.response_topic = Some(reply_to.to_string());
    }
    if let Some(expiration) = properties.expiration().as_ref().and_then(|ms| ms.as_str().parse::<u64>().ok()) {
        meta.expiry_secs = Some(u32::try_from(expiration.div_ceil(1000)).unwrap_or(u32::MAX));
    }
    if let Some(seconds) = properties.timestamp() {
        meta.source_time_ms = Some(seconds.saturating_mul(1000));
    }
    meta
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::{Ack, Property};

    #[test]
    fn metadata_survives_amqp_properties() {
        let mut meta = Metadata::new("in".into(), "plant/m1/telemetry");
        meta.properties = vec![Property::new("machine", "m1")];
        meta.content_type = Some("application/json".into());
        meta.correlation_data = Some(Bytes::from_static(b"req-7"));
        meta.response_topic = Some("replies/m1".into());
        meta.expiry_secs = Some(60);
        let message = Message::new(&b"{}"[..], meta.clone(), Ack::none());
        let properties = to_properties(&message, true);
        assert_eq!(properties.delivery_mode(), &Some(2));
        let back = to_metadata("ignored.by.header", &properties, "out".into(), true);
        assert_eq!(back.topic, "plant/m1/telemetry", "the mqtt-topic header wins over the routing key");
        assert_eq!(back.properties, meta.properties);
        assert_eq!((&back.content_type, &back.correlation_data, &back.response_topic), (&meta.content_type, &meta.correlation_data, &meta.response_topic));
        assert_eq!(back.expiry_secs, Some(60));
        let plain = to_metadata("plant.m2.status", &BasicProperties::default(), "out".into(), true);
        assert_eq!(plain.topic, "plant/m2/status");
    }
}
