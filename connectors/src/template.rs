//! Text templates over a message, for partition keys and routing keys: `{topic}`,
//! `{source}` and `{property:NAME}` (an absent property is empty).

use weir_core::Message;

/// `template` with the message's topic, source and properties filled in.
pub fn render(template: &str, message: &Message) -> String {
    render_with_topic(template, message, &message.meta().topic)
}

/// Like [`render`], with `topic` standing for `{topic}` (an AMQP routing key writes the
/// MQTT topic with dots).
pub fn render_with_topic(template: &str, message: &Message, topic: &str) -> String {
    let meta = message.meta();
    let mut out = template.replace("{topic}", topic).replace("{source}", &meta.source);
    let mut from = 0;
    while let Some(start) = out[from..].find("{property:").map(|s| from + s) {
        let Some(end) = out[start..].find('}').map(|e| start + e) else { break };
        let value = meta.property(&out[start + "{property:".len()..end]).unwrap_or("").to_owned();
        out.replace_range(start..=end, &value);
        // A value that itself contains `{property:` is not expanded again.
        from = start + value.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::{Ack, Metadata, Property};

    #[test]
    fn fills_topic_source_and_properties() {
        let mut meta = Metadata::new("local".into(), "plant/m1/telemetry");
        meta.properties.push(Property::new("machine", "m1"));
        meta.properties.push(Property::new("tricky", "{property:machine}"));
        let message = Message::new(&b"{}"[..], meta, Ack::none());
        assert_eq!(render("{property:machine}/{source}/{topic}/{property:missing}", &message), "m1/local/plant/m1/telemetry/");
        assert_eq!(render("{property:tricky}", &message), "{property:machine}");
        assert_eq!(render_with_topic("x.{topic}", &message, "plant.m1"), "x.plant.m1");
    }
}
