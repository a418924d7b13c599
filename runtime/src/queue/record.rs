//! One queued message on disk: a checksummed frame around a versioned record.
//!
//! ```text
//! frame:  body_len u32 LE | crc32 u32 LE (of body) | body
//! body:   version u8 (=1) | enqueued_ms u64 | expires_ms u64 (0 = never) | message
//! message: topic str | properties u32 count × (name str, value str) | content_type opt str
//!          | correlation_data opt bytes | response_topic opt str | expiry_secs opt u32
//!          | qos u8 | retain u8 | source_time_ms opt u64 | ingest_time_ms u64 | source str
//!          | origin opt (module str, output str) | payload bytes
//! str / bytes: len u32 LE | bytes;  opt: 0 | 1 value
//! ```
//!
//! The format is explicit rather than a serde encoding so that a field added to the message
//! model cannot silently change what is on disk: a new field means version 2 here.

use std::sync::Arc;

use bytes::Bytes;
use weir_core::message::{Metadata, ModuleOutput, Property, QoS};
use weir_core::{Ack, Message};

/// Bytes before the body: length and checksum.
pub const FRAME_HEADER: usize = 8;
const VERSION: u8 = 1;

/// A message read back from a queue.
#[derive(Debug, Clone)]
pub struct Record {
    pub enqueued_ms: u64,
    /// 0: never expires.
    pub expires_ms: u64,
    pub message: Message,
}

impl Record {
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_ms != 0 && now_ms >= self.expires_ms
    }
}

/// Append the frame of `message` to `out`; returns the frame's length.
pub fn encode(out: &mut Vec<u8>, message: &Message, enqueued_ms: u64, expires_ms: u64) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    out.push(VERSION);
    out.extend_from_slice(&enqueued_ms.to_le_bytes());
    out.extend_from_slice(&expires_ms.to_le_bytes());
    let meta = message.meta();
    put_str(out, &meta.topic);
    out.extend_from_slice(&(meta.properties.len() as u32).to_le_bytes());
    for property in &meta.properties {
        put_str(out, &property.name);
        put_str(out, &property.value);
    }
    put_opt(out, meta.content_type.as_deref(), put_str);
    put_opt(out, meta.correlation_data.as_deref(), put_bytes);
    put_opt(out, meta.response_topic.as_deref(), put_str);
    put_opt(out, meta.expiry_secs, |out, v| out.extend_from_slice(&v.to_le_bytes()));
    out.push(u8::from(meta.qos));
    out.push(u8::from(meta.retain));
    put_opt(out, meta.source_time_ms, |out, v| out.extend_from_slice(&v.to_le_bytes()));
    out.extend_from_slice(&meta.ingest_time_ms.to_le_bytes());
    put_str(out, &meta.source);
    put_opt(out, meta.origin.as_ref(), |out, origin| {
        put_str(out, &origin.module);
        put_str(out, &origin.output);
    });
    put_bytes(out, &message.payload);

    let body_len = out.len() - start - FRAME_HEADER;
    let crc = crc32fast::hash(&out[start + FRAME_HEADER..]);
    out[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// What is at the start of `bytes`.
#[derive(Debug)]
pub enum Frame {
    /// A whole, valid frame of this many bytes.
    Valid(usize),
    /// Fewer bytes than the frame says it has: a write cut short (or the file ends here).
    Truncated,
    /// Checksum or structure wrong.
    Corrupt(&'static str),
}

/// The largest record body ever written (the largest segment holds one of 64 MiB). Reading
/// judges plausibility by this, never by the queue's current `max_size`: records written
/// under a larger cap stay readable when the cap is lowered.
pub const MAX_BODY: usize = 64 << 20;
/// Enqueue times a record can have: 2020-01-01 to 2100-01-01, ms since the epoch.
const PLAUSIBLE_MS: std::ops::Range<u64> = 1_577_836_800_000..4_102_444_800_000;

/// Check the frame at the start of `bytes` without decoding the message. The checksum is
/// computed last, after checks that cost nothing (length, version, a plausible enqueue
/// time): scanning past damage tries every byte offset, and a checksum over whatever length
/// random bytes claim made megabytes of garbage take hours.
pub fn check(bytes: &[u8]) -> Frame {
    if bytes.len() < FRAME_HEADER {
        return Frame::Truncated;
    }
    let body_len = u32::from_le_bytes(bytes[0..4].try_into().unwrap_or_default()) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().unwrap_or_default());
    // The smallest body: version, enqueue time and expiry.
    if !(17..=MAX_BODY).contains(&body_len) {
        return Frame::Corrupt("implausible record length");
    }
    if bytes.len() > FRAME_HEADER && bytes[FRAME_HEADER] != VERSION {
        return Frame::Corrupt("unknown record version");
    }
    if let Some(enqueued) = bytes.get(FRAME_HEADER + 1..FRAME_HEADER + 9)
        && !PLAUSIBLE_MS.contains(&u64::from_le_bytes(enqueued.try_into().unwrap_or_default()))
    {
        return Frame::Corrupt("implausible enqueue time");
    }
    let Some(body) = bytes.get(FRAME_HEADER..FRAME_HEADER + body_len) else {
        return Frame::Truncated;
    };
    if crc32fast::hash(body) != crc {
        return Frame::Corrupt("checksum mismatch");
    }
    Frame::Valid(FRAME_HEADER + body_len)
}

/// Decode a frame that [`check`] found valid. `source_buffer` shares the payload bytes.
pub fn decode(frame: &Bytes) -> Result<Record, &'static str> {
    let mut reader = Reader { bytes: frame, at: FRAME_HEADER };
    if reader.u8()? != VERSION {
        return Err("unknown record version");
    }
    let enqueued_ms = reader.u64()?;
    let expires_ms = reader.u64()?;
    let topic = reader.string()?;
    let count = reader.u32()? as usize;
    let mut properties = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        properties.push(Property { name: reader.string()?, value: reader.string()? });
    }
    let content_type = reader.opt(Reader::string)?;
    let correlation_data = reader.opt(Reader::bytes)?;
    let response_topic = reader.opt(Reader::string)?;
    let expiry_secs = reader.opt(Reader::u32)?;
    let qos = QoS::try_from(reader.u8()?).map_err(|_| "bad QoS")?;
    let retain = reader.u8()? != 0;
    let source_time_ms = reader.opt(Reader::u64)?;
    let ingest_time_ms = reader.u64()?;
    let source: Arc<str> = reader.string()?.into();
    let origin = reader.opt(|r| Ok(ModuleOutput { module: r.string()?.into(), output: r.string()?.into() }))?;
    let payload = reader.bytes()?;
    let meta = Metadata {
        topic,
        properties,
        content_type,
        correlation_data,
        response_topic,
        expiry_secs,
        qos,
        retain,
        source_time_ms,
        ingest_time_ms,
        source,
        origin,
    };
    Ok(Record { enqueued_ms, expires_ms, message: Message::new(payload, meta, Ack::none()) })
}

/// The enqueue time of a valid frame, without decoding the rest.
pub fn enqueued_ms(frame: &[u8]) -> u64 {
    frame.get(FRAME_HEADER + 1..FRAME_HEADER + 9).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).unwrap_or(0)
}

fn put_str(out: &mut Vec<u8>, value: &str) {
    put_bytes(out, value.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

fn put_opt<T>(out: &mut Vec<u8>, value: Option<T>, put: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            put(out, value);
        }
    }
}

struct Reader<'a> {
    bytes: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, len: usize) -> Result<std::ops::Range<usize>, &'static str> {
        let end = self.at.checked_add(len).filter(|end| *end <= self.bytes.len()).ok_or("record ends early")?;
        let range = self.at..end;
        self.at = end;
        Ok(range)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        let range = self.take(1)?;
        Ok(self.bytes[range.start])
    }
    fn u32(&mut self) -> Result<u32, &'static str> {
        let range = self.take(4)?;
        Ok(u32::from_le_bytes(self.bytes[range].try_into().map_err(|_| "u32")?))
    }
    fn u64(&mut self) -> Result<u64, &'static str> {
        let range = self.take(8)?;
        Ok(u64::from_le_bytes(self.bytes[range].try_into().map_err(|_| "u64")?))
    }
    fn bytes(&mut self) -> Result<Bytes, &'static str> {
        let len = self.u32()? as usize;
        let range = self.take(len)?;
        Ok(self.bytes.slice(range))
    }
    fn string(&mut self) -> Result<String, &'static str> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "text is not UTF-8")
    }
    fn opt<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T, &'static str>) -> Result<Option<T>, &'static str> {
        match self.u8()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            _ => Err("bad option tag"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        let mut meta = Metadata::new("local".into(), "plant/m1/telemetry");
        meta.properties.push(Property::new("unit", "°C"));
        meta.content_type = Some("application/json".into());
        meta.correlation_data = Some(Bytes::from_static(&[0, 1, 255]));
        meta.response_topic = Some("reply/here".into());
        meta.expiry_secs = Some(30);
        meta.qos = QoS::AtLeastOnce;
        meta.retain = true;
        meta.source_time_ms = Some(17);
        meta.origin = Some(ModuleOutput { module: "m".into(), output: "alerts".into() });
        Message::new(Bytes::from_static(b"{\"t\":21.5}"), meta, Ack::none())
    }

    #[test]
    fn round_trips_every_field() {
        let message = sample();
        let mut buffer = Vec::new();
        let len = encode(&mut buffer, &message, 1_796_000_000_000, 2000);
        assert_eq!(len, buffer.len());
        assert!(matches!(check(&buffer), Frame::Valid(n) if n == len));
        assert_eq!(enqueued_ms(&buffer), 1_796_000_000_000);
        let record = decode(&Bytes::from(buffer)).expect("decodes");
        assert_eq!(record.enqueued_ms, 1_796_000_000_000);
        assert_eq!(record.expires_ms, 2000);
        assert_eq!(record.message.payload, message.payload);
        assert_eq!(record.message.meta(), message.meta());
    }

    #[test]
    fn a_flipped_bit_or_a_cut_is_detected() {
        let mut buffer = Vec::new();
        encode(&mut buffer, &sample(), 1_796_000_000_000, 0);
        for cut in 0..buffer.len() {
            assert!(matches!(check(&buffer[..cut]), Frame::Truncated | Frame::Corrupt(_)), "cut at {cut} accepted");
        }
        for byte in FRAME_HEADER..buffer.len() {
            let mut damaged = buffer.clone();
            damaged[byte] ^= 0x10;
            assert!(matches!(check(&damaged), Frame::Corrupt(_)), "flip at {byte} accepted");
        }
    }
}
