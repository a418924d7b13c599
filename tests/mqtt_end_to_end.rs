//! End to end through a real Mosquitto: an MQTT 5 client publishes telemetry with user
//! properties and a content type; weir filters (WASM) and maps (WASM); subscribers receive
//! exactly the expected messages, with their metadata, in order per topic. Also MQTT 3.1.1,
//! QoS 0 and 2, weir reaching the broker through a Unix domain socket, and the MQTT sink on its
//! own (rejected topics, batches larger than its request channel).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use weir_tests::{Mosquitto, RunningPipeline, Subscriber, module, publish_v5, relay_pipeline, toml_path, user_properties, wait_for_lines};

fn reading(machine: &str, seq: u32, temperature: f64) -> (String, Vec<u8>, PublishProperties) {
    let properties = PublishProperties {
        content_type: Some("application/vnd.factory+json".into()),
        user_properties: vec![("machine".into(), machine.into()), ("seq".into(), seq.to_string())],
        correlation_data: Some(Bytes::from(format!("corr-{seq}"))),
        response_topic: Some(format!("replies/{machine}")),
        message_expiry_interval: Some(3600),
        ..PublishProperties::default()
    };
    let body = serde_json::json!({ "machine": machine, "seq": seq, "temperature": temperature });
    (format!("factory/{machine}/telemetry"), body.to_string().into_bytes(), properties)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_and_map_through_mosquitto_keep_metadata_and_order() {
    let broker = Mosquitto::start();
    let toml = format!(
        r#"
upstream = "archive"

[broker]
url = "mqtt://127.0.0.1:{port}"

[modules.hot]
path = {threshold}
config = {{ field = "temperature", limit = 70.0 }}

[modules.shape]
path = {json_map}
config = {{ rename = {{ temperature = "celsius" }}, add = {{ unit = "C" }} }}

[sinks.archive]
type = "file"
path = "upstream.jsonl"

[routes]
in = 'FROM /topics/factory/+/telemetry INTO BrokeredEndpoint("/modules/hot/inputs/readings")'
kept = 'FROM /messages/modules/hot/outputs/* INTO /topics/kept/{{$topic[1]}}'
shape = 'FROM /messages/modules/hot/outputs/out INTO BrokeredEndpoint("/modules/shape/inputs/hot")'
alerts = 'FROM /messages/modules/shape/outputs/* INTO /topics/alerts/{{$body.machine}}'
upstream = {{ route = 'FROM /messages/modules/shape/outputs/* WHERE $body.celsius > 90 INTO $upstream', priority = 1 }}
"#,
        port = broker.port,
        threshold = toml_path(&module("threshold")),
        json_map = toml_path(&module("json_map")),
    );
    let pipeline = RunningPipeline::start(&toml).await;
    let mut kept = Subscriber::connect(broker.port, &["kept/#"]).await;
    let mut alerts = Subscriber::connect(broker.port, &["alerts/#"]).await;

    // 60 readings from two machines; temperature 50..109 so exactly those > 70 pass.
    let readings: Vec<_> = (0..60u32).map(|seq| reading(if seq % 2 == 0 { "m1" } else { "m2" }, seq, 50.0 + f64::from(seq))).collect();
    let expected: Vec<u32> = (0..60u32).filter(|seq| 50.0 + f64::from(*seq) > 70.0).collect();
    publish_v5(broker.port, readings).await;

    let got = kept.take(expected.len(), Duration::from_secs(20)).await;
    kept.assert_quiet(Duration::from_millis(500)).await;
    for machine in ["m1", "m2"] {
        let seqs: Vec<u32> = got
            .iter()
            .filter(|p| p.topic == format!("kept/{machine}").as_bytes())
            .map(|p| serde_json::from_slice::<serde_json::Value>(&p.payload).unwrap()["seq"].as_u64().unwrap() as u32)
            .collect();
        let wanted: Vec<u32> = expected.iter().copied().filter(|s| (s % 2 == 0) == (machine == "m1")).collect();
        assert_eq!(seqs, wanted, "kept messages of {machine} in publish order");
    }
    // A filter passes the message through untouched: payload and every MQTT 5 property.
    for publish in &got {
        let body: serde_json::Value = serde_json::from_slice(&publish.payload).unwrap();
        let seq = body["seq"].as_u64().unwrap();
        let props = publish.properties.as_ref().expect("MQTT 5 properties forwarded");
        assert_eq!(props.content_type.as_deref(), Some("application/vnd.factory+json"));
        assert_eq!(props.correlation_data.as_deref(), Some(format!("corr-{seq}").as_bytes()));
        assert_eq!(props.response_topic.as_deref(), Some(format!("replies/{}", body["machine"].as_str().unwrap()).as_str()));
        assert_eq!(props.message_expiry_interval.map(|e| e <= 3600), Some(true));
        assert_eq!(user_properties(publish), vec![("machine".to_owned(), body["machine"].as_str().unwrap().to_owned()), ("seq".to_owned(), seq.to_string())]);
    }

    // The map reshaped the body, set its content type, and kept the user properties.
    let mapped = alerts.take(expected.len(), Duration::from_secs(20)).await;
    alerts.assert_quiet(Duration::from_millis(500)).await;
    for publish in &mapped {
        let body: serde_json::Value = serde_json::from_slice(&publish.payload).unwrap();
        assert_eq!(publish.topic, format!("alerts/{}", body["machine"].as_str().unwrap()).as_bytes());
        assert_eq!(body["unit"], "C");
        assert!(body.get("temperature").is_none() && body["celsius"].as_f64().unwrap() > 70.0, "{body}");
        assert_eq!(publish.properties.as_ref().unwrap().content_type.as_deref(), Some("application/json"));
        assert_eq!(user_properties(publish)[1].0, "seq");
    }

    // Upstream got only what the WHERE condition passed, with metadata in each line.
    let hot: Vec<u32> = expected.iter().copied().filter(|s| 50.0 + f64::from(*s) > 90.0).collect();
    let lines = wait_for_lines(&pipeline.dir.path().join("upstream.jsonl"), hot.len(), Duration::from_secs(10)).await;
    let mut seqs: Vec<u32> = lines.iter().map(|l| l["payload"]["seq"].as_u64().unwrap() as u32).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, hot);
    assert_eq!(lines[0]["origin"]["module"], "shape");
    assert_eq!(lines[0]["source"], "local");
    pipeline.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_1_in_and_out() {
    let broker = Mosquitto::start();
    let toml = relay_pipeline(&format!("url = \"mqtt://127.0.0.1:{}\"\nprotocol = \"3.1.1\"\nclient_id = \"weir-v311-test\"", broker.port));
    let pipeline = RunningPipeline::start(&toml).await;
    let mut out = Subscriber::connect(broker.port, &["out/#"]).await;
    let messages = (0..20).map(|i| (format!("in/{i}"), format!("payload {i}").into_bytes(), PublishProperties::default())).collect();
    publish_v5(broker.port, messages).await;
    let got = out.take(20, Duration::from_secs(20)).await;
    let topics: Vec<String> = got.iter().map(|p| String::from_utf8_lossy(&p.topic).into_owned()).collect();
    assert_eq!(topics, (0..20).map(|i| format!("out/{i}")).collect::<Vec<_>>());
    assert_eq!(&got[7].payload[..], b"payload 7");
    pipeline.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_0_and_qos_2_in_and_out() {
    use rumqttc::v5::mqttbytes::QoS;
    let broker = Mosquitto::start();
    for (qos, level) in [(QoS::AtMostOnce, 0), (QoS::ExactlyOnce, 2)] {
        let toml = relay_pipeline(&format!("url = \"mqtt://127.0.0.1:{}\"\nqos = {level}\nclient_id = \"weir-qos-{level}\"", broker.port));
        let pipeline = RunningPipeline::start(&toml).await;
        let mut out = Subscriber::connect(broker.port, &["out/#"]).await;
        let messages = (0..10).map(|i| (format!("in/{i}"), format!("qos {level} #{i}").into_bytes(), PublishProperties::default())).collect();
        weir_tests::publish_v5_qos(broker.port, messages, qos).await;
        let got = out.take(10, Duration::from_secs(20)).await;
        let payloads: Vec<String> = got.iter().map(|p| String::from_utf8_lossy(&p.payload).into_owned()).collect();
        assert_eq!(payloads, (0..10).map(|i| format!("qos {level} #{i}")).collect::<Vec<_>>(), "QoS {level}");
        out.assert_quiet(Duration::from_millis(300)).await;
        pipeline.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_unix_socket_both_ways_and_in_both_protocols() {
    use std::os::unix::fs::PermissionsExt;
    // Mosquitto drops to its own user: it must be able to create the socket here.
    let sockets = tempfile::tempdir().unwrap();
    std::fs::set_permissions(sockets.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = sockets.path().join("mosquitto.sock");
    let broker = Mosquitto::start_with(weir_tests::free_port(), &format!("allow_anonymous true\nlistener 0 {}\n", socket.display()));
    for _ in 0..100 {
        if socket.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for protocol in ["5", "3.1.1"] {
        let toml = relay_pipeline(&format!("url = \"mqtt+unix://{}\"\nprotocol = \"{protocol}\"\nclient_id = \"weir-unix-{protocol}\"", socket.display()));
        let pipeline = RunningPipeline::start(&toml).await;
        // The test's own clients use TCP: the messages cross between the two listeners.
        let mut out = Subscriber::connect(broker.port, &["out/#"]).await;
        let messages = (0..20).map(|i| (format!("in/{i}"), format!("over {protocol} #{i}").into_bytes(), PublishProperties::default())).collect();
        publish_v5(broker.port, messages).await;
        let got = out.take(20, Duration::from_secs(20)).await;
        let payloads: Vec<String> = got.iter().map(|p| String::from_utf8_lossy(&p.payload).into_owned()).collect();
        assert_eq!(payloads, (0..20).map(|i| format!("over {protocol} #{i}")).collect::<Vec<_>>(), "MQTT {protocol}");
        pipeline.stop().await.unwrap();
    }
}

/// The MQTT sink on its own, against Mosquitto: a batch with a topic no broker takes (a
/// wildcard) is rejected for that message alone while the others are published and
/// acknowledged; a batch of nothing but such topics is rejected at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mqtt_sink_rejects_only_the_messages_it_cannot_publish() {
    use weir_connectors::mqtt::{ConnectionConfig, MqttSink, MqttSinkConfig};
    use weir_core::{Ack, Message, Metadata, Sink as _, SinkError};

    let broker = Mosquitto::start();
    let mut out = Subscriber::connect(broker.port, &["sink/#"]).await;
    let config = MqttSinkConfig { connection: ConnectionConfig::plain("127.0.0.1", broker.port), topic: None, retain: None };
    let dir = tempfile::tempdir().unwrap();
    let mut sink = MqttSink::connect(&config.connection, dir.path(), "weir-sink-test", "", None, None, None).unwrap();
    let batch = |topics: &[&str]| -> Vec<Message> {
        topics.iter().map(|topic| Message::new(Bytes::from(topic.to_string()), Metadata::new("test".into(), *topic), Ack::none())).collect()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let result = loop {
        match sink.deliver(&batch(&["sink/1", "sink/+", "sink/2"])).await {
            // Not connected yet.
            Err(SinkError::Unavailable(_)) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            other => break other,
        }
    };
    match result {
        Err(SinkError::Rejected(rejected)) => {
            let indexes: Vec<usize> = rejected.iter().map(|(index, _)| *index).collect();
            assert_eq!(indexes, [1], "{rejected:?}");
        }
        other => panic!("expected the wildcard topic rejected, got {other:?}"),
    }
    let got: Vec<String> = out.take(2, Duration::from_secs(10)).await.into_iter().map(|p| String::from_utf8(p.topic.to_vec()).unwrap()).collect();
    assert_eq!(got, ["sink/1", "sink/2"]);

    match sink.deliver(&batch(&["sink/#"])).await {
        Err(SinkError::Rejected(rejected)) => assert_eq!(rejected.len(), 1),
        other => panic!("expected the batch rejected, got {other:?}"),
    }
    sink.deliver(&batch(&["sink/3"])).await.unwrap();
    assert_eq!(&out.take(1, Duration::from_secs(10)).await[0].topic[..], b"sink/3");
    sink.close().await.unwrap();
}

/// The sink queues each publish without waiting while the event loop's request channel has
/// room, and waits for room when it has none: with one message in flight the channel (twice
/// the window, at least 20) fills within a batch, so most of these publishes take the
/// waiting path, and none may be lost or reordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_the_request_channel_is_published_whole_and_in_order() {
    use weir_connectors::mqtt::{ConnectionConfig, MqttSink};
    use weir_core::{Ack, Message, Metadata, Sink as _, SinkError};

    let broker = Mosquitto::start();
    let mut out = Subscriber::connect(broker.port, &["full/#"]).await;
    let mut connection = ConnectionConfig::plain("127.0.0.1", broker.port);
    connection.qos = weir_core::QoS::AtLeastOnce;
    connection.max_inflight = 1;
    let dir = tempfile::tempdir().unwrap();
    let mut sink = MqttSink::connect(&connection, dir.path(), "weir-full-channel-test", "", None, None, None).unwrap();
    let batch: Vec<Message> =
        (0..300).map(|i| Message::new(Bytes::from(format!("{i}")), Metadata::new("test".into(), format!("full/{i}")), Ack::none())).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match sink.deliver(&batch).await {
            // Not connected yet.
            Err(SinkError::Unavailable(_)) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            other => break other.expect("the whole batch published"),
        }
    }
    let got: Vec<String> = out.take(300, Duration::from_secs(20)).await.into_iter().map(|p| String::from_utf8(p.payload.to_vec()).unwrap()).collect();
    let expected: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    assert_eq!(got, expected);
    sink.close().await.unwrap();
}
