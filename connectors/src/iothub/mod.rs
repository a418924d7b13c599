//! `type = "iothub"`: device-to-cloud telemetry to Azure IoT Hub over MQTT 3.1.1, with IoT
//! Hub's device conventions: client id = device id, the `{hub}/{device}/?api-version=…` user
//! name, a SAS token made from the device key (fresh at every connect), telemetry on
//! `devices/{device}/messages/events/{property bag}` with the properties URL-encoded and the
//! content type and encoding as `$.ct` / `$.ce` so IoT Hub routing can read the body.

mod config;
mod protocol;
mod sink;

pub use config::IotHubConfig;
pub use protocol::{DeviceConnection, property_bag, sas_token};
pub use sink::IotHubSink;
