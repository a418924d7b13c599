//! The Kafka sink and source against tansu (a Kafka-compatible broker), with rdkafka as the
//! independent client: the sink's payloads, keys and headers arrive as sent, a message over
//! `max_message_bytes` goes to `$deadletter` with the reason; the source commits only what
//! its sinks accepted.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::Consumer;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use weir_tests::{Mosquitto, RunningPipeline, Subscriber, Tansu, publish_v5, sorted_topics, source_test_pipeline, user_properties};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_keys_and_headers_arrive_as_sent() {
    let local = Mosquitto::start();
    let tansu = Tansu::start();
    tansu.create_topic("telemetry").await;
    let toml = format!(
        r#"
upstream = "events"
[broker]
url = "mqtt://127.0.0.1:{local}"
[sinks.events]
type = "kafka"
connection = {{ brokers = "{brokers}" }}
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
    let records = tansu.read("telemetry", 20).await;
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

fn source_pipeline(tansu: &Tansu, local: u16, cloud: u16) -> String {
    let source = format!(
        "type = \"kafka\"\nconnection = {{ brokers = \"{}\" }}\ntopics = [\"commands\"]\ngroup = \"weir-edge\"\nstart_from = \"earliest\"\ncommit_interval_ms = 200",
        tansu.bootstrap()
    );
    source_test_pipeline(local, cloud, &source)
}

/// The offsets group `weir-edge` has committed on `commands`, summed over partitions.
fn committed(tansu: &Tansu) -> i64 {
    let consumer: rdkafka::consumer::BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", tansu.bootstrap()).set("group.id", "weir-edge").create().unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    list.add_partition("commands", 0);
    let offsets = consumer.committed_offsets(list, Duration::from_secs(10)).unwrap();
    offsets.elements().iter().map(|e| e.offset().to_raw().unwrap_or(0).max(0)).sum()
}

/// The Kafka source: records reach the pipeline with their headers as properties (and the
/// `mqtt-topic` header as the topic); an offset is committed only once every sink accepted
/// the record: with the upstream down nothing is committed, and after a restart with the
/// upstream back every record arrives there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_commits_only_what_a_sink_accepted() {
    let local = Mosquitto::start();
    let mut cloud = Mosquitto::start();
    cloud.stop();
    let tansu = Tansu::start();
    tansu.create_topic("commands").await;
    let producer: rdkafka::producer::FutureProducer = ClientConfig::new().set("bootstrap.servers", tansu.bootstrap()).create().unwrap();
    for i in 0..10 {
        let headers = rdkafka::message::OwnedHeaders::new()
            .insert(rdkafka::message::Header { key: "mqtt-topic", value: Some(format!("edge/cmd{i}").as_bytes()) })
            .insert(rdkafka::message::Header { key: "machine", value: Some(format!("m{i}").as_bytes()) });
        let payload = format!("{{\"command\":{i}}}");
        let key = format!("m{i}");
        let record = rdkafka::producer::FutureRecord::to("commands").payload(&payload).key(&key).headers(headers);
        producer.send(record, Duration::from_secs(10)).await.map_err(|(err, _)| err).unwrap();
    }

    let mut seen = Subscriber::connect(local.port, &["from-source/#"]).await;
    let pipeline = RunningPipeline::start(&source_pipeline(&tansu, local.port, cloud.port)).await;
    for publish in seen.take(10, Duration::from_secs(60)).await {
        let topic = String::from_utf8_lossy(&publish.topic).into_owned();
        let i: usize = topic.trim_start_matches("from-source/cmd").parse().unwrap();
        assert_eq!(String::from_utf8_lossy(&publish.payload), format!("{{\"command\":{i}}}"));
        let properties = user_properties(&publish);
        assert!(properties.contains(&("machine".into(), format!("m{i}"))), "{properties:?}");
        assert!(properties.contains(&("kafka-key".into(), format!("m{i}"))), "{properties:?}");
    }
    // The local copies are out, the upstream ones cannot be: nothing may be committed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    pipeline.stop().await.unwrap();
    assert_eq!(committed(&tansu), 0, "offsets committed for records the upstream never accepted");

    cloud.start_again();
    let mut upstream = Subscriber::connect(cloud.port, &["edge/#"]).await;
    let pipeline = RunningPipeline::start(&source_pipeline(&tansu, local.port, cloud.port)).await;
    let topics = sorted_topics(&upstream.take(10, Duration::from_secs(60)).await);
    let mut expected: Vec<String> = (0..10).map(|i| format!("edge/cmd{i}")).collect();
    expected.sort();
    assert_eq!(topics, expected);
    seen.take(10, Duration::from_secs(30)).await;
    // Committed while running (every 200 ms), not only at shutdown.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while committed(&tansu) != 10 {
        assert!(tokio::time::Instant::now() < deadline, "committed {} of 10", committed(&tansu));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    pipeline.stop().await.unwrap();
    assert_eq!(committed(&tansu), 10);
}
