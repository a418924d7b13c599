//! Connector sinks beside the bare client doing the same job, in one run against the same
//! local servers (`cargo bench -p weir-tests --bench connector_sinks`):
//!
//! - kafka: weir's Kafka sink (`deliver` of batches, as the sink worker calls it: 64 is the
//!   runtime's default batch, 4096 what the Kafka sink asks for under load) against a
//!   bare rdkafka `FutureProducer` built from the very same settings, sending the same
//!   records (key and headers) all at once and then awaiting every delivery; tansu on
//!   loopback. Target ≥ 0.7×.
//! - blob: weir's blob sink (JSON Lines built from the messages, one object per batch)
//!   against `object_store` putting the same bytes as one object each; Azurite on
//!   loopback. Target ≥ 0.9×.
//!
//! Each figure is the median of 3 rounds; the rounds of the two sides alternate so that
//! the shared machine's noise hits both. Results and method: `docs/benchmarks.md`.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use weir_connectors::blob::{BlobConfig, BlobSink};
use weir_connectors::kafka::{KafkaConfig, KafkaSink};
use weir_core::{Ack, BuildContext, Message, Metadata, Property, SinkKind};
use weir_tests::{Azurite, Tansu};

const PAYLOAD: usize = 256;

fn messages(n: usize) -> Vec<Message> {
    (0..n)
        .map(|i| {
            let mut meta = Metadata::new("bench".into(), format!("plant/m{}/telemetry", i % 16));
            meta.properties.push(Property::new("machine", format!("m{}", i % 16)));
            let mut body = format!("{{\"seq\":{i},\"temperature\":71.5,\"pad\":\"");
            body.push_str(&"x".repeat(PAYLOAD.saturating_sub(body.len() + 2)));
            body.push_str("\"}");
            Message::new(body.into_bytes(), meta, Ack::none())
        })
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn context() -> BuildContext {
    BuildContext { name: "bench".into(), base_dir: std::env::temp_dir(), max_message_bytes: 16 << 20 }
}

async fn kafka(tansu: &Tansu, n: usize, batch: usize) -> (f64, f64) {
    let (weir_topic, bare_topic) = (format!("bench-weir-{batch}"), format!("bench-bare-{batch}"));
    tansu.create_topic(&weir_topic).await;
    tansu.create_topic(&bare_topic).await;
    let config = |topic: &str| -> KafkaConfig {
        toml::from_str(&format!("connection = {{ brokers = \"{}\" }}\ntopic = \"{topic}\"\nkey = \"{{property:machine}}\"", tansu.bootstrap())).unwrap()
    };
    let messages = messages(n);
    let mut sink = KafkaSink::build(config(&weir_topic), &context()).await.unwrap();
    let (settings, _) = config(&bare_topic).client_settings(&std::env::temp_dir()).unwrap();
    let producer: FutureProducer = weir_connectors::kafka::client_config(&settings).create().unwrap();
    let (mut weir, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let started = Instant::now();
        for chunk in messages.chunks(batch) {
            sink.deliver(chunk).await.unwrap();
        }
        weir.push(n as f64 / started.elapsed().as_secs_f64());

        let started = Instant::now();
        let mut deliveries = Vec::with_capacity(n);
        for message in &messages {
            // The same record weir makes: key, the property and the topic as headers.
            let meta = message.meta();
            let key = meta.property("machine").unwrap_or("");
            let headers =
                OwnedHeaders::new().insert(Header { key: "machine", value: Some(key) }).insert(Header { key: "mqtt-topic", value: Some(meta.topic.as_str()) });
            let record = FutureRecord::to(&bare_topic).payload(&message.payload[..]).key(key).headers(headers);
            deliveries.push(producer.send_result(record).map_err(|(err, _)| err).unwrap());
        }
        for delivery in deliveries {
            delivery.await.unwrap().map_err(|(err, _)| err).unwrap();
        }
        bare.push(n as f64 / started.elapsed().as_secs_f64());
    }
    (median(weir), median(bare))
}

async fn blob(azurite: &Azurite, objects: usize, per_object: usize) -> (f64, f64) {
    azurite.create_container("bench");
    let toml = format!(
        "url = \"az://bench/weir\"\naccount = \"devstoreaccount1\"\naccess_key = {{ env = \"WEIR_BENCH_AZURITE_KEY\" }}\nendpoint = \"{}\"",
        azurite.endpoint()
    );
    weir_tests::set_test_env("WEIR_BENCH_AZURITE_KEY", weir_tests::AZURITE_KEY);
    let config: BlobConfig = toml::from_str(&toml).unwrap();
    let mut sink = BlobSink::build(config, &context()).await.unwrap();
    let store = object_store::azure::MicrosoftAzureBuilder::new()
        .with_account("devstoreaccount1")
        .with_access_key(weir_tests::AZURITE_KEY)
        .with_container_name("bench")
        .with_endpoint(azurite.endpoint())
        .with_allow_http(true)
        .build()
        .unwrap();
    let batches: Vec<Vec<Message>> = (0..objects).map(|_| messages(per_object)).collect();
    // The bare side puts exactly the bytes the sink would write.
    let bodies: Vec<Vec<u8>> = batches
        .iter()
        .map(|batch| {
            let mut body = Vec::new();
            weir_connectors::lines::write_lines(&mut body, batch, weir_connectors::lines::LineFormat::Jsonl).unwrap();
            body
        })
        .collect();
    let total = (objects * per_object) as f64;
    let (mut weir, mut bare) = (Vec::new(), Vec::new());
    for round in 0..3 {
        let started = Instant::now();
        for batch in &batches {
            sink.deliver(batch).await.unwrap();
        }
        weir.push(total / started.elapsed().as_secs_f64());

        let started = Instant::now();
        for (i, body) in bodies.iter().enumerate() {
            let path = object_store::path::Path::from(format!("bare/{round}-{i}.jsonl"));
            object_store::ObjectStoreExt::put(&store, &path, body.clone().into()).await.unwrap();
        }
        bare.push(total / started.elapsed().as_secs_f64());
    }
    (median(weir), median(bare))
}

fn main() {
    // `cargo test --benches` runs this with `--bench`-less arguments too: only measure when asked.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let tansu = Tansu::start();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = 50_000;
        println!("kafka sink vs bare rdkafka producer: {n} messages of {PAYLOAD} B, acks=all, idempotent, lz4, linger 0 (the defaults), tansu (memory)");
        for batch in [64, 1024, 4096] {
            let (weir, bare) = kafka(&tansu, n, batch).await;
            println!("  batch {batch:>5}: weir {weir:>10.0} msg/s   bare {bare:>10.0} msg/s   ratio {:.2}", weir / bare);
        }
        drop(tansu);

        let azurite = Azurite::start();
        let (objects, per_object) = (20, 5_000);
        println!("blob sink vs object_store put of the same bytes: {objects} objects of {per_object} messages ({PAYLOAD} B payloads, JSON Lines), Azurite");
        let (weir, bare) = blob(&azurite, objects, per_object).await;
        println!("  weir {weir:>10.0} msg/s   bare {bare:>10.0} msg/s   ratio {:.2}", weir / bare);
    });
}
