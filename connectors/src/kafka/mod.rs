//! `type = "kafka"`: publish to Kafka, or to Azure Event Hubs through its Kafka endpoint
//! (a preset built from the Event Hubs connection string).

mod config;
mod sink;

pub use config::{KafkaConfig, SaslConfig};
pub use sink::KafkaSink;
