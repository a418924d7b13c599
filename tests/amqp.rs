//! The AMQP sink and source against a real RabbitMQ, with lapin as the independent client
//! that declares the topology, reads what weir published and publishes what weir consumes.
//! - sink: routing keys from the topic, payloads, headers and properties as sent; an
//!   unroutable message goes to `$deadletter` with the reason;
//! - source: every message reaches the local broker with its properties, and is
//!   acknowledged only once a sink accepted it: with the sink down, nothing is acked and the
//!   queue still holds everything after weir stops; once the sink is back, all of it arrives.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures_util::StreamExt as _;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use weir_tests::{Mosquitto, RabbitMq, RunningPipeline, Subscriber, publish_v5, sorted_topics, source_test_pipeline, user_properties};

async fn channel(rabbit: &RabbitMq) -> (Connection, Channel) {
    let connection = Connection::connect(&rabbit.url(), ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    (connection, channel)
}

async fn declare_queue(channel: &Channel, queue: &str) {
    channel.queue_declare(queue.into(), QueueDeclareOptions { durable: true, ..Default::default() }, FieldTable::default()).await.unwrap();
}

/// (ready, unacknowledged) messages of `queue`, as `rabbitmqctl list_queues` reports them.
fn queue_counts(rabbit: &RabbitMq, queue: &str) -> (u32, u32) {
    let output = rabbit.ctl(&["list_queues", "--quiet", "--no-table-headers", "name", "messages_ready", "messages_unacknowledged"]);
    assert!(output.status.success(), "rabbitmqctl list_queues: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let line = text.lines().find(|line| line.split_whitespace().next() == Some(queue)).unwrap_or_else(|| panic!("no queue `{queue}` in:\n{text}"));
    let numbers: Vec<u32> = line.split_whitespace().skip(1).map(|n| n.parse().unwrap()).collect();
    (numbers[0], numbers[1])
}

fn header(properties: &BasicProperties, name: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(text) => Some(text.to_string()),
        other => Some(format!("{other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_publishes_with_routing_keys_headers_and_properties() {
    let rabbit = RabbitMq::start();
    let local = Mosquitto::start();
    let (_connection, channel) = channel(&rabbit).await;
    channel
        .exchange_declare("telemetry".into(), ExchangeKind::Topic, ExchangeDeclareOptions { durable: true, ..Default::default() }, FieldTable::default())
        .await
        .unwrap();
    declare_queue(&channel, "plant").await;
    channel.queue_bind("plant".into(), "telemetry".into(), "plant.#".into(), QueueBindOptions::default(), FieldTable::default()).await.unwrap();

    let toml = format!(
        r#"
upstream = "rabbit"
[broker]
url = "mqtt://127.0.0.1:{local}"
[sinks.rabbit]
type = "amqp"
connection = {{ url = "{url}" }}
exchange = "telemetry"
queue = false
[routes]
up = "FROM /topics/+/+/telemetry INTO $upstream"
"#,
        local = local.port,
        url = rabbit.url(),
    );
    let mut dead = Subscriber::connect(local.port, &["weir/deadletter"]).await;
    let pipeline = RunningPipeline::start(&toml).await;
    let messages: Vec<_> = (0..20)
        .map(|i| {
            let properties = PublishProperties {
                user_properties: vec![("machine".into(), format!("m{}", i % 3))],
                content_type: Some("application/json".into()),
                correlation_data: Some(format!("req-{i}").into()),
                response_topic: Some("replies/plant".into()),
                ..Default::default()
            };
            (format!("plant/m{}/telemetry", i % 3), format!("{{\"seq\":{i}}}").into_bytes(), properties)
        })
        .collect();
    publish_v5(local.port, messages).await;

    let mut consumer = channel.basic_consume("plant".into(), "reader".into(), BasicConsumeOptions::default(), FieldTable::default()).await.unwrap();
    for i in 0..20 {
        let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next()).await.unwrap_or_else(|_| panic!("{i} of 20 read")).unwrap().unwrap();
        assert_eq!(String::from_utf8_lossy(&delivery.data), format!("{{\"seq\":{i}}}"));
        assert_eq!(delivery.routing_key.as_str(), format!("plant.m{}.telemetry", i % 3));
        let properties = &delivery.properties;
        assert_eq!(header(properties, "machine"), Some(format!("m{}", i % 3)));
        assert_eq!(header(properties, "mqtt-topic"), Some(format!("plant/m{}/telemetry", i % 3)));
        assert_eq!(properties.content_type().as_ref().map(|c| c.to_string()), Some("application/json".into()));
        assert_eq!(properties.correlation_id().as_ref().map(|c| c.to_string()), Some(format!("req-{i}")));
        assert_eq!(properties.reply_to().as_ref().map(|c| c.to_string()), Some("replies/plant".into()));
        assert_eq!(properties.delivery_mode(), &Some(2), "persistent");
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }

    // No queue is bound for `hall.*`: the broker returns it (mandatory) and it is dead-lettered.
    publish_v5(local.port, vec![("hall/m1/telemetry".into(), b"{}".to_vec(), PublishProperties::default())]).await;
    let letter = dead.take(1, Duration::from_secs(30)).await;
    let properties = user_properties(&letter[0]);
    assert!(properties.contains(&("weir-dl-reason".into(), "sink-rejected".into())), "{properties:?}");
    assert!(properties.iter().any(|(k, v)| k == "weir-dl-detail" && v.contains("unroutable") && v.contains("hall.m1.telemetry")), "{properties:?}");
    pipeline.stop().await.unwrap();
}

fn source_pipeline(rabbit: &RabbitMq, local: u16, cloud: u16) -> String {
    source_test_pipeline(local, cloud, &format!("type = \"amqp\"\nconnection = {{ url = \"{}\" }}\nqueue = \"commands\"", rabbit.url()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_acknowledges_only_what_a_sink_accepted() {
    let rabbit = RabbitMq::start();
    let local = Mosquitto::start();
    let mut cloud = Mosquitto::start();
    cloud.stop();
    let cloud_port = cloud.port;
    let (_connection, channel) = channel(&rabbit).await;
    declare_queue(&channel, "commands").await;
    // Published to the default exchange, the routing key is the queue's name; the topic
    // comes from the `mqtt-topic` header, as weir's own AMQP sink writes it.
    let mut seen = Subscriber::connect(local.port, &["from-source/#"]).await;

    // The cloud broker is down: the local route accepts, the upstream cannot, so nothing is acked.
    let pipeline = RunningPipeline::start(&source_pipeline(&rabbit, local.port, cloud_port)).await;
    for i in 0..10 {
        let mut headers = FieldTable::default();
        headers.insert("mqtt-topic".into(), AMQPValue::LongString(format!("edge/cmd{i}").into()));
        headers.insert("machine".into(), AMQPValue::LongString(format!("m{i}").into()));
        let properties = BasicProperties::default().with_headers(headers).with_content_type("application/json".into());
        channel
            .basic_publish("".into(), "commands".into(), BasicPublishOptions::default(), format!("{{\"command\":{i}}}").as_bytes(), properties)
            .await
            .unwrap();
    }
    let local_copies = seen.take(10, Duration::from_secs(30)).await;
    for publish in &local_copies {
        let topic = String::from_utf8_lossy(&publish.topic).into_owned();
        let i: usize = topic.trim_start_matches("from-source/cmd").parse().unwrap();
        assert_eq!(String::from_utf8_lossy(&publish.payload), format!("{{\"command\":{i}}}"));
        assert!(user_properties(publish).contains(&("machine".into(), format!("m{i}"))), "{:?}", user_properties(publish));
        assert_eq!(publish.properties.as_ref().and_then(|p| p.content_type.clone()), Some("application/json".into()));
    }
    assert_eq!(queue_counts(&rabbit, "commands"), (0, 10), "all 10 delivered to weir and none acknowledged");
    pipeline.stop().await.unwrap();
    // Not acknowledged, so requeued when weir let go: nothing lost.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while queue_counts(&rabbit, "commands") != (10, 0) {
        assert!(tokio::time::Instant::now() < deadline, "not all 10 back in the queue: {:?}", queue_counts(&rabbit, "commands"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The cloud is back: every command arrives there and the queue drains.
    cloud.start_again();
    let mut upstream = Subscriber::connect(cloud.port, &["edge/#"]).await;
    let pipeline = RunningPipeline::start(&source_pipeline(&rabbit, local.port, cloud_port)).await;
    let topics = sorted_topics(&upstream.take(10, Duration::from_secs(30)).await);
    let mut expected: Vec<String> = (0..10).map(|i| format!("edge/cmd{i}")).collect();
    expected.sort();
    assert_eq!(topics, expected);
    // The local copies went out again too (the first run's were not acknowledged).
    seen.take(10, Duration::from_secs(30)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while queue_counts(&rabbit, "commands") != (0, 0) {
        assert!(tokio::time::Instant::now() < deadline, "not everything acknowledged: {:?}", queue_counts(&rabbit, "commands"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    pipeline.stop().await.unwrap();
    assert_eq!(queue_counts(&rabbit, "commands"), (0, 0), "nothing requeued at shutdown");
}
