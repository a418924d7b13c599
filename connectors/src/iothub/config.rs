use schemars::JsonSchema;
use serde::Deserialize;
use weir_core::{QoS, Secret};

use crate::mqtt::TlsConfig;

/// An IoT Hub device connection.
///
/// ```toml
/// [sinks.hub]
/// type = "iothub"
/// connection_string = { env = "IOTHUB_DEVICE_CONNECTION_STRING" }
/// ```
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IotHubConfig {
    /// The device connection string, `HostName=HUB.azure-devices.net;DeviceId=…;SharedAccessKey=…`
    /// (from `{ env = "…" }` or `{ file = "…" }`, never clear text).
    pub connection_string: Secret,
    /// Lifetime of each SAS token in seconds. A token is made at every connect; IoT Hub
    /// closes the connection when it expires and weir reconnects with a new one. Default 3600.
    #[serde(default = "IotHubConfig::default_token_ttl")]
    pub token_ttl_secs: u64,
    /// The broker to connect to. Default `mqtts://{HostName}:8883` (an IoT Edge gateway or a
    /// test broker can be given here).
    #[serde(default)]
    pub url: Option<String>,
    /// TLS settings (a private CA for a gateway). Default: the system's root certificates.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// 0 or 1 (IoT Hub closes the connection on QoS 2). Default 1.
    #[serde(default = "IotHubConfig::default_qos")]
    pub qos: QoS,
}

impl IotHubConfig {
    fn default_token_ttl() -> u64 {
        3600
    }
    fn default_qos() -> QoS {
        QoS::AtLeastOnce
    }
}
