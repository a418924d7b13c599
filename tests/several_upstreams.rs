//! Several cloud upstreams in one pipeline, each against its real server: telemetry to Kafka
//! (tansu), every reading archived to blob storage (Azurite), alarms to RabbitMQ. Then
//! RabbitMQ goes away: the other two keep flowing (each sink has its own queue and worker).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures_util::StreamExt as _;
use lapin::options::{BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use weir_tests::{Azurite, Mosquitto, RabbitMq, RunningPipeline, Tansu, publish_v5};

fn readings(range: std::ops::Range<usize>, kind: &str) -> Vec<(String, Vec<u8>, PublishProperties)> {
    range.map(|i| (format!("factory/m{}/{kind}", i % 4), format!("{{\"seq\":{i}}}").into_bytes(), PublishProperties::default())).collect()
}

/// Lines in every blob of the container, once there are at least `n`.
async fn archived_lines(azurite: &Azurite, n: usize) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let lines: usize = azurite.blobs("raw").values().map(|text| text.lines().count()).sum();
        if lines >= n {
            return lines;
        }
        assert!(tokio::time::Instant::now() < deadline, "{lines} of {n} lines archived");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_blob_and_amqp_upstreams_in_one_pipeline() {
    let local = Mosquitto::start();
    let tansu = Tansu::start();
    tansu.create_topic("telemetry").await;
    let azurite = Azurite::start();
    azurite.create_container("raw");
    let rabbit = RabbitMq::start();
    let connection = Connection::connect(&rabbit.url(), ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    channel.exchange_declare("alarms".into(), ExchangeKind::Topic, durable, FieldTable::default()).await.unwrap();
    channel.queue_declare("alarms".into(), QueueDeclareOptions { durable: true, ..Default::default() }, FieldTable::default()).await.unwrap();
    channel.queue_bind("alarms".into(), "alarms".into(), "#".into(), QueueBindOptions::default(), FieldTable::default()).await.unwrap();
    let mut alarms = channel
        .basic_consume("alarms".into(), "reader".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, FieldTable::default())
        .await
        .unwrap();

    weir_tests::set_test_env("WEIR_TEST_AZURITE_KEY", weir_tests::AZURITE_KEY);
    let toml = format!(
        r#"
upstream = "eventhubs"
[broker]
url = "mqtt://127.0.0.1:{local}"
[store]
dir = "queues"
[sinks.eventhubs]
type = "kafka"
connection = {{ brokers = "{brokers}" }}
topic = "telemetry"
[sinks.archive]
type = "blob"
url = "az://raw/plant-7"
account = "devstoreaccount1"
access_key = {{ env = "WEIR_TEST_AZURITE_KEY" }}
endpoint = "{blob}"
max_age_secs = 0.3
queue = true
[sinks.rabbit]
type = "amqp"
connection = {{ url = "{amqp}" }}
exchange = "alarms"
queue = true
[routes]
telemetry = "FROM /topics/factory/+/telemetry INTO $upstream"
archive = "FROM /topics/factory/# INTO archive"
alarms = {{ route = "FROM /topics/factory/+/alarm INTO rabbit", priority = 0 }}
"#,
        local = local.port,
        brokers = tansu.bootstrap(),
        blob = azurite.endpoint(),
        amqp = rabbit.url(),
    );
    let pipeline = RunningPipeline::start(&toml).await;
    publish_v5(local.port, readings(0..20, "telemetry")).await;
    publish_v5(local.port, readings(0..5, "alarm")).await;

    assert_eq!(tansu.read("telemetry", 20).await.len(), 20);
    assert_eq!(archived_lines(&azurite, 25).await, 25);
    for i in 0..5 {
        let delivery = tokio::time::timeout(Duration::from_secs(30), alarms.next()).await.unwrap_or_else(|_| panic!("{i} of 5 alarms")).unwrap().unwrap();
        assert_eq!(delivery.routing_key.as_str(), format!("factory.m{}.alarm", i % 4));
    }

    // RabbitMQ goes away; Kafka and the archive do not wait for it.
    drop(alarms);
    drop(channel);
    drop(connection);
    drop(rabbit);
    publish_v5(local.port, readings(20..30, "telemetry")).await;
    publish_v5(local.port, readings(5..7, "alarm")).await;
    assert_eq!(tansu.read("telemetry", 30).await.len(), 30);
    assert_eq!(archived_lines(&azurite, 37).await, 37);
    pipeline.stop().await.unwrap();
}
