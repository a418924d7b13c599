//! The blob sink against real stores: Azurite (the Azure Storage emulator, read back with
//! the Azure SDK for JavaScript) and a local directory.
//!
//! - batches by count and by age land as objects with time-partitioned names, and every
//!   message is in them;
//! - with the store down, batches wait in the queue and arrive once it is up;
//! - a batch still gathering is written at shutdown.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::PublishProperties;
use weir_tests::{AZURITE_KEY, Azurite, Mosquitto, RunningPipeline, free_port, publish_v5, toml_path};

fn pipeline(local: u16, sink: &str, store: &std::path::Path) -> String {
    format!(
        r#"
upstream = "lake"
[broker]
url = "mqtt://127.0.0.1:{local}"
[store]
dir = {store}
[sinks.lake]
type = "blob"
{sink}
[routes]
up = "FROM /topics/plant/# INTO $upstream"
"#,
        store = toml_path(store),
    )
}

fn readings(range: std::ops::Range<usize>) -> Vec<(String, Vec<u8>, PublishProperties)> {
    range.map(|i| (format!("plant/m{}/telemetry", i % 5), format!("{{\"seq\":{i}}}").into_bytes(), PublishProperties::default())).collect()
}

/// The `seq` of every JSON line in every object.
fn sequences(objects: &BTreeMap<String, String>) -> Vec<u64> {
    let mut all: Vec<u64> = objects
        .values()
        .flat_map(|text| text.lines())
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["payload"]["seq"].as_u64().unwrap())
        .collect();
    all.sort_unstable();
    all
}

async fn wait_for_blobs(azurite: &Azurite, container: &str, messages: usize) -> BTreeMap<String, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let objects = azurite.blobs(container);
        if sequences(&objects).len() >= messages {
            return objects;
        }
        assert!(tokio::time::Instant::now() < deadline, "expected {messages} messages in blobs, found {}", sequences(&objects).len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `plant/2026/11/22/04/local-1795321234567-000001.jsonl`
fn is_partitioned_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() == 6
        && parts[0] == "plant"
        && parts[1].len() == 4
        && parts[2..5].iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_digit()))
        && parts[5].starts_with("local-")
        && parts[5].ends_with(".jsonl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_land_in_azure_blob_storage_by_count_and_by_age() {
    let local = Mosquitto::start();
    let azurite = Azurite::start();
    azurite.create_container("telemetry");
    let store = tempfile::tempdir().unwrap();
    let sink = format!(
        "url = \"az://telemetry/plant\"\naccount = \"devstoreaccount1\"\naccess_key = {{ env = \"WEIR_TEST_AZURITE_KEY\" }}\nendpoint = \"{}\"\nmax_messages = 100\nmax_age_secs = 1.0",
        azurite.endpoint()
    );
    weir_tests::set_test_env("WEIR_TEST_AZURITE_KEY", AZURITE_KEY);
    let running = RunningPipeline::start(&pipeline(local.port, &sink, store.path())).await;
    publish_v5(local.port, readings(0..250)).await;
    let objects = wait_for_blobs(&azurite, "telemetry", 250).await;
    assert_eq!(sequences(&objects), (0..250).collect::<Vec<_>>(), "every message exactly once");
    let sizes: BTreeSet<usize> = objects.values().map(|text| text.lines().count()).collect();
    assert_eq!(objects.len(), 3, "two full batches of 100 and one of 50 after max_age: {sizes:?}");
    assert!(sizes.contains(&100) && sizes.contains(&50), "{sizes:?}");
    for name in objects.keys() {
        assert!(is_partitioned_name(name), "{name}");
    }
    let line: serde_json::Value = serde_json::from_str(objects.values().next().unwrap().lines().next().unwrap()).unwrap();
    assert!(line["topic"].as_str().unwrap().starts_with("plant/m"), "metadata travels with the payload: {line}");
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_wait_in_the_queue_while_the_store_is_down() {
    let local = Mosquitto::start();
    let port = free_port();
    let store = tempfile::tempdir().unwrap();
    let sink = format!(
        "url = \"az://telemetry/plant\"\naccount = \"devstoreaccount1\"\naccess_key = {{ env = \"WEIR_TEST_AZURITE_KEY\" }}\nendpoint = \"http://127.0.0.1:{port}/devstoreaccount1\"\nmax_messages = 50\nmax_age_secs = 0.5"
    );
    weir_tests::set_test_env("WEIR_TEST_AZURITE_KEY", AZURITE_KEY);
    let running = RunningPipeline::start(&pipeline(local.port, &sink, store.path())).await;
    publish_v5(local.port, readings(0..120)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let azurite = Azurite::start_on(port);
    azurite.create_container("telemetry");
    let objects = wait_for_blobs(&azurite, "telemetry", 120).await;
    assert_eq!(sequences(&objects), (0..120).collect::<Vec<_>>());
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_directory_gets_the_batch_in_progress_at_shutdown() {
    let local = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let sink = format!("url = {}\nname = \"plant/{{yyyy}}/{{MM}}/{{dd}}/{{HH}}/{{source}}-{{run}}-{{seq}}.jsonl\"\nmax_age_secs = 600.0", toml_path(&lake));
    let running = RunningPipeline::start(&pipeline(local.port, &sink, &dir.path().join("store"))).await;
    publish_v5(local.port, readings(0..30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Nothing is written yet (the batch waits up to 10 minutes for more) …
    assert_eq!(walk(&lake).len(), 0);
    // … until shutdown writes what is there.
    running.stop().await.unwrap();
    let files = walk(&lake);
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let objects = BTreeMap::from([(files[0].display().to_string(), text)]);
    assert_eq!(sequences(&objects), (0..30).collect::<Vec<_>>());
    let relative = files[0].strip_prefix(&lake).unwrap().to_string_lossy().into_owned();
    assert!(is_partitioned_name(&relative), "{relative}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            files.extend(walk(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files
}
