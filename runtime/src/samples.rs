//! Sample messages from a JSON Lines file, for `weir filter test`.
//!
//! Each line is one message. A line that is a JSON object with `payload`, `payload_text`
//! or `payload_base64` is an envelope, the same shape the file sink writes (so its output
//! can be fed back in): `payload` (any JSON, sent as its text), `topic`, `properties`
//! (`{"name": "value"}` or `[{"name": …, "value": …}]`), `content_type`, `qos`, `retain`.
//! Any other line is the payload itself.

use std::path::Path;

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::Value;
use weir_core::{Ack, Message, Metadata, Property, QoS};

/// Read every message of a samples file.
pub fn read(path: &Path) -> anyhow::Result<Vec<Message>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading samples from {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| parse_line(line).with_context(|| format!("{}:{}", path.display(), i + 1)))
        .collect()
}

/// One line into a message.
pub fn parse_line(line: &str) -> anyhow::Result<Message> {
    let source: std::sync::Arc<str> = "samples".into();
    let envelope = match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(fields)) if ["payload", "payload_text", "payload_base64"].iter().any(|k| fields.contains_key(*k)) => fields,
        _ => return Ok(Message::new(Bytes::copy_from_slice(line.as_bytes()), Metadata::new(source, ""), Ack::none())),
    };
    let payload = match (envelope.get("payload"), envelope.get("payload_text"), envelope.get("payload_base64")) {
        (Some(json), None, None) => Bytes::from(json.to_string()),
        (None, Some(Value::String(text)), None) => Bytes::from(text.clone()),
        (None, None, Some(Value::String(b64))) => Bytes::from(decode_base64(b64)?),
        _ => bail!("give exactly one of payload (JSON), payload_text (string) or payload_base64 (string)"),
    };
    let mut meta = Metadata::new(source, envelope.get("topic").and_then(Value::as_str).unwrap_or(""));
    meta.content_type = envelope.get("content_type").and_then(Value::as_str).map(str::to_owned);
    meta.retain = envelope.get("retain").and_then(Value::as_bool).unwrap_or(false);
    if let Some(qos) = envelope.get("qos").and_then(Value::as_u64) {
        meta.qos = QoS::try_from(qos as u8).map_err(anyhow::Error::msg)?;
    }
    meta.properties = match envelope.get("properties") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(map)) => map.iter().map(|(k, v)| Property::new(k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))).collect(),
        Some(Value::Array(list)) => serde_json::from_value(Value::Array(list.clone())).context("properties: a list of {\"name\": …, \"value\": …}")?,
        Some(_) => bail!("properties: an object {{\"name\": \"value\"}} or a list of {{\"name\": …, \"value\": …}}"),
    };
    Ok(Message::new(payload, meta, Ack::none()))
}

fn decode_base64(text: &str) -> anyhow::Result<Vec<u8>> {
    let value = |c: u8| -> anyhow::Result<u32> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => bail!("payload_base64 is not base64"),
        } as u32)
    };
    let clean: Vec<u8> = text.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_and_plain_lines() {
        let msg = parse_line(r#"{"payload": {"t": 1}, "topic": "a/b", "properties": {"k": "v"}}"#).unwrap();
        assert_eq!(&msg.payload[..], br#"{"t":1}"#);
        assert_eq!(msg.meta().topic, "a/b");
        assert_eq!(msg.meta().property("k"), Some("v"));
        let plain = parse_line(r#"{"t": 2}"#).unwrap();
        assert_eq!(&plain.payload[..], br#"{"t": 2}"#);
        let binary = parse_line(r#"{"payload_base64": "/wAB"}"#).unwrap();
        assert_eq!(&binary.payload[..], &[0xff, 0, 1]);
    }

    #[test]
    fn file_sink_lines_round_trip() {
        let mut meta = Metadata::new("s".into(), "x/y");
        meta.properties.push(Property::new("a", "1"));
        let original = Message::new(&b"plain text"[..], meta, Ack::none());
        let back = parse_line(&original.to_json_line().to_string()).unwrap();
        assert_eq!(back.payload, original.payload);
        assert_eq!(back.meta().topic, "x/y");
        assert_eq!(back.meta().property("a"), Some("1"));
    }
}
