//! `type = "amqp"`: RabbitMQ and other AMQP 0-9-1 brokers (lapin), as a sink and a source.
//!
//! - `config.rs`: [`AmqpConnection`] (URL, user, password, TLS), [`AmqpSinkConfig`],
//!   [`AmqpSourceConfig`];
//! - `client.rs`: connecting, and a message's metadata as AMQP properties and back;
//! - `sink.rs`: publishes to an exchange with a routing key template, publisher confirms,
//!   `mandatory` so an unroutable message goes to `$deadletter` instead of vanishing;
//! - `source.rs`: consumes a queue with manual acknowledgements: a delivery is acked when the
//!   pipeline accepted it, requeued when it could not.

mod client;
mod config;
mod sink;
mod source;

pub use config::{AmqpConnection, AmqpSinkConfig, AmqpSourceConfig};
pub use sink::AmqpSink;
pub use source::AmqpSource;
