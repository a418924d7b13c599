use std::time::Duration;

use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use weir_core::{BuildContext, Message, Sink, SinkError, SinkKind};

use super::config::KafkaConfig;

/// Produces each message to the topic; a batch is accepted when the broker acknowledged all
/// of it (with `acks = "all"`, by every in-sync replica).
pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
    key: Option<String>,
    max_message_bytes: usize,
    brokers: String,
}

#[async_trait]
impl SinkKind for KafkaSink {
    const TYPE: &'static str = "kafka";
    type Config = KafkaConfig;

    async fn build(config: KafkaConfig, ctx: &BuildContext) -> anyhow::Result<Box<dyn Sink>> {
        let (settings, topic) = config.client_settings(&ctx.base_dir)?;
        let brokers = settings.get("bootstrap.servers").cloned().unwrap_or_default();
        let mut client = ClientConfig::new();
        for (key, value) in &settings {
            client.set(key, value);
        }
        let producer: FutureProducer = client.create().map_err(|err| anyhow::anyhow!("kafka producer for {brokers}: {err}"))?;
        Ok(Box::new(KafkaSink { producer, topic, key: config.key, max_message_bytes: config.max_message_bytes, brokers }))
    }
}

/// Message metadata as Kafka headers: every property, plus the MQTT topic, content type,
/// correlation data and response topic when set.
fn headers(message: &Message) -> OwnedHeaders {
    let meta = message.meta();
    let mut headers = OwnedHeaders::new_with_capacity(meta.properties.len() + 4);
    for property in &meta.properties {
        headers = headers.insert(Header { key: &property.name, value: Some(property.value.as_bytes()) });
    }
    if !meta.topic.is_empty() {
        headers = headers.insert(Header { key: "mqtt-topic", value: Some(meta.topic.as_bytes()) });
    }
    if let Some(content_type) = &meta.content_type {
        headers = headers.insert(Header { key: "content-type", value: Some(content_type.as_bytes()) });
    }
    if let Some(correlation) = &meta.correlation_data {
        headers = headers.insert(Header { key: "correlation-data", value: Some(&correlation[..]) });
    }
    if let Some(response) = &meta.response_topic {
        headers = headers.insert(Header { key: "response-topic", value: Some(response.as_bytes()) });
    }
    headers
}

/// The partition key: `{topic}`, `{source}` and `{property:NAME}` filled in.
fn render_key(template: &str, message: &Message) -> String {
    let meta = message.meta();
    let mut out = template.replace("{topic}", &meta.topic).replace("{source}", &meta.source);
    while let Some(start) = out.find("{property:") {
        let Some(end) = out[start..].find('}').map(|e| start + e) else { break };
        let name = out[start + "{property:".len()..end].to_owned();
        out.replace_range(start..=end, meta.property(&name).unwrap_or(""));
    }
    out
}

#[async_trait]
impl Sink for KafkaSink {
    async fn deliver(&mut self, batch: &[Message]) -> Result<(), SinkError> {
        let mut rejected = Vec::new();
        let mut pending = Vec::with_capacity(batch.len());
        for (index, message) in batch.iter().enumerate() {
            let key = self.key.as_ref().map(|template| render_key(template, message));
            let meta_bytes: usize = message.meta().properties.iter().map(|p| p.name.len() + p.value.len()).sum();
            let size = message.payload.len() + key.as_ref().map_or(0, String::len) + meta_bytes;
            if size > self.max_message_bytes {
                rejected
                    .push((index, format!("{size} bytes is more than max_message_bytes = {} (Azure Event Hubs takes at most 1 MB)", self.max_message_bytes)));
                continue;
            }
            let mut record = FutureRecord::to(&self.topic).payload(&message.payload[..]).headers(headers(message));
            if let Some(key) = &key {
                record = record.key(key.as_str());
            }
            match self.producer.send_result(record) {
                Ok(delivery) => pending.push((index, delivery)),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
                    rejected.push((index, format!("the broker's message size limit is below {size} bytes")));
                }
                Err((err, _)) => return Err(SinkError::Unavailable(anyhow::anyhow!("kafka {}: cannot produce: {err}", self.brokers))),
            }
        }
        for (index, delivery) in pending {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _))) => {
                    rejected.push((index, "the broker refused the message as too large".into()));
                }
                Ok(Err((err, _))) => return Err(SinkError::Unavailable(anyhow::anyhow!("kafka {} topic {}: {err}", self.brokers, self.topic))),
                Err(_) => return Err(SinkError::Unavailable(anyhow::anyhow!("kafka {}: the producer was dropped", self.brokers))),
            }
        }
        if rejected.is_empty() { Ok(()) } else { Err(SinkError::Rejected(rejected)) }
    }

    async fn close(&mut self) -> anyhow::Result<()> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await??;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::{Ack, Metadata, Property};

    #[test]
    fn keys_from_topic_source_and_properties() {
        let mut meta = Metadata::new("local".into(), "plant/m1/telemetry");
        meta.properties.push(Property::new("machine", "m1"));
        let message = Message::new(&b"{}"[..], meta, Ack::none());
        assert_eq!(render_key("{property:machine}/{source}/{topic}/{property:missing}", &message), "m1/local/plant/m1/telemetry/");
    }
}
