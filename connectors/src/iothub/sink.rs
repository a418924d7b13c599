use std::sync::Arc;

use async_trait::async_trait;
use weir_core::{BuildContext, Message, Sink, SinkError, SinkKind};

use super::config::IotHubConfig;
use super::link::{DeviceLink, link};
use super::protocol::telemetry_topic;

/// Device-to-cloud telemetry: each message published to its device's events topic.
pub struct IotHubSink {
    link: Arc<DeviceLink>,
}

#[async_trait]
impl SinkKind for IotHubSink {
    const TYPE: &'static str = "iothub";
    type Config = IotHubConfig;

    async fn build(config: IotHubConfig, ctx: &BuildContext) -> anyhow::Result<Box<dyn Sink>> {
        Ok(Box::new(IotHubSink { link: link(&config, &ctx.base_dir)? }))
    }
}

#[async_trait]
impl Sink for IotHubSink {
    async fn deliver(&mut self, batch: &[Message]) -> Result<(), SinkError> {
        let device = &self.link.device.device;
        let addressed: Vec<Message> = batch
            .iter()
            .map(|message| {
                let mut copy = message.clone();
                copy.meta_mut().topic = telemetry_topic(device, message);
                copy
            })
            .collect();
        self.link.publisher.lock().await.deliver(&addressed).await
    }

    async fn close(&mut self) -> anyhow::Result<()> {
        self.link.publisher.lock().await.close().await
    }
}
