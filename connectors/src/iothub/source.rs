use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{info, warn};
use weir_core::{Ack, AckOutcome, BuildContext, Message, Property, Sink as _, Source, SourceContext, SourceKind};

use super::config::IotHubConfig;
use super::link::{DeviceLink, link};
use super::protocol::parse_property_bag;
use crate::mqtt::{AckToken, Received};

/// Cloud-to-device messages: subscribes to `devices/{device}/messages/devicebound/#` on the
/// device's one connection (shared with its sink), and acknowledges a message (which
/// completes it in IoT Hub) only once the pipeline accepted it.
pub struct IotHubSource {
    link: Arc<DeviceLink>,
}

#[async_trait]
impl SourceKind for IotHubSource {
    const TYPE: &'static str = "iothub";
    type Config = IotHubConfig;

    async fn build(config: IotHubConfig, ctx: &BuildContext) -> anyhow::Result<Box<dyn Source>> {
        Ok(Box::new(IotHubSource { link: link(&config, &ctx.base_dir)? }))
    }
}

/// A cloud-to-device message as a weir message: the topic without its property bag
/// (`devices/{device}/messages/devicebound`), the bag's application properties as
/// properties, `$.ct` as the content type and `$.cid` as correlation data; the other system
/// properties (`$.mid`, `$.to`, `$.ce` …) stay properties under their own names.
fn to_message(received: &Received, source: Arc<str>, ack: Ack) -> Message {
    let (payload, mut meta) = received.to_parts(source);
    let bag = parse_property_bag(&meta.topic);
    if let Some(end) = meta.topic.find("/messages/devicebound") {
        meta.topic.truncate(end + "/messages/devicebound".len());
    }
    for (name, value) in bag {
        match name.as_str() {
            "$.ct" => meta.content_type = Some(value),
            "$.cid" => meta.correlation_data = Some(Bytes::from(value)),
            _ => meta.properties.push(Property::new(name, value)),
        }
    }
    Message::new(payload, meta, ack)
}

#[async_trait]
impl Source for IotHubSource {
    async fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()> {
        let link = self.link;
        let mut arrivals = link.inbound.listen();
        let client = link.publisher.lock().await.client();
        let device = link.device.device.clone();
        // Subscribe now; the connection subscribes again after every reconnect.
        if let Err(err) = client.subscribe(&link.inbound.topics, link.inbound.qos).await {
            warn!(source = %ctx.name, %device, error = %format!("{err:#}"), "could not ask for cloud-to-device messages yet; will on the next connect");
        }
        let mut subscribed = link.inbound.subscribed();
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<AckToken>();
        let messages_in = metrics::counter!(weir_core::metric_names::SOURCE_MESSAGES, "source" => ctx.name.to_string());
        loop {
            tokio::select! {
                () = ctx.shutdown.cancelled() => break,
                Ok(()) = subscribed.changed() => {
                    let now = *subscribed.borrow_and_update();
                    ctx.ready.send_replace(now);
                    if now {
                        info!(source = %ctx.name, %device, "receiving cloud-to-device messages");
                    }
                }
                Some(token) = ack_rx.recv() => {
                    if let Err(err) = client.ack(token).await {
                        warn!(source = %ctx.name, %err, "could not acknowledge a cloud-to-device message; IoT Hub will send it again");
                    }
                }
                Some(received) = arrivals.recv() => {
                    messages_in.increment(1);
                    let Some(permit) = ctx.reserve().await else { break };
                    let Ok(bytes) = ctx.reserve_payload(received.payload_len()).await else { break };
                    let tx = ack_tx.clone();
                    let token = received.ack_token();
                    let ack = Ack::with_permits(move |outcome| if outcome == AckOutcome::Accepted { let _ = tx.send(token); }, [Some(permit), bytes]);
                    if !ctx.hand_on(to_message(&received, ctx.name.clone(), ack)).await {
                        break;
                    }
                }
            }
        }
        // Acknowledge what the pipeline still accepts; the rest comes again from IoT Hub.
        let deadline = tokio::time::Instant::now() + ctx.drain_timeout;
        while !ctx.drained() && tokio::time::Instant::now() < deadline {
            if let Ok(Some(token)) = tokio::time::timeout(Duration::from_millis(20), ack_rx.recv()).await {
                let _ = client.ack(token).await;
            }
        }
        while let Ok(token) = ack_rx.try_recv() {
            let _ = client.ack(token).await;
        }
        // Without a sink of the same device, nobody else closes the connection.
        if Arc::strong_count(&link) == 1 {
            tokio::time::sleep(Duration::from_millis(200)).await; // let the acknowledgements leave
            let _ = link.publisher.lock().await.close().await;
        }
        info!(source = %ctx.name, "stopped");
        Ok(())
    }
}
