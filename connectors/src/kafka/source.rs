use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message as _};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use weir_core::{Ack, AckOutcome, Backoff, BuildContext, Message, Metadata, Property, QoS, Source, SourceContext, SourceKind};

use super::config::{KafkaSourceConfig, client_config};
use super::offsets::{OffsetTracker, Partition};
use crate::headers;

/// The property a record's key becomes (Kafka keys have no MQTT counterpart).
pub const KEY_PROPERTY: &str = "kafka-key";

/// Consumes topics in a consumer group. A record's offset is committed only once the
/// pipeline accepted it and every record before it in its partition: at least once.
pub struct KafkaSource {
    consumer: StreamConsumer<RebalanceNotices>,
    topics: Vec<String>,
    brokers: String,
    commit_interval: Duration,
    revoked: mpsc::UnboundedReceiver<Vec<Partition>>,
}

/// Tells the source which partitions it lost in a rebalance: acknowledgements for them no
/// longer count (the new owner reads them again from the last commit).
struct RebalanceNotices(mpsc::UnboundedSender<Vec<Partition>>);

impl ClientContext for RebalanceNotices {}

impl ConsumerContext for RebalanceNotices {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                let partitions = list.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
                let _ = self.0.send(partitions);
            }
            Rebalance::Assign(list) => debug!(partitions = list.count(), "kafka partitions assigned"),
            Rebalance::Error(err) => warn!(%err, "kafka rebalance failed"),
        }
    }
}

#[async_trait]
impl SourceKind for KafkaSource {
    const TYPE: &'static str = "kafka";
    type Config = KafkaSourceConfig;

    async fn build(config: KafkaSourceConfig, ctx: &BuildContext) -> anyhow::Result<Box<dyn Source>> {
        let (settings, topics) = config.client_settings(&ctx.base_dir)?;
        let brokers = settings.get("bootstrap.servers").cloned().unwrap_or_default();
        let (revoked_tx, revoked) = mpsc::unbounded_channel();
        let consumer: StreamConsumer<RebalanceNotices> =
            client_config(&settings).create_with_context(RebalanceNotices(revoked_tx)).map_err(|err| anyhow::anyhow!("kafka consumer for {brokers}: {err}"))?;
        Ok(Box::new(KafkaSource { consumer, topics, brokers, commit_interval: Duration::from_millis(config.commit_interval_ms.max(10)), revoked }))
    }
}

/// A record as a weir message: headers back into metadata (see `crate::headers`), the key
/// as the `kafka-key` property, the record's timestamp as the source time.
fn to_message(record: &BorrowedMessage<'_>, source: &Arc<str>, ack: Ack) -> Message {
    let mut meta = Metadata::new(source.clone(), record.topic());
    meta.qos = QoS::AtLeastOnce;
    if let Some(list) = record.headers() {
        for header in list.iter() {
            headers::apply(&mut meta, header.key, header.value.unwrap_or_default());
        }
    }
    if let Some(key) = record.key() {
        meta.properties.push(Property::new(KEY_PROPERTY, String::from_utf8_lossy(key)));
    }
    meta.source_time_ms = record.timestamp().to_millis().and_then(|ms| u64::try_from(ms).ok());
    Message::new(record.payload().map(bytes::Bytes::copy_from_slice).unwrap_or_default(), meta, ack)
}

/// Commit what may be committed; `Sync` at shutdown so it is done before leaving.
fn commit(consumer: &StreamConsumer<RebalanceNotices>, brokers: &str, tracker: &mut OffsetTracker, mode: CommitMode) {
    let commits = tracker.take_commits();
    if commits.is_empty() {
        return;
    }
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in &commits {
        if let Err(err) = list.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
            warn!(%err, topic, partition, "kafka: bad offset to commit");
        }
    }
    match consumer.commit(&list, mode) {
        Ok(()) => debug!(partitions = commits.len(), "kafka offsets committed"),
        // Lost partitions cannot be committed; their records come again: duplicates, not loss.
        Err(err) => warn!(%brokers, %err, "kafka: could not commit offsets; records after the last commit will be read again"),
    }
}

#[async_trait]
impl Source for KafkaSource {
    async fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()> {
        let KafkaSource { consumer, topics, brokers, commit_interval, mut revoked } = *self;
        let topic_names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topic_names).map_err(|err| anyhow::anyhow!("kafka {brokers}: cannot subscribe to {topics:?}: {err}"))?;
        info!(source = %ctx.name, %brokers, ?topics, "kafka consumer subscribed");
        ctx.ready.send_replace(true);
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<(Partition, i64, AckOutcome)>();
        let mut tracker = OffsetTracker::default();
        let mut ticker = tokio::time::interval(commit_interval);
        let mut backoff = Backoff::default();
        let messages_in = metrics::counter!(weir_core::metric_names::SOURCE_MESSAGES, "source" => ctx.name.to_string());
        // A record is read only with room in the in-flight window; acknowledgements and
        // commits go on while the window is full or the topic is quiet.
        let mut room = None;
        loop {
            tokio::select! {
                () = ctx.shutdown.cancelled() => break,
                Some((partition, offset, outcome)) = ack_rx.recv() => {
                    if outcome == AckOutcome::Accepted {
                        tracker.accepted(&partition, offset);
                    }
                }
                Some(lost) = revoked.recv() => {
                    for partition in &lost {
                        tracker.forget(partition);
                    }
                }
                _ = ticker.tick() => commit(&consumer, &brokers, &mut tracker, CommitMode::Async),
                permit = ctx.reserve(), if room.is_none() => match permit {
                    Some(permit) => room = Some(permit),
                    None => break,
                },
                record = consumer.recv(), if room.is_some() => {
                    let record = match record {
                        Ok(record) => record,
                        Err(err) => {
                            let delay = backoff.next_delay();
                            warn!(source = %ctx.name, %brokers, %err, retry_in = ?delay, "kafka consumer error; is the broker reachable?");
                            tokio::time::sleep(delay).await;
                            continue;
                        }
                    };
                    backoff.reset();
                    messages_in.increment(1);
                    let partition: Partition = (record.topic().to_owned(), record.partition());
                    let offset = record.offset();
                    tracker.received(&partition, offset);
                    // A large record waits for room for its bytes (the byte budget).
                    let Ok(bytes) = ctx.reserve_payload(record.payload().map_or(0, <[u8]>::len)).await else { break };
                    let tx = ack_tx.clone();
                    let ack = Ack::with_permits(move |outcome| { let _ = tx.send((partition, offset, outcome)); }, [room.take(), bytes]);
                    if !ctx.hand_on(to_message(&record, &ctx.name, ack)).await {
                        break;
                    }
                }
            }
        }
        drop(room);
        // Let what is in flight be accepted (an acknowledgement is sent before its window
        // permit is returned), then commit it, so a restart does not read it again.
        let deadline = tokio::time::Instant::now() + ctx.drain_timeout;
        while !ctx.drained() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        while let Ok((partition, offset, outcome)) = ack_rx.try_recv() {
            if outcome == AckOutcome::Accepted {
                tracker.accepted(&partition, offset);
            }
        }
        commit(&consumer, &brokers, &mut tracker, CommitMode::Sync);
        info!(source = %ctx.name, unaccepted = tracker.in_flight(), "kafka consumer stopped");
        Ok(())
    }
}
