//! At-least-once without a queue (`queue = false`): a QoS 1 message is acknowledged to the
//! broker only after every sink it was routed to accepted it. With the upstream down, weir
//! keeps the messages unacknowledged; after a restart with the upstream back, the local
//! broker redelivers them and all of them arrive. (With a queue, see store_and_forward.rs.)
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::PublishProperties;
use weir_tests::{Mosquitto, RunningPipeline, Subscriber, free_port, publish_v5};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_wait_unacknowledged_while_the_upstream_is_down() {
    let local = Mosquitto::start();
    let cloud_port = free_port();
    let toml = format!(
        r#"
upstream = "cloud"

[broker]
url = "mqtt://127.0.0.1:{local}"
client_id = "weir-delivery-test"
clean_session = false

[runtime]
drain_timeout = "1s"
in_flight = 16

[sinks.cloud]
type = "mqtt"
queue = false
topic = "cloud/{{topic}}"
connection = {{ url = "mqtt://127.0.0.1:{cloud_port}", client_id = "weir-delivery-cloud" }}

[routes]
up = "FROM /topics/data/# INTO $upstream"
"#,
        local = local.port,
    );

    // The cloud broker is not running: weir takes messages but cannot hand them on.
    let pipeline = RunningPipeline::start(&toml).await;
    let messages: Vec<_> = (0..40).map(|i| (format!("data/{i}"), format!("reading {i}").into_bytes(), PublishProperties::default())).collect();
    publish_v5(local.port, messages).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    pipeline.stop().await.unwrap();

    // The cloud comes up; weir restarts with the same persistent session and the local
    // broker redelivers everything weir never acknowledged.
    let cloud = Mosquitto::start_with(cloud_port, "allow_anonymous true\n");
    let mut received = Subscriber::connect(cloud.port, &["cloud/#"]).await;
    let pipeline = RunningPipeline::start(&toml).await;
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < 40 {
        let publish =
            tokio::time::timeout_at(deadline, received.next()).await.unwrap_or_else(|_| panic!("only {} of 40 arrived: {seen:?}", seen.len())).unwrap();
        seen.insert(String::from_utf8(publish.payload.to_vec()).unwrap());
    }
    assert_eq!(seen, (0..40).map(|i| format!("reading {i}")).collect());
    pipeline.stop().await.unwrap();
}
