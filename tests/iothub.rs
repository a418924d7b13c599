//! The IoT Hub connector: the SAS token against a reference computed independently (Python's
//! hmac, as in Microsoft's documentation); telemetry over TLS to a Mosquitto standing in for
//! the hub (client id, user name, topic with the property bag, payload); cloud-to-device
//! messages on the same connection; the token renewed before it expires.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::PublishProperties;
use weir_connectors::iothub::DeviceConnection;
use weir_tests::{Mosquitto, RunningPipeline, Subscriber, TestPki, free_port, publish_v5, toml_path, user_properties};

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

/// A Mosquitto standing in for IoT Hub: a TLS listener for weir (a test CA), a plain one
/// for the test's own clients (the "cloud side"), and a log that shows who connected as what.
struct Hub {
    _broker: Mosquitto,
    tls_port: u16,
    plain_port: u16,
    ca: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl Hub {
    fn start() -> Hub {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::create(dir.path());
        // The log goes to a directory mosquitto's own user can write.
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
        let ca = pki.ca.clone();
        let broker = Mosquitto::start_in(dir, tls_port, &extra);
        Hub { _broker: broker, tls_port, plain_port, ca, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The keys of an `iothub` sink or source pointed at this hub, for `device` (its
    /// connection string goes into an environment variable of its own: tests run in
    /// parallel in one process).
    fn connection_keys(&self, device: &str, extra: &str) -> String {
        let variable = format!("WEIR_TEST_IOTHUB_{}", device.replace('-', "_").to_uppercase());
        weir_tests::set_test_env(&variable, &format!("HostName=plant7.azure-devices.net;DeviceId={device};SharedAccessKey={KEY}"));
        format!(
            "connection_string = {{ env = \"{variable}\" }}\nurl = \"mqtts://127.0.0.1:{}\"\ntls = {{ ca = {} }}\n{extra}",
            self.tls_port,
            toml_path(&self.ca)
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_goes_to_the_device_events_topic_with_a_property_bag() {
    let local = Mosquitto::start();
    let hub = Hub::start();
    let mut cloud = Subscriber::connect(hub.plain_port, &["devices/#"]).await;

    let toml = format!(
        r#"
upstream = "hub"
[broker]
url = "mqtt://127.0.0.1:{local}"
[sinks.hub]
type = "iothub"
{keys}
[routes]
up = "FROM /topics/plant/# INTO $upstream"
"#,
        local = local.port,
        keys = hub.connection_keys("press-7", "queue = false"),
    );
    let pipeline = RunningPipeline::start(&toml).await;
    let properties = PublishProperties { user_properties: vec![("unit".into(), "°C".into()), ("line".into(), "L2".into())], ..Default::default() };
    publish_v5(local.port, vec![("plant/press-7/telemetry".into(), b"{\"t\":71.5}".to_vec(), properties)]).await;

    let got = cloud.take(1, Duration::from_secs(30)).await;
    assert_eq!(std::str::from_utf8(&got[0].topic).unwrap(), "devices/press-7/messages/events/unit=%C2%B0C&line=L2&$.ct=application%2Fjson&$.ce=utf-8");
    assert_eq!(&got[0].payload[..], b"{\"t\":71.5}");
    pipeline.stop().await.unwrap();

    let text = hub.log_text();
    assert!(
        text.contains("as press-7 (") && text.contains("u'plant7.azure-devices.net/press-7/?api-version=2021-04-12'"),
        "client id = device id and IoT Hub's user name:\n{text}"
    );
}

/// Cloud-to-device messages arrive through an `iothub` source on the same connection as
/// the device's telemetry (IoT Hub allows one per device), with the property bag decoded;
/// and the SAS token is renewed before it expires: with a 10 s token, weir reconnects by
/// itself at 8 s and telemetry keeps flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_to_device_messages_share_the_connection_and_tokens_are_renewed() {
    let local = Mosquitto::start();
    let hub = Hub::start();
    let mut cloud = Subscriber::connect(hub.plain_port, &["devices/+/messages/events/#"]).await;
    let mut commands = Subscriber::connect(local.port, &["commands/#"]).await;
    let keys = hub.connection_keys("press-9", "token_ttl_secs = 10");
    let toml = format!(
        r#"
upstream = "hub"
[broker]
url = "mqtt://127.0.0.1:{local}"
[sinks.hub]
type = "iothub"
{keys}
queue = false
[sources.from-hub]
type = "iothub"
{keys}
[routes]
up = "FROM /topics/plant/# INTO $upstream"
c2d = "FROM /topics/devices/+/messages/devicebound WHERE $source = 'from-hub' INTO /topics/commands/{{$topic[1]}}"
"#,
        local = local.port,
    );
    let started = std::time::Instant::now();
    let pipeline = RunningPipeline::start(&toml).await;

    // The service side sends a command the way IoT Hub does: system properties in the bag.
    let bag = "%24.mid=cmd-1&%24.to=%2Fdevices%2Fpress-9%2Fmessages%2FdeviceBound&%24.ct=application%2Fjson&mode=stop%20now";
    publish_v5(hub.plain_port, vec![(format!("devices/press-9/messages/devicebound/{bag}"), b"{\"cmd\":\"stop\"}".to_vec(), PublishProperties::default())])
        .await;
    let got = commands.take(1, Duration::from_secs(30)).await;
    assert_eq!(std::str::from_utf8(&got[0].topic).unwrap(), "commands/press-9");
    assert_eq!(&got[0].payload[..], b"{\"cmd\":\"stop\"}");
    let properties = user_properties(&got[0]);
    assert!(properties.contains(&("mode".into(), "stop now".into())), "{properties:?}");
    assert!(properties.contains(&("$.mid".into(), "cmd-1".into())), "{properties:?}");
    assert_eq!(got[0].properties.as_ref().and_then(|p| p.content_type.clone()), Some("application/json".into()));

    // Past the renewal point (8 s of a 10 s token): the device reconnected by itself, and
    // telemetry still goes out on the new connection.
    tokio::time::sleep(Duration::from_secs(12).saturating_sub(started.elapsed())).await;
    publish_v5(local.port, vec![("plant/press-9/telemetry".into(), b"{\"t\":1}".to_vec(), PublishProperties::default())]).await;
    let got = cloud.take(1, Duration::from_secs(30)).await;
    assert!(std::str::from_utf8(&got[0].topic).unwrap().starts_with("devices/press-9/messages/events/"));
    pipeline.stop().await.unwrap();

    let text = hub.log_text();
    let connects = text.matches("as press-9 (").count();
    assert!(connects >= 2, "a second connection with a fresh token after 8 s:\n{text}");
    assert!(!text.contains("already connected"), "the sink and the source share one connection (IoT Hub allows one per device):\n{text}");
}
