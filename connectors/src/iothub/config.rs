use schemars::JsonSchema;
use serde::Deserialize;
use weir_core::{QoS, Secret};

use crate::mqtt::TlsConfig;

/// An IoT Hub device connection, for the sink (telemetry) and the source (cloud-to-device
/// messages). A sink and a source of the same device share one connection: give them the
/// same settings (the first one built opens it).
///
/// ```toml
/// [sinks.hub]
/// type = "iothub"
/// connection_string = { env = "IOTHUB_DEVICE_CONNECTION_STRING" }
///
/// [sources.hub-commands]
/// type = "iothub"
/// connection_string = { env = "IOTHUB_DEVICE_CONNECTION_STRING" }
/// ```
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IotHubConfig {
    /// The device connection string, `HostName=HUB.azure-devices.net;DeviceId=…;SharedAccessKey=…`
    /// (from `{ env = "…" }` or `{ file = "…" }`, never clear text).
    pub connection_string: Secret,
    /// Lifetime of each SAS token in seconds (at least 10). weir reconnects with a fresh
    /// token when four fifths of it have passed, before IoT Hub would close the connection.
    /// Default 3600.
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
