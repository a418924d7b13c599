use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::{Error, Packet, Publish};

/// MQTT v4 codec
#[derive(Debug, Clone)]
pub struct Codec {
    /// Maximum packet size allowed by client
    pub max_incoming_size: usize,
    /// Maximum packet size allowed by broker
    pub max_outgoing_size: usize,
    /// weir (change 6): a PUBLISH over `max_incoming_size` whose payload is being read and
    /// dropped, and how many of its bytes are still to come.
    pub dropping: Option<(Publish, usize)>,
}

impl Decoder for Codec {
    type Item = Packet;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        if let Some((_, left)) = &mut self.dropping {
            let now = (*left).min(src.len());
            src.advance(now);
            *left -= now;
            if *left > 0 {
                return Ok(None);
            }
            return Ok(self.dropping.take().map(|(publish, _)| Packet::Publish(publish)));
        }
        match Packet::read(src, self.max_incoming_size) {
            Ok(packet) => Ok(Some(packet)),
            Err(Error::InsufficientBytes(b)) => {
                // Get more packets to construct the incomplete packet
                src.reserve(b);
                Ok(None)
            }
            // weir (change 6): MQTT 3.1.1 cannot tell the broker a maximum packet size, so a
            // PUBLISH over it is no error of the broker's. Refusing it (upstream's error)
            // dropped the connection and the broker sent it again on the next: a reconnect
            // loop. Reading it whole took its size in memory. Its payload is read and
            // dropped as it arrives instead, and the publish is returned with an empty
            // payload and `dropped_payload` set, for the user to refuse (and acknowledge).
            Err(Error::PayloadSizeLimitExceeded(size)) => match Publish::read_head(src) {
                Ok(Some((publish, head))) => {
                    src.advance(head);
                    let left = publish.dropped_payload;
                    self.dropping = Some((publish, left));
                    self.decode(src)
                }
                Ok(None) => Ok(None),
                Err(Error::NotPublish) => Err(Error::PayloadSizeLimitExceeded(size)),
                Err(err) => Err(err),
            },
            Err(e) => Err(e),
        }
    }
}

impl Encoder<Packet> for Codec {
    type Error = Error;

    fn encode(&mut self, item: Packet, dst: &mut BytesMut) -> Result<(), Self::Error> {
        item.write(dst, self.max_outgoing_size)?;

        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use tokio_util::codec::Encoder;

    use super::Codec;
    use crate::{mqttbytes::Error, Packet, Publish, QoS};

    #[test]
    fn outgoing_max_packet_size_check() {
        let mut buf = BytesMut::new();
        let mut codec = Codec {
            max_incoming_size: 100,
            max_outgoing_size: 200,
            dropping: None,
        };

        let mut small_publish = Publish::new("hello/world", QoS::AtLeastOnce, vec![1; 100]);
        small_publish.pkid = 1;
        codec
            .encode(Packet::Publish(small_publish), &mut buf)
            .unwrap();

        let large_publish = Publish::new("hello/world", QoS::AtLeastOnce, vec![1; 265]);
        match codec.encode(Packet::Publish(large_publish), &mut buf) {
            Err(Error::OutgoingPacketTooLarge {
                pkt_size: 281,
                max: 200,
            }) => {}
            _ => unreachable!(),
        }
    }

    /// weir (change 6): an incoming PUBLISH over the limit, arriving in pieces, comes out with
    /// its head and an empty payload, and the packet after it is read as usual.
    #[test]
    fn an_oversized_publish_is_returned_without_its_payload() {
        use tokio_util::codec::Decoder;
        let mut wire = BytesMut::new();
        let mut big = Publish::new("plant/line-1", QoS::AtLeastOnce, vec![7; 5000]);
        big.pkid = 9;
        let mut small = Publish::new("plant/line-2", QoS::AtLeastOnce, vec![1; 10]);
        small.pkid = 10;
        let mut writer = Codec { max_incoming_size: 100_000, max_outgoing_size: 100_000, dropping: None };
        writer.encode(Packet::Publish(big), &mut wire).unwrap();
        writer.encode(Packet::Publish(small.clone()), &mut wire).unwrap();

        let mut reader = Codec { max_incoming_size: 100, max_outgoing_size: 100, dropping: None };
        let mut buffer = BytesMut::new();
        let mut packets = Vec::new();
        for piece in wire.chunks(7) {
            buffer.extend_from_slice(piece);
            while let Some(packet) = reader.decode(&mut buffer).unwrap() {
                packets.push(packet);
            }
            assert!(buffer.len() <= 100 + 7, "the dropped payload was buffered: {} bytes", buffer.len());
        }
        match &packets[..] {
            [Packet::Publish(dropped), Packet::Publish(kept)] => {
                assert_eq!((dropped.topic.as_str(), dropped.pkid, dropped.payload.len(), dropped.dropped_payload), ("plant/line-1", 9, 0, 5000));
                assert_eq!(kept, &small);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_oversized_packets_are_still_refused() {
        use tokio_util::codec::Decoder;
        let mut wire = BytesMut::new();
        let mut writer = Codec { max_incoming_size: 100_000, max_outgoing_size: 100_000, dropping: None };
        let topics: Vec<String> = (0..50).map(|n| format!("plant/line-{n}")).collect();
        let subscribe = crate::Subscribe::new_many(topics.iter().map(|t| crate::SubscribeFilter::new(t.clone(), QoS::AtLeastOnce)));
        writer.encode(Packet::Subscribe(subscribe), &mut wire).unwrap();
        let mut reader = Codec { max_incoming_size: 100, max_outgoing_size: 100, dropping: None };
        assert!(matches!(reader.decode(&mut wire), Err(Error::PayloadSizeLimitExceeded(_))));
    }
}
