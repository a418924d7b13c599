//! One MQTT connection per device. IoT Hub drops a device's older connection when a new one
//! with the same client id arrives, so the device's sink and source share one: the first to
//! be built opens it, the other finds it here.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use weir_core::QoS;

use super::config::IotHubConfig;
use super::protocol::{DeviceConnection, c2d_filter};
use crate::mqtt::{ConnectionConfig, Inbound, MqttSink, PasswordProvider, Protocol};

/// A device's connection: the publisher and what arrives on it.
pub struct DeviceLink {
    pub device: DeviceConnection,
    pub publisher: tokio::sync::Mutex<MqttSink>,
    pub inbound: Arc<Inbound>,
}

static LINKS: LazyLock<Mutex<HashMap<String, Weak<DeviceLink>>>> = LazyLock::new(Mutex::default);

/// The device's connection, opened now if nobody holds it.
pub fn link(config: &IotHubConfig, base_dir: &Path) -> anyhow::Result<Arc<DeviceLink>> {
    let device = DeviceConnection::parse(&config.connection_string.reveal(base_dir)?)?;
    if config.qos == QoS::ExactlyOnce {
        anyhow::bail!("iothub: qos 2 is not supported by IoT Hub (it closes the connection); use 0 or 1");
    }
    device.token(0)?; // the key is valid base64
    let url = config.url.clone().unwrap_or_else(|| format!("mqtts://{}:8883", device.host));
    let key = format!("{url} {}", device.device);
    let mut links = LINKS.lock().map_err(|_| anyhow::anyhow!("iothub: connection registry poisoned"))?;
    links.retain(|_, link| link.strong_count() > 0);
    if let Some(link) = links.get(&key).and_then(Weak::upgrade) {
        return Ok(link);
    }
    let mut connection = ConnectionConfig::plain(&device.host, 8883);
    connection.url = url;
    connection.protocol = Protocol::V311;
    connection.client_id = Some(device.device.clone());
    connection.username = Some(device.username());
    connection.tls = config.tls.clone();
    connection.qos = config.qos;
    connection.clean_session = false;
    let ttl = config.token_ttl_secs.max(10);
    let for_tokens = device.clone();
    connection.password_provider =
        Some(PasswordProvider { make: Arc::new(move || for_tokens.token(weir_core::message::now_ms() / 1000 + ttl)), valid_for: Duration::from_secs(ttl) });
    let inbound = Inbound::new(vec![c2d_filter(&device.device)], config.qos);
    // The device id is the client id as is: IoT Hub refuses any other.
    let publisher = MqttSink::connect(&connection, base_dir, &device.device, "", None, Some(false), Some(inbound.clone()))?;
    let link = Arc::new(DeviceLink { device, publisher: tokio::sync::Mutex::new(publisher), inbound });
    links.insert(key, Arc::downgrade(&link));
    Ok(link)
}
