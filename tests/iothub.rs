//! The IoT Hub sink: the SAS token against a reference computed independently (Python's
//! hmac, as in Microsoft's documentation), and telemetry over TLS to a Mosquitto standing in
//! for the hub: client id, user name, topic with the property bag, payload.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::PublishProperties;
use weir_connectors::iothub::DeviceConnection;
use weir_tests::{Mosquitto, RunningPipeline, Subscriber, TestPki, free_port, publish_v5, toml_path};

/// A made-up device key (base64 of 32 bytes).
const KEY: &str = "dGhpcyBpcyBub3QgYSByZWFsIGRldmljZSBrZXkgISE=";

/// The token as IoT Hub's documentation computes it, in Python.
fn reference_token(resource: &str, key: &str, expiry: u64) -> String {
    let script = r#"
import base64, hashlib, hmac, sys, urllib.parse
uri = urllib.parse.quote(sys.argv[1], safe="")
sig = base64.b64encode(hmac.new(base64.b64decode(sys.argv[2]), f"{uri}\n{sys.argv[3]}".encode(), hashlib.sha256).digest()).decode()
print(f"SharedAccessSignature sr={uri}&sig={urllib.parse.quote(sig, safe='')}&se={sys.argv[3]}", end="")
"#;
    let output = Command::new("python3").args(["-c", script, resource, key, &expiry.to_string()]).output().expect("python3 runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_sas_token_matches_an_independent_computation() {
    let device = DeviceConnection::parse(&format!("HostName=plant7.azure-devices.net;DeviceId=press-7;SharedAccessKey={KEY}")).unwrap();
    for expiry in [1_795_320_000, 1_800_000_000, 4_102_444_800] {
        assert_eq!(device.token(expiry).unwrap(), reference_token("plant7.azure-devices.net/devices/press-7", KEY, expiry));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_goes_to_the_device_events_topic_with_a_property_bag() {
    let local = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(dir.path());
    // The "hub": a TLS listener for weir, a plain one for the test's subscriber, and a log
    // (in a directory mosquitto's own user can write) that shows who connected as what.
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::set_permissions(&logs, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let log = logs.join("hub.log");
    let (tls_port, plain_port) = (free_port(), free_port());
    let extra = format!(
        "cafile {}\ncertfile {}\nkeyfile {}\nallow_anonymous true\nlog_dest file {}\nconnection_messages true\nlistener {plain_port} 127.0.0.1\n",
        pki.ca.display(),
        pki.server_cert.display(),
        pki.server_key.display(),
        log.display()
    );
    let _hub = Mosquitto::start_in(dir, tls_port, &extra);
    let mut cloud = Subscriber::connect(plain_port, &["devices/#"]).await;

    weir_tests::set_test_env("WEIR_TEST_IOTHUB", &format!("HostName=plant7.azure-devices.net;DeviceId=press-7;SharedAccessKey={KEY}"));
    let toml = format!(
        r#"
upstream = "hub"
[broker]
url = "mqtt://127.0.0.1:{local}"
[sinks.hub]
type = "iothub"
connection_string = {{ env = "WEIR_TEST_IOTHUB" }}
url = "mqtts://127.0.0.1:{tls_port}"
tls = {{ ca = {ca} }}
queue = false
[routes]
up = "FROM /topics/plant/# INTO $upstream"
"#,
        local = local.port,
        ca = toml_path(&pki.ca),
    );
    let pipeline = RunningPipeline::start(&toml).await;
    let properties = PublishProperties { user_properties: vec![("unit".into(), "°C".into()), ("line".into(), "L2".into())], ..Default::default() };
    publish_v5(local.port, vec![("plant/press-7/telemetry".into(), b"{\"t\":71.5}".to_vec(), properties)]).await;

    let got = cloud.take(1, Duration::from_secs(30)).await;
    assert_eq!(std::str::from_utf8(&got[0].topic).unwrap(), "devices/press-7/messages/events/unit=%C2%B0C&line=L2&$.ct=application%2Fjson&$.ce=utf-8");
    assert_eq!(&got[0].payload[..], b"{\"t\":71.5}");
    pipeline.stop().await.unwrap();

    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("as press-7 (") && text.contains("u'plant7.azure-devices.net/press-7/?api-version=2021-04-12'"),
        "client id = device id and IoT Hub's user name:\n{text}"
    );
}
