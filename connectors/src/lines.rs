//! Messages as lines of text, the way the `file` and `blob` sinks write them.

use schemars::JsonSchema;
use serde::Deserialize;
use weir_core::Message;

/// `jsonl`: one JSON object per message, its payload and metadata (the payload embedded as
/// JSON when it is JSON, else as `payload_text` or `payload_base64`). `raw`: the payloads,
/// one per line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LineFormat {
    #[default]
    Jsonl,
    Raw,
}

/// Append `batch` to `out`, one line per message.
pub fn write_lines(out: &mut Vec<u8>, batch: &[Message], format: LineFormat) -> serde_json::Result<()> {
    out.reserve(batch.iter().map(|m| m.payload.len() + 200).sum());
    for message in batch {
        match format {
            LineFormat::Jsonl => write_json_line(out, message)?,
            LineFormat::Raw => out.extend_from_slice(&message.payload),
        }
        out.push(b'\n');
    }
    Ok(())
}

/// [`Message::to_json_line`], written straight out: the metadata serialized as it is, and a
/// JSON payload on one line copied in after validation instead of parsed into a tree and
/// written again (most of the cost of a batch otherwise).
fn write_json_line(out: &mut Vec<u8>, message: &Message) -> serde_json::Result<()> {
    let payload = &message.payload[..];
    let embeddable = !payload.contains(&b'\n') && !payload.contains(&b'\r') && serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok();
    if !embeddable {
        return serde_json::to_writer(&mut *out, &message.to_json_line());
    }
    let start = out.len();
    serde_json::to_writer(&mut *out, message.meta())?;
    if out.last() == Some(&b'}') && out.len() > start + 2 {
        out.pop();
        out.extend_from_slice(b",\"payload\":");
    } else {
        out.truncate(start);
        out.extend_from_slice(b"{\"payload\":");
    }
    out.extend_from_slice(payload.trim_ascii());
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::{Ack, Metadata, Property};

    #[test]
    fn json_lines_say_what_to_json_line_says() {
        let mut meta = Metadata::new("local".into(), "plant/m1");
        meta.properties.push(Property::new("machine", "m1"));
        meta.correlation_data = Some(bytes::Bytes::from_static(&[0, 1, 2]));
        let payloads: [&[u8]; 6] =
            [b"{\"t\": 71.5, \"ok\": [true, null]}", b" 42 ", b"{\n  \"pretty\": 1\n}", b"not json", b"\xff\xfe", b"{\"unterminated\": "];
        for payload in payloads {
            let message = Message::new(payload.to_vec(), meta.clone(), Ack::none());
            let mut out = Vec::new();
            write_lines(&mut out, std::slice::from_ref(&message), LineFormat::Jsonl).expect("writes");
            assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1, "one line: {}", String::from_utf8_lossy(&out));
            let line: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
            assert_eq!(line, message.to_json_line(), "{}", String::from_utf8_lossy(payload));
        }
    }
}
