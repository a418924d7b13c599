//! The MQTT bridge to a cloud broker as Azure Event Grid's MQTT broker wants it: MQTT 5 over
//! TLS, authenticated by a client certificate (the "cloud" is a Mosquitto that requires one
//! and takes the certificate's name as the user), topics mapped by a template, and every
//! MQTT 5 property (user properties, content type, correlation data, response topic,
//! message expiry) forwarded.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::PublishProperties;
use weir_tests::{Mosquitto, RunningPipeline, Subscriber, TestPki, free_port, publish_v5, toml_path, user_properties};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_grid_style_bridge_forwards_topics_and_mqtt5_properties() {
    let local = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(dir.path());
    let (tls_port, plain_port) = (free_port(), free_port());
    let extra = format!(
        "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\nallow_anonymous true\nlistener {plain_port} 127.0.0.1\n",
        pki.ca.display(),
        pki.server_cert.display(),
        pki.server_key.display(),
    );
    let (ca, cert, key) = (toml_path(&pki.ca), toml_path(&pki.client_cert), toml_path(&pki.client_key));
    let _cloud = Mosquitto::start_in(dir, tls_port, &extra);
    let mut cloud = Subscriber::connect(plain_port, &["factories/#"]).await;

    let toml = format!(
        r#"
upstream = "grid"
[broker]
url = "mqtt://127.0.0.1:{local}"
[sinks.grid]
type = "mqtt"
topic = "factories/plant7/{{topic}}"
connection = {{ url = "mqtts://127.0.0.1:{tls_port}", protocol = "5", client_id = "weir-device", username = "weir-device", tls = {{ ca = {ca}, client_cert = {cert}, client_key = {{ file = {key} }} }} }}
queue = false
[routes]
up = "FROM /topics/line/# INTO $upstream"
"#,
        local = local.port,
    );
    let pipeline = RunningPipeline::start(&toml).await;
    let properties = PublishProperties {
        user_properties: vec![("machine".into(), "m4".into()), ("unit".into(), "°C".into())],
        content_type: Some("application/json".into()),
        correlation_data: Some(bytes::Bytes::from_static(b"corr-42")),
        response_topic: Some("line/replies/m4".into()),
        message_expiry_interval: Some(600),
        ..Default::default()
    };
    publish_v5(local.port, vec![("line/m4/temperature".into(), b"{\"t\":88}".to_vec(), properties)]).await;

    let got = cloud.take(1, Duration::from_secs(30)).await;
    assert_eq!(std::str::from_utf8(&got[0].topic).unwrap(), "factories/plant7/line/m4/temperature");
    assert_eq!(&got[0].payload[..], b"{\"t\":88}");
    assert_eq!(user_properties(&got[0]), [("machine".to_owned(), "m4".to_owned()), ("unit".to_owned(), "°C".to_owned())]);
    let forwarded = got[0].properties.clone().unwrap();
    assert_eq!(forwarded.content_type.as_deref(), Some("application/json"));
    assert_eq!(forwarded.correlation_data.as_deref(), Some(&b"corr-42"[..]));
    assert_eq!(forwarded.response_topic.as_deref(), Some("line/replies/m4"));
    let expiry = forwarded.message_expiry_interval.unwrap();
    assert!((590..=600).contains(&expiry), "what is left of the expiry is forwarded: {expiry}");
    pipeline.stop().await.unwrap();
}
