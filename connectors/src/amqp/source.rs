use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Acker, Connection};
use tokio::sync::mpsc;
use tracing::{info, warn};
use weir_core::{Ack, AckOutcome, Backoff, BuildContext, Message, Source, SourceContext, SourceKind};

use super::client::{self, to_metadata};
use super::config::AmqpSourceConfig;

/// Consumes a queue. A delivery is acknowledged once the pipeline accepted it, and
/// requeued if it could not be; unacknowledged deliveries come back after a reconnect.
pub struct AmqpSource {
    config: AmqpSourceConfig,
    base_dir: PathBuf,
}

#[async_trait]
impl SourceKind for AmqpSource {
    const TYPE: &'static str = "amqp";
    type Config = AmqpSourceConfig;

    async fn build(config: AmqpSourceConfig, ctx: &BuildContext) -> anyhow::Result<Box<dyn Source>> {
        config.connection.uri()?;
        Ok(Box::new(AmqpSource { config, base_dir: ctx.base_dir.clone() }))
    }
}

/// Why a consuming session ended.
enum Ended {
    Shutdown,
    Lost(anyhow::Error),
}

type Settled = (Acker, AckOutcome);

async fn settle(acker: &Acker, outcome: AckOutcome) {
    let result = match outcome {
        AckOutcome::Accepted => acker.ack(BasicAckOptions::default()).await,
        AckOutcome::Failed => acker.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await,
    };
    if let Err(err) = result {
        // The channel is gone: the broker requeues the delivery itself.
        warn!(%err, "could not settle an AMQP delivery; the broker will deliver it again");
    }
}

impl AmqpSource {
    /// One connection's life: consume until it breaks or shutdown starts.
    async fn consume(
        &self,
        ctx: &SourceContext,
        settled_tx: &mpsc::UnboundedSender<Settled>,
        settled_rx: &mut mpsc::UnboundedReceiver<Settled>,
    ) -> (Option<Connection>, Ended) {
        let url = &self.config.connection.url;
        let queue = self.config.queue.as_str();
        let connection = match client::connect(&self.config.connection, &self.base_dir, &ctx.name).await {
            Ok(connection) => connection,
            Err(err) => return (None, Ended::Lost(err)),
        };
        let prefetch = self.config.prefetch.unwrap_or_else(|| u16::try_from(ctx.in_flight_limit).unwrap_or(u16::MAX));
        let started = async {
            let channel = connection.create_channel().await?;
            channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
            let consumer =
                channel.basic_consume(queue.into(), format!("weir-{}", ctx.name).into(), BasicConsumeOptions::default(), FieldTable::default()).await;
            consumer.map_err(|err| {
                anyhow::anyhow!("AMQP broker {url}: cannot consume queue `{queue}` ({err}); does it exist on this vhost, and may this user read it?")
            })
        };
        let mut consumer = match started.await {
            Ok(consumer) => consumer,
            Err(err) => return (Some(connection), Ended::Lost(err)),
        };
        info!(source = %ctx.name, broker = %url, queue, prefetch, "AMQP consumer started");
        ctx.ready.send_replace(true);
        let messages_in = metrics::counter!(weir_core::metric_names::SOURCE_MESSAGES, "source" => ctx.name.to_string());
        loop {
            tokio::select! {
                () = ctx.shutdown.cancelled() => return (Some(connection), Ended::Shutdown),
                Some((acker, outcome)) = settled_rx.recv() => settle(&acker, outcome).await,
                delivery = consumer.next() => {
                    let delivery = match delivery {
                        Some(Ok(delivery)) => delivery,
                        Some(Err(err)) => return (Some(connection), Ended::Lost(err.into())),
                        None => return (Some(connection), Ended::Lost(anyhow::anyhow!("the broker cancelled the consumer of queue `{queue}`"))),
                    };
                    messages_in.increment(1);
                    let meta = to_metadata(delivery.routing_key.as_str(), &delivery.properties, ctx.name.clone(), self.config.topic_dots);
                    // The broker's prefetch bounds deliveries; the window bounds what the pipeline holds.
                    let Some(permit) = ctx.reserve().await else { return (Some(connection), Ended::Shutdown) };
                    let Ok(bytes) = ctx.reserve_payload(delivery.data.len()).await else { return (Some(connection), Ended::Shutdown) };
                    let (tx, acker) = (settled_tx.clone(), delivery.acker);
                    let ack = Ack::with_permits(move |outcome| { let _ = tx.send((acker, outcome)); }, [Some(permit), bytes]);
                    if !ctx.hand_on(Message::new(delivery.data, meta, ack)).await {
                        return (Some(connection), Ended::Shutdown);
                    }
                }
            }
        }
    }
}

#[async_trait]
impl Source for AmqpSource {
    async fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()> {
        let (settled_tx, mut settled_rx) = mpsc::unbounded_channel::<Settled>();
        let mut backoff = Backoff::default();
        let url = self.config.connection.url.clone();
        loop {
            let (connection, ended) = self.consume(&ctx, &settled_tx, &mut settled_rx).await;
            match ended {
                Ended::Shutdown => {
                    // Settle what the pipeline still accepts, so it is not delivered again.
                    let deadline = tokio::time::Instant::now() + ctx.drain_timeout;
                    while !ctx.drained() && tokio::time::Instant::now() < deadline {
                        if let Ok(Some((acker, outcome))) = tokio::time::timeout(Duration::from_millis(20), settled_rx.recv()).await {
                            settle(&acker, outcome).await;
                        }
                    }
                    while let Ok((acker, outcome)) = settled_rx.try_recv() {
                        settle(&acker, outcome).await;
                    }
                    if let Some(connection) = connection {
                        let _ = connection.close(200, "weir stopping".into()).await;
                    }
                    info!(source = %ctx.name, "stopped");
                    return Ok(());
                }
                Ended::Lost(err) => {
                    // A session that got as far as consuming starts the back-off over.
                    if ctx.ready.send_replace(false) {
                        backoff.reset();
                    }
                    if let Some(connection) = connection {
                        let _ = connection.close(200, "reconnecting".into()).await;
                    }
                    let delay = backoff.next_delay();
                    warn!(source = %ctx.name, broker = %url, error = %format!("{err:#}"), retry_in = ?delay, "AMQP consumer stopped; reconnecting");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = ctx.shutdown.cancelled() => return Ok(()),
                    }
                }
            }
        }
    }
}
