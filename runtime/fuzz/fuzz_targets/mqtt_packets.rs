//! The MQTT packet decoders of weir's copy of rumqttc (connectors/vendor/rumqttc) on arbitrary
//! bytes from a broker, fed in pieces as a network delivers them: an error, never a panic, and
//! never more buffered than a packet within the limit (an oversized PUBLISH has its payload
//! dropped as it arrives, WEIR-PATCH.md change 6). A PUBLISH that decodes writes back to
//! bytes that decode to the same PUBLISH.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rumqttc::{Codec, Packet};
use tokio_util::codec::{Decoder, Encoder};

/// The largest packet the fuzzed reader takes: small, so the oversized path is reached often.
const LIMIT: usize = 64;

fuzz_target!(|data: &[u8]| {
    // The first byte says how the bytes are cut into network reads.
    let Some((&cut, wire)) = data.split_first() else { return };
    let piece = usize::from(cut % 16) + 1;
    let mut codec = Codec { max_incoming_size: LIMIT, max_outgoing_size: 1 << 20, dropping: None };
    let mut buffer = BytesMut::new();
    'reads: for read in wire.chunks(piece) {
        buffer.extend_from_slice(read);
        loop {
            match codec.decode(&mut buffer) {
                Ok(Some(packet)) => round_trip(packet),
                Ok(None) => break,
                Err(_) => break 'reads,
            }
        }
        assert!(buffer.len() <= most_buffered(&buffer) + piece, "{} bytes buffered", buffer.len());
    }

    let mut whole = BytesMut::from(wire);
    while let Ok(packet) = rumqttc::v5::mqttbytes::v5::Packet::read(&mut whole, Some(1 << 20)) {
        let _ = packet.size();
    }
});

/// What the codec may hold before it returns a packet or drops bytes: a packet within the
/// limit (its fixed header at most 5 bytes), or the head (topic and packet id) of a PUBLISH
/// over it, whose payload it drops as it arrives.
fn most_buffered(buffer: &[u8]) -> usize {
    let within = LIMIT + 5;
    if buffer.first().is_none_or(|byte| byte >> 4 != 3) {
        return within;
    }
    // The remaining length's bytes, then the topic's length.
    let header = 1 + buffer[1..].iter().take(4).position(|byte| byte & 0x80 == 0).map_or(4, |at| at + 1);
    match buffer.get(header..header + 2) {
        Some(length) => within.max(header + 2 + usize::from(u16::from_be_bytes([length[0], length[1]])) + 2),
        None => within,
    }
}

fn round_trip(packet: Packet) {
    let Packet::Publish(publish) = packet else { return };
    if publish.dropped_payload > 0 {
        assert!(publish.payload.is_empty());
        return;
    }
    let mut codec = Codec { max_incoming_size: 1 << 20, max_outgoing_size: 1 << 20, dropping: None };
    let mut bytes = BytesMut::new();
    codec.encode(Packet::Publish(publish.clone()), &mut bytes).expect("a decoded publish encodes");
    match codec.decode(&mut bytes) {
        Ok(Some(Packet::Publish(back))) => assert_eq!(back, publish),
        other => panic!("{publish:?} came back as {other:?}"),
    }
}
