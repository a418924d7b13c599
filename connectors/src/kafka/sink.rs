use std::time::Duration;

use async_trait::async_trait;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use weir_core::connector::Batching;
use weir_core::{BuildContext, Message, Sink, SinkError, SinkKind};

use super::config::{KafkaConfig, client_config};
use crate::{headers, template};

/// Produces each message to the topic; a batch is accepted when the broker acknowledged all
/// of it (with `acks = "all"`, by every in-sync replica).
pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
    key: Option<String>,
    max_message_bytes: usize,
    batching: Batching,
    brokers: String,
}

#[async_trait]
impl SinkKind for KafkaSink {
    const TYPE: &'static str = "kafka";
    type Config = KafkaConfig;

    async fn build(config: KafkaConfig, ctx: &BuildContext) -> anyhow::Result<Box<dyn Sink>> {
        let (settings, topic) = config.client_settings(&ctx.base_dir)?;
        let brokers = settings.get("bootstrap.servers").cloned().unwrap_or_default();
        let producer: FutureProducer = client_config(&settings).create().map_err(|err| anyhow::anyhow!("kafka producer for {brokers}: {err}"))?;
        // Take what is waiting, up to the limits, without waiting for more.
        let batching = Batching { max_messages: config.batch_messages.max(1), max_bytes: 64 << 20, max_age: Duration::ZERO };
        Ok(Box::new(KafkaSink { producer, topic, key: config.key, max_message_bytes: config.max_message_bytes, batching, brokers }))
    }
}

/// Message metadata as Kafka headers (see `crate::headers`).
fn headers(message: &Message) -> OwnedHeaders {
    let list = headers::to_headers(message.meta(), headers::Fields::All);
    let mut out = OwnedHeaders::new_with_capacity(list.len());
    for (key, value) in list {
        out = out.insert(Header { key, value: Some(value) });
    }
    out
}

#[async_trait]
impl Sink for KafkaSink {
    async fn deliver(&mut self, batch: &[Message]) -> Result<(), SinkError> {
        let mut rejected = Vec::new();
        let mut pending = Vec::with_capacity(batch.len());
        for (index, message) in batch.iter().enumerate() {
            let key = self.key.as_ref().map(|pattern| template::render(pattern, message));
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

    fn batching(&self) -> Option<Batching> {
        Some(self.batching)
    }

    async fn close(&mut self) -> anyhow::Result<()> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await??;
        Ok(())
    }
}
