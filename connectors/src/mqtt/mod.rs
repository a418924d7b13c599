//! `type = "mqtt"`: MQTT 3.1.1 and 5 sources and sinks (rumqttc), over TCP, TLS or a Unix
//! domain socket. The rumqttc built is `connectors/vendor/rumqttc`: the published 0.25.1 with
//! waiting requests written in one flush and quick acknowledgements over TCP (its
//! `WEIR-PATCH.md`).
//!
//! - `config.rs`: [`ConnectionConfig`] (shared by sources, sinks and the pipeline's
//!   `[broker]`), [`MqttSourceConfig`], [`MqttSinkConfig`];
//! - `client.rs`: one connection, hiding the 3.1.1/5 split behind one event type;
//! - `tls.rs`: rustls client configuration from PEM files;
//! - `source.rs`: subscribes, resubscribes after a reconnect, acknowledges a QoS 1/2
//!   message only when the pipeline has fully accepted it;
//! - `sink.rs`: publishes with MQTT 5 properties and reports a batch accepted only when
//!   the broker has acknowledged every QoS 1/2 publish; renews an expiring password;
//! - `exactly_once.rs`: the packet ids of incoming QoS 2 messages until the broker releases
//!   them, so a PUBLISH the broker resends after a cut is not passed on twice;
//! - `inbound.rs`: publishes arriving on a sink's connection, for a source that shares it
//!   (IoT Hub's cloud-to-device messages);
//! - `limits.rs`: what fits in one PUBLISH (MQTT's 64 KiB strings, the broker's maximum
//!   packet size): a message that does not fit is refused before it reaches the client;
//! - `ack_delays.rs`: notices a broker's Nagle delaying its acknowledgements, and says what
//!   to change.

mod ack_delays;
mod client;
mod config;
mod exactly_once;
mod inbound;
mod limits;
mod sink;
mod source;
mod tls;

pub use client::{AckToken, Client, Received};
pub use config::{ConnectionConfig, MqttSinkConfig, MqttSourceConfig, PasswordProvider, Protocol, TlsConfig};
pub use inbound::Inbound;
pub use sink::MqttSink;
pub use source::{MqttSource, max_packet_for};
