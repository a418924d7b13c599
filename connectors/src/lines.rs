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
            LineFormat::Jsonl => serde_json::to_writer(&mut *out, &message.to_json_line())?,
            LineFormat::Raw => out.extend_from_slice(&message.payload),
        }
        out.push(b'\n');
    }
    Ok(())
}
