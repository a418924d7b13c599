use async_trait::async_trait;
use weir_core::{BuildContext, Message, QoS, Sink, SinkError, SinkKind};

use super::config::IotHubConfig;
use super::protocol::{DeviceConnection, telemetry_topic};
use crate::mqtt::{ConnectionConfig, MqttSink, PasswordProvider, Protocol};

/// Device-to-cloud telemetry: each message published to its device's events topic.
pub struct IotHubSink {
    mqtt: MqttSink,
    device: String,
}

#[async_trait]
impl SinkKind for IotHubSink {
    const TYPE: &'static str = "iothub";
    type Config = IotHubConfig;

    async fn build(config: IotHubConfig, ctx: &BuildContext) -> anyhow::Result<Box<dyn Sink>> {
        let device = DeviceConnection::parse(&config.connection_string.reveal(&ctx.base_dir)?)?;
        if config.qos == QoS::ExactlyOnce {
            anyhow::bail!("iothub: qos 2 is not supported by IoT Hub (it closes the connection); use 0 or 1");
        }
        device.token(0)?; // the key is valid base64
        let mut connection = ConnectionConfig::plain(&device.host, 8883);
        connection.url = config.url.clone().unwrap_or_else(|| format!("mqtts://{}:8883", device.host));
        connection.protocol = Protocol::V311;
        connection.client_id = Some(device.device.clone());
        connection.username = Some(device.username());
        connection.tls = config.tls.clone();
        connection.qos = config.qos;
        connection.clean_session = false;
        let ttl = config.token_ttl_secs.max(60);
        let for_tokens = device.clone();
        connection.password_provider = Some(PasswordProvider(std::sync::Arc::new(move || for_tokens.token(weir_core::message::now_ms() / 1000 + ttl))));
        // The device id is the client id as is: IoT Hub refuses any other.
        let mqtt = MqttSink::connect(&connection, &ctx.base_dir, &device.device, "", None, Some(false))?;
        Ok(Box::new(IotHubSink { mqtt, device: device.device }))
    }
}

#[async_trait]
impl Sink for IotHubSink {
    async fn deliver(&mut self, batch: &[Message]) -> Result<(), SinkError> {
        let addressed: Vec<Message> = batch
            .iter()
            .map(|message| {
                let mut copy = message.clone();
                copy.meta_mut().topic = telemetry_topic(&self.device, message);
                copy
            })
            .collect();
        self.mqtt.deliver(&addressed).await
    }

    async fn close(&mut self) -> anyhow::Result<()> {
        self.mqtt.close().await
    }
}
