//! The MQTT connection features against a real Mosquitto: TLS with a test CA, username and
//! password (from an environment variable, never the TOML), client certificates, and a
//! broker restart that must not leave the pipeline deaf.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::PublishProperties;
use weir_tests::{Mosquitto, RunningPipeline, Subscriber, free_port, publish_v5, relay_pipeline, toml_path};

/// Plain (loopback, no TLS) side listener for the test's own clients.
fn with_plain_listener(port: u16) -> String {
    format!("listener {port} 127.0.0.1\nallow_anonymous true\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_username_and_password_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let pki = weir_tests::TestPki::create(dir.path());
    let passwords = dir.path().join("passwords");
    let status = Command::new("mosquitto_passwd")
        .arg("-b")
        .arg("-c")
        .arg(&passwords)
        .args(["weir", "s3cret-pw"])
        .status()
        .expect("mosquitto_passwd (package mosquitto)");
    assert!(status.success());
    let (tls_port, plain_port) = (free_port(), free_port());
    let config = format!(
        "cafile {}\ncertfile {}\nkeyfile {}\npassword_file {}\nallow_anonymous false\n",
        pki.ca.display(),
        pki.server_cert.display(),
        pki.server_key.display(),
        passwords.display()
    );
    // The TLS listener needs the password; the test's own clients use a plain side listener.
    let extra = format!("{config}{}", with_plain_listener(plain_port).replace("allow_anonymous true\n", ""));
    let _broker = Mosquitto::start_in(dir, tls_port, &extra);
    weir_tests::set_test_env("WEIR_TEST_MQTT_PASSWORD", "s3cret-pw");
    let toml = relay_pipeline(&format!(
        "url = \"mqtts://127.0.0.1:{tls_port}\"\nusername = \"weir\"\npassword = {{ env = \"WEIR_TEST_MQTT_PASSWORD\" }}\ntls = {{ ca = {} }}",
        toml_path(&pki.ca)
    ));
    let pipeline = RunningPipeline::start(&toml).await;
    // The plain listener shares the password file: the test clients log in too.
    let mut out = weir_tests::Subscriber::connect_with_credentials(plain_port, &["out/#"], "weir", "s3cret-pw").await;
    weir_tests::publish_v5_with_credentials(plain_port, vec![("in/tls".into(), b"over TLS".to_vec(), PublishProperties::default())], "weir", "s3cret-pw").await;
    let got = out.take(1, Duration::from_secs(20)).await;
    assert_eq!(&got[0].payload[..], b"over TLS");
    pipeline.stop().await.unwrap();

    // A wrong password is refused by the broker and reported, not silently ignored.
    weir_tests::set_test_env("WEIR_TEST_MQTT_PASSWORD", "wrong");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, &toml).unwrap();
    let checked = tokio::task::spawn_blocking(move || weir::cli::check::check(&path)).await.unwrap().unwrap();
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let token = tokio_util::sync::CancellationToken::new();
    let stop = token.clone();
    let run = tokio::spawn(async move { weir::executor::run(&checked.loaded, checked.plan, checked.modules, &checked.registry, stop, Some(ready_tx)).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!*ready_rx.borrow(), "a pipeline with a refused login must not report ready");
    token.cancel();
    tokio::time::timeout(Duration::from_secs(40), run).await.unwrap().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = weir_tests::TestPki::create(dir.path());
    let (tls_port, plain_port) = (free_port(), free_port());
    let extra = format!(
        "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\nallow_anonymous true\n{}",
        pki.ca.display(),
        pki.server_cert.display(),
        pki.server_key.display(),
        with_plain_listener(plain_port)
    );
    let _broker = Mosquitto::start_in(dir, tls_port, &extra);
    let toml = relay_pipeline(&format!(
        "url = \"mqtts://127.0.0.1:{tls_port}\"\ntls = {{ ca = {}, client_cert = {}, client_key = {{ file = {} }} }}",
        toml_path(&pki.ca),
        toml_path(&pki.client_cert),
        toml_path(&pki.client_key)
    ));
    let pipeline = RunningPipeline::start(&toml).await;
    let mut out = Subscriber::connect(plain_port, &["out/#"]).await;
    publish_v5(plain_port, vec![("in/cert".into(), b"with a certificate".to_vec(), PublishProperties::default())]).await;
    assert_eq!(&out.take(1, Duration::from_secs(20)).await[0].payload[..], b"with a certificate");
    pipeline.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_does_not_leave_the_pipeline_deaf() {
    let mut broker = Mosquitto::start();
    let toml = relay_pipeline(&format!("url = \"mqtt://127.0.0.1:{}\"\nkeep_alive_secs = 5", broker.port));
    let pipeline = RunningPipeline::start(&toml).await;
    let mut out = Subscriber::connect(broker.port, &["out/#"]).await;
    publish_v5(broker.port, vec![("in/before".into(), b"before".to_vec(), PublishProperties::default())]).await;
    assert_eq!(&out.take(1, Duration::from_secs(20)).await[0].payload[..], b"before");

    // The broker comes back empty (no persistence): weir must reconnect and subscribe again.
    broker.restart();
    let mut out = Subscriber::connect(broker.port, &["out/#"]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut attempt = 0;
    loop {
        attempt += 1;
        publish_v5(broker.port, vec![("in/after".into(), format!("after {attempt}").into_bytes(), PublishProperties::default())]).await;
        if let Ok(Some(publish)) = tokio::time::timeout(Duration::from_secs(1), out.next()).await {
            assert!(publish.payload.starts_with(b"after"));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no message relayed within 30 s of the broker restart: the pipeline went deaf");
    }
    pipeline.stop().await.unwrap();
}
