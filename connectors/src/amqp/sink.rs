use std::path::PathBuf;

use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Confirmation, Connection, ExchangeKind};
use tracing::{info, warn};
use weir_core::{BuildContext, Message, Sink, SinkError, SinkKind};

use super::client::{self, to_properties};
use super::config::AmqpSinkConfig;
use crate::template;

/// Publishes each message with publisher confirms; a batch is accepted when the broker
/// confirmed all of it. Connects on first use and again after any failure.
pub struct AmqpSink {
    config: AmqpSinkConfig,
    base_dir: PathBuf,
    name: String,
    open: Option<(Connection, Channel)>,
}

#[async_trait]
impl SinkKind for AmqpSink {
    const TYPE: &'static str = "amqp";
    type Config = AmqpSinkConfig;

    async fn build(config: AmqpSinkConfig, ctx: &BuildContext) -> anyhow::Result<Box<dyn Sink>> {
        config.connection.uri()?;
        Ok(Box::new(AmqpSink { config, base_dir: ctx.base_dir.clone(), name: ctx.name.to_string(), open: None }))
    }
}

impl AmqpSink {
    /// The confirm-mode channel, connecting first if needed.
    async fn channel(&mut self) -> anyhow::Result<Channel> {
        if let Some((connection, channel)) = &self.open
            && connection.status().connected()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        self.open = None;
        let connection = client::connect(&self.config.connection, &self.base_dir, &self.name).await?;
        let exchange = &self.config.exchange;
        if !exchange.is_empty() {
            // A passive declare only checks; its failure closes that channel, so use a spare one.
            let probe = connection.create_channel().await?;
            let passive = ExchangeDeclareOptions { passive: true, ..ExchangeDeclareOptions::default() };
            if let Err(err) = probe.exchange_declare(exchange.as_str().into(), ExchangeKind::Topic, passive, FieldTable::default()).await {
                anyhow::bail!(
                    "AMQP broker {}: exchange `{exchange}` does not exist ({err}); declare it (for example `rabbitmqadmin declare exchange name={exchange} type=topic durable=true`) or set exchange = \"\" for the default exchange",
                    self.config.connection.url
                );
            }
            let _ = probe.close(200, "checked".into()).await;
        }
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        info!(sink = %self.name, broker = %self.config.connection.url, %exchange, "AMQP publisher connected");
        self.open = Some((connection, channel.clone()));
        Ok(channel)
    }

    fn routing_key(&self, message: &Message) -> String {
        let topic = message.meta().topic.as_str();
        if self.config.topic_dots {
            template::render_with_topic(&self.config.routing_key, message, &topic.replace('/', "."))
        } else {
            template::render(&self.config.routing_key, message)
        }
    }
}

#[async_trait]
impl Sink for AmqpSink {
    async fn deliver(&mut self, batch: &[Message]) -> Result<(), SinkError> {
        let channel = self.channel().await.map_err(|err| {
            self.open = None;
            SinkError::Unavailable(err)
        })?;
        let options = BasicPublishOptions { mandatory: self.config.mandatory, ..BasicPublishOptions::default() };
        let mut rejected = Vec::new();
        let mut confirms = Vec::with_capacity(batch.len());
        for (index, message) in batch.iter().enumerate() {
            let key = self.routing_key(message);
            let Ok(routing_key) = ShortString::try_new(key.as_str()) else {
                rejected.push((index, format!("the routing key is {} bytes; AMQP allows 255", key.len())));
                continue;
            };
            let published = channel
                .basic_publish(self.config.exchange.as_str().into(), routing_key, options, &message.payload, to_properties(message, self.config.persistent))
                .await;
            match published {
                Ok(confirm) => confirms.push((index, key, confirm)),
                Err(err) => {
                    self.open = None;
                    return Err(SinkError::Unavailable(anyhow::anyhow!("AMQP broker {}: publish failed: {err}", self.config.connection.url)));
                }
            }
        }
        for (index, key, confirm) in confirms {
            match confirm.await {
                Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => {}
                Ok(Confirmation::Ack(Some(returned))) => rejected.push((
                    index,
                    format!(
                        "unroutable: no queue is bound to exchange `{}` for routing key `{key}` ({} {})",
                        self.config.exchange, returned.reply_code, returned.reply_text
                    ),
                )),
                Ok(Confirmation::Nack(_)) => {
                    warn!(sink = %self.name, "the AMQP broker refused a message (nack); the batch is retried");
                    return Err(SinkError::Unavailable(anyhow::anyhow!("AMQP broker {}: nack for routing key `{key}`", self.config.connection.url)));
                }
                Err(err) => {
                    self.open = None;
                    return Err(SinkError::Unavailable(anyhow::anyhow!("AMQP broker {}: no confirm: {err}", self.config.connection.url)));
                }
            }
        }
        if rejected.is_empty() { Ok(()) } else { Err(SinkError::Rejected(rejected)) }
    }

    async fn close(&mut self) -> anyhow::Result<()> {
        if let Some((connection, channel)) = self.open.take() {
            let _ = channel.close(200, "weir stopping".into()).await;
            let _ = connection.close(200, "weir stopping".into()).await;
        }
        Ok(())
    }
}
