//! The Kafka sink against tansu (a Kafka-compatible broker), read back with an independent
//! rdkafka consumer: payloads, keys and headers arrive as sent; a message over
//! `max_message_bytes` goes to `$deadletter` with the reason.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message as _};
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use weir_tests::{Mosquitto, RunningPipeline, Subscriber, Tansu, publish_v5, user_properties};

async fn create_topic(tansu: &Tansu, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", tansu.bootstrap()).create().unwrap();
    let results = admin.create_topics(&[NewTopic::new(topic, 1, TopicReplication::Fixed(1))], &AdminOptions::new()).await.unwrap();
    for result in results {
        result.unwrap();
    }
}

/// (key, payload, headers) of the first `n` records of `topic`.
async fn consume(tansu: &Tansu, topic: &str, n: usize) -> Vec<(String, String, BTreeMap<String, String>)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", tansu.bootstrap())
        .set("group.id", "weir-test-reader")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut records = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while records.len() < n {
        let message = tokio::time::timeout_at(deadline, consumer.recv()).await.unwrap_or_else(|_| panic!("{} of {n} records read", records.len())).unwrap();
        let key = message.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
        let payload = message.payload().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default();
        let headers = message
            .headers()
            .map(|headers| headers.iter().map(|h| (h.key.to_owned(), h.value.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default())).collect())
            .unwrap_or_default();
        records.push((key, payload, headers));
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_keys_and_headers_arrive_as_sent() {
    let local = Mosquitto::start();
    let tansu = Tansu::start();
    create_topic(&tansu, "telemetry").await;
    let toml = format!(
        r#"
upstream = "events"
[broker]
url = "mqtt://127.0.0.1:{local}"
[sinks.events]
type = "kafka"
brokers = "{brokers}"
topic = "telemetry"
key = "{{property:machine}}"
max_message_bytes = 1000
queue = false
[routes]
up = "FROM /topics/plant/# INTO $upstream"
"#,
        local = local.port,
        brokers = tansu.bootstrap(),
    );
    let mut dead = Subscriber::connect(local.port, &["weir/deadletter"]).await;
    let pipeline = RunningPipeline::start(&toml).await;
    let messages: Vec<_> = (0..20)
        .map(|i| {
            let properties = PublishProperties { user_properties: vec![("machine".into(), format!("m{}", i % 3))], ..Default::default() };
            (format!("plant/m{}/telemetry", i % 3), format!("{{\"seq\":{i}}}").into_bytes(), properties)
        })
        .collect();
    publish_v5(local.port, messages).await;
    let records = consume(&tansu, "telemetry", 20).await;
    for (i, (key, payload, headers)) in records.iter().enumerate() {
        assert_eq!(payload, &format!("{{\"seq\":{i}}}"));
        assert_eq!(key, &format!("m{}", i % 3));
        assert_eq!(headers.get("machine"), Some(&format!("m{}", i % 3)));
        assert_eq!(headers.get("mqtt-topic"), Some(&format!("plant/m{}/telemetry", i % 3)));
    }

    // Too big for max_message_bytes: dead-lettered with the reason, not dropped.
    publish_v5(local.port, vec![("plant/m9/telemetry".into(), vec![b'x'; 2000], PublishProperties::default())]).await;
    let letter = dead.take(1, Duration::from_secs(30)).await;
    let properties = user_properties(&letter[0]);
    assert!(properties.contains(&("weir-dl-reason".into(), "sink-rejected".into())), "{properties:?}");
    assert!(properties.iter().any(|(k, v)| k == "weir-dl-detail" && v.contains("max_message_bytes")), "{properties:?}");
    pipeline.stop().await.unwrap();
}
