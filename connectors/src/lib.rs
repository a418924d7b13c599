//! weir's connectors: one folder each, the same files in each.
//!
//! - `mod.rs` declares the connector's pieces and re-exports its config;
//! - `config.rs` is the typed config (serde, unknown keys rejected, every field documented);
//! - `source.rs` / `sink.rs` implement [`weir_core::Source`] / [`weir_core::Sink`];
//! - anything else is the connector's own plumbing (`client.rs`, `tls.rs`).
//!
//! Connectors:
//! - [`mqtt`] (feature `mqtt`): MQTT 3.1.1 and 5 sources and sinks over TCP or TLS, also
//!   used for the local broker's topics;
//! - [`blob`] (feature `blob`): batches as objects in Azure Blob Storage, S3, GCS or a
//!   local directory, with time-partitioned names;
//! - [`iothub`] (feature `iothub`): Azure IoT Hub over MQTT with IoT Hub's device
//!   conventions: telemetry sink and cloud-to-device source on one connection, SAS tokens
//!   from the device key renewed before they expire, property bag topics;
//! - [`kafka`] (feature `kafka`): Kafka and Azure Event Hubs (Kafka endpoint) sink and
//!   source, rdkafka with a bundled librdkafka;
//! - [`amqp`] (feature `amqp`): RabbitMQ and other AMQP 0-9-1 brokers, sink (publisher
//!   confirms) and source (acknowledged after the pipeline accepted), lapin;
//! - [`file`] (feature `file`): a JSON Lines file sink (an "upstream" for the demo and for
//!   tests before the cloud connectors);
//! - [`null`]: a sink that discards (counting only; benchmarks).
//!
//! Shared by several: [`lines`] (messages as JSON Lines or raw lines: `file`, `blob`),
//! [`azure`] (Azure connection strings: `iothub`, `kafka`), [`headers`] (metadata as
//! name/value headers: `kafka`, `amqp`) and [`template`] (keys from `{topic}`,
//! `{property:NAME}`…: `kafka`, `amqp`).
//!
//! [`registry`] lists every connector type compiled in.

#[cfg(feature = "amqp")]
pub mod amqp;
#[cfg(any(feature = "iothub", feature = "kafka"))]
pub mod azure;
#[cfg(feature = "blob")]
pub mod blob;
#[cfg(feature = "file")]
pub mod file;
#[cfg(any(feature = "kafka", feature = "amqp"))]
pub mod headers;
#[cfg(feature = "iothub")]
pub mod iothub;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(any(feature = "file", feature = "blob"))]
pub mod lines;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod null;
#[cfg(any(feature = "kafka", feature = "amqp"))]
pub mod template;

/// Every connector type compiled into this binary.
pub fn registry() -> weir_core::Registry {
    let registry = weir_core::Registry::default().sink::<null::NullSink>();
    #[cfg(feature = "file")]
    let registry = registry.sink::<file::FileSink>();
    #[cfg(feature = "blob")]
    let registry = registry.sink::<blob::BlobSink>();
    #[cfg(feature = "iothub")]
    let registry = registry.sink::<iothub::IotHubSink>().source::<iothub::IotHubSource>();
    #[cfg(feature = "kafka")]
    let registry = registry.sink::<kafka::KafkaSink>().source::<kafka::KafkaSource>();
    #[cfg(feature = "amqp")]
    let registry = registry.sink::<amqp::AmqpSink>().source::<amqp::AmqpSource>();
    #[cfg(feature = "mqtt")]
    let registry = registry.source::<mqtt::MqttSource>().sink::<mqtt::MqttSink>();
    // What a build without some features leaves out: a pipeline using one is told so.
    #[cfg(not(feature = "file"))]
    let registry = registry.left_out("file");
    #[cfg(not(feature = "blob"))]
    let registry = registry.left_out("blob");
    #[cfg(not(feature = "iothub"))]
    let registry = registry.left_out("iothub");
    #[cfg(not(feature = "kafka"))]
    let registry = registry.left_out("kafka");
    #[cfg(not(feature = "amqp"))]
    let registry = registry.left_out("amqp");
    #[cfg(not(feature = "mqtt"))]
    let registry = registry.left_out("mqtt");
    registry
}
