//! `type = "kafka"`: Kafka, or Azure Event Hubs through its Kafka endpoint (a preset built
//! from the Event Hubs connection string), as a sink and as a source.
//!
//! - `config.rs`: [`KafkaConnection`] (brokers, Event Hubs, SASL, TLS), the sink's and the
//!   source's configs, and the librdkafka settings they mean;
//! - `sink.rs`: produces each message, metadata as headers; a batch is accepted when the
//!   broker acknowledged all of it;
//! - `source.rs`: consumes in a consumer group; commits an offset only when the pipeline
//!   accepted that record and every one before it (`offsets.rs`).

mod config;
mod offsets;
mod sink;
mod source;

pub use config::{KafkaConfig, KafkaConnection, KafkaSourceConfig, SaslConfig, StartFrom, client_config};
pub use sink::KafkaSink;
pub use source::{KEY_PROPERTY, KafkaSource};
