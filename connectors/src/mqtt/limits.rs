//! What fits in one MQTT PUBLISH, checked before a message is handed to the client.
//!
//! MQTT writes every string with a two-byte length, and a packet's size is capped by the
//! protocol (256 MiB) and, in MQTT 5, by the broker's CONNACK. rumqttc writes a longer
//! string's length modulo 65,536 (a malformed packet the broker answers by closing the
//! connection), and a publish it cannot write breaks the connection; either way the client
//! sends it again after reconnecting, forever, and nothing behind it gets through. So a
//! message that does not fit is refused here, with the reason, and goes to `$deadletter`.

use weir_core::Metadata;

/// The longest string (or binary property) MQTT can carry.
pub const MAX_STRING: usize = u16::MAX as usize;
/// The largest packet MQTT can express (a one-byte header, a four-byte remaining length of
/// at most 268,435,455), and what weir's client is set to write.
pub const MAX_PACKET: usize = 1 + 4 + 268_435_455;

/// Why a publish to `topic` of `payload_len` bytes with `meta` cannot be sent in one packet of
/// at most `max_packet` bytes, if it cannot. `v5`: the connection carries MQTT 5 properties
/// (MQTT 3.1.1 has none to send).
pub fn unpublishable(topic: &str, payload_len: usize, meta: &Metadata, v5: bool, max_packet: usize) -> Option<String> {
    if topic.is_empty() {
        return Some("the topic is empty".into());
    }
    if topic.len() > MAX_STRING {
        return Some(format!("the topic is {} bytes long; MQTT topics are at most {MAX_STRING} bytes (it begins `{}`)", topic.len(), beginning(topic)));
    }
    if topic.contains(['+', '#', '\0']) {
        return Some(format!("`{}` is not a topic to publish to: it contains a wildcard or NUL", beginning(topic)));
    }
    let properties = if v5 {
        match properties_len(meta) {
            Ok(len) => len,
            Err(reason) => return Some(reason),
        }
    } else {
        0
    };
    // Header (1), remaining length (up to 4), topic (2 + n), packet id (2), properties, payload.
    let packet = 1 + 4 + 2 + topic.len() + 2 + properties + payload_len;
    (packet > max_packet.min(MAX_PACKET)).then(|| {
        format!("the message makes an MQTT packet of {packet} bytes ({payload_len} of payload); the broker takes at most {} bytes", max_packet.min(MAX_PACKET))
    })
}

/// The bytes of a PUBLISH's MQTT 5 properties (with their length), or why one does not fit.
fn properties_len(meta: &Metadata) -> Result<usize, String> {
    let mut len = 0;
    let mut add = |what: &str, bytes: usize| {
        if bytes > MAX_STRING {
            return Err(format!("its {what} is {bytes} bytes long; MQTT carries at most {MAX_STRING}"));
        }
        len += 1 + 2 + bytes;
        Ok(())
    };
    add("content type", meta.content_type.as_ref().map_or(0, String::len))?;
    add("response topic", meta.response_topic.as_ref().map_or(0, String::len))?;
    add("correlation data", meta.correlation_data.as_ref().map_or(0, |data| data.len()))?;
    for property in &meta.properties {
        add(&format!("property name `{}`", beginning(&property.name)), property.name.len())?;
        add(&format!("property `{}`", beginning(&property.name)), property.value.len())?;
    }
    Ok(len + 4 + 5)
}

/// The first characters of a long text, for an error message that must itself stay short.
pub fn beginning(text: &str) -> String {
    const SHOWN: usize = 64;
    match text.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Metadata {
        Metadata::new("test".into(), "t")
    }

    #[test]
    fn a_topic_of_64_kib_or_more_is_refused_with_a_short_reason() {
        let topic = "a/".repeat(35_000);
        let reason = unpublishable(&topic, 10, &meta(), false, MAX_PACKET).expect("refused");
        assert!(reason.contains("70000 bytes long") && reason.contains("at most 65535"), "{reason}");
        assert!(reason.len() < 200, "the reason repeats the topic: {} bytes", reason.len());
        assert_eq!(unpublishable(&"a".repeat(MAX_STRING), 10, &meta(), true, MAX_PACKET), None, "65,535 bytes still fit");
    }

    #[test]
    fn long_properties_are_refused_only_where_they_are_sent() {
        let mut meta = meta();
        meta.properties.push(weir_core::Property::new("note", "x".repeat(70_000)));
        let reason = unpublishable("t", 10, &meta, true, MAX_PACKET).expect("refused over MQTT 5");
        assert!(reason.contains("property `note` is 70000 bytes long"), "{reason}");
        assert_eq!(unpublishable("t", 10, &meta, false, MAX_PACKET), None, "MQTT 3.1.1 sends no properties");
        meta.properties.clear();
        meta.correlation_data = Some(vec![0u8; 65_536].into());
        assert!(unpublishable("t", 10, &meta, true, MAX_PACKET).expect("refused").contains("correlation data"));
    }

    #[test]
    fn a_packet_over_the_brokers_maximum_is_refused() {
        let reason = unpublishable("t", 1000, &meta(), false, 512).expect("refused");
        assert!(reason.contains("at most 512 bytes"), "{reason}");
        assert_eq!(unpublishable("t", 400, &meta(), false, 512), None);
    }

    #[test]
    fn wildcards_and_empty_topics_are_refused() {
        assert!(unpublishable("a/+/b", 1, &meta(), false, MAX_PACKET).is_some());
        assert!(unpublishable("a/#", 1, &meta(), false, MAX_PACKET).is_some());
        assert_eq!(unpublishable("", 1, &meta(), false, MAX_PACKET).as_deref(), Some("the topic is empty"));
    }
}
