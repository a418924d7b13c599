//! `type = "iothub"`: Azure IoT Hub over MQTT 3.1.1 with IoT Hub's device conventions, as a
//! sink (device-to-cloud telemetry) and a source (cloud-to-device messages).
//!
//! - `config.rs`: [`IotHubConfig`], the device connection string and connection settings;
//! - `protocol.rs`: the conventions: client id = device id, the `{hub}/{device}/?api-version=…`
//!   user name, SAS tokens from the device key, telemetry on
//!   `devices/{device}/messages/events/{property bag}` (content type and encoding as `$.ct` /
//!   `$.ce` so IoT Hub routing can read the body), cloud-to-device property bags;
//! - `link.rs`: the device's one connection, shared by its sink and source, with the token
//!   renewed before it expires;
//! - `sink.rs` / `source.rs`: telemetry out; cloud-to-device messages in, acknowledged
//!   (completed) only after the pipeline accepted them.

mod config;
mod link;
mod protocol;
mod sink;
mod source;

pub use config::IotHubConfig;
pub use protocol::{DeviceConnection, parse_property_bag, property_bag, sas_token};
pub use sink::IotHubSink;
pub use source::IotHubSource;
