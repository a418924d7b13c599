//! Aggregate modules end to end, through a real Mosquitto and the real `averages` module:
//!
//! - event-time tumbling windows per machine, with out-of-order and late data: the results
//!   equal averages computed by hand, the late reading and one the module rejects go to
//!   `$deadletter` with their reasons;
//! - a restart in the middle of a window, graceful and kill -9: the window's result equals
//!   the one without a restart (the window state comes back from its checkpoint, and what
//!   was not checkpointed was not acknowledged, so the broker redelivers it);
//! - an aggregate without a `window` table, and a bad window table, are refused by `weir check`
//!   with the key named.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Publish, PublishProperties};
use serde_json::{Value, json};
use weir_tests::{Mosquitto, Subscriber, WeirProcess, module, publish_v5, toml_path, user_properties};

/// Telemetry in, per-machine 10 s event-time averages out to `averages/<machine>`.
fn pipeline(port: u16, store: &Path, client_id: &str) -> String {
    format!(
        r#"
[broker]
url = "mqtt://127.0.0.1:{port}"
client_id = "{client_id}"
clean_session = false

[store]
dir = {store}

[runtime]
drain_timeout = "2s"

[modules.averages]
path = {module}
config = {{ field = "temperature" }}

[modules.averages.window]
kind = "tumbling"
size = "10s"
key = "$body.machine"
time = "$body.ts"
checkpoint_interval = "100ms"

[routes]
telemetry = 'FROM /topics/factory/+/telemetry INTO BrokeredEndpoint("/modules/averages/inputs/in")'
averages = 'FROM /messages/modules/averages/outputs/* INTO /topics/averages/{{$body.key}}/{{$topic[1]}}'
"#,
        store = toml_path(store),
        module = toml_path(&module("averages")),
    )
}

fn reading(machine: &str, ts: u64, temperature: f64) -> (String, Vec<u8>, PublishProperties) {
    let body = json!({ "machine": machine, "ts": ts, "temperature": temperature });
    (format!("factory/{machine}/telemetry"), body.to_string().into_bytes(), PublishProperties::default())
}

fn body(publish: &Publish) -> Value {
    serde_json::from_slice(&publish.payload).unwrap()
}

/// The fields of a result that do not depend on float formatting.
fn summary(result: &Value) -> (String, u64, f64, f64, f64, u64, u64) {
    (
        result["key"].as_str().unwrap().to_owned(),
        result["count"].as_u64().unwrap(),
        result["avg"].as_f64().unwrap(),
        result["min"].as_f64().unwrap(),
        result["max"].as_f64().unwrap(),
        result["window_start"].as_u64().unwrap(),
        result["window_end"].as_u64().unwrap(),
    )
}

/// Results carry the topic of their window's newest reading (`factory/<machine>/telemetry`),
/// which the route puts into theirs: `averages/<key>/<$topic[1]>`.
fn assert_topics_name_their_machine(results: &[Publish]) {
    for result in results {
        let key = body(result)["key"].as_str().unwrap().to_owned();
        assert_eq!(String::from_utf8_lossy(&result.topic), format!("averages/{key}/{key}"));
    }
}

fn sorted(results: &[Publish]) -> Vec<(String, u64, f64, f64, f64, u64, u64)> {
    let mut out: Vec<_> = results.iter().map(|p| summary(&body(p))).collect();
    out.sort_by(|a, b| (a.5, &a.0).cmp(&(b.5, &b.0)));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_time_averages_match_hand_computed_ones_and_late_data_is_dead_lettered() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("averages.toml");
    std::fs::write(&path, pipeline(broker.port, &dir.path().join("store"), "weir-agg-hand")).unwrap();
    let mut results = Subscriber::connect(broker.port, &["averages/#"]).await;
    let mut dead = Subscriber::connect(broker.port, &["weir/deadletter"]).await;
    let mut weir = WeirProcess::start(&path);

    publish_v5(
        broker.port,
        vec![
            reading("m1", 1_000, 70.0),
            reading("m2", 2_000, 50.0),
            reading("m1", 9_000, 80.0),
            reading("m1", 5_000, 75.0), // out of order, same window
            // No temperature: the module rejects it; its window is left as it was.
            ("factory/m1/telemetry".into(), json!({ "machine": "m1", "ts": 6_000, "pressure": 1.2 }).to_string().into_bytes(), PublishProperties::default()),
            reading("m2", 12_000, 60.0), // next window
            reading("m1", 10_500, 90.0), // watermark 12 s: [0, 10 s) closes for both machines
        ],
    )
    .await;
    let first = results.take(2, Duration::from_secs(20)).await;
    assert_eq!(
        sorted(&first),
        vec![("m1".into(), 3, 75.0, 70.0, 80.0, 0, 10_000), ("m2".into(), 1, 50.0, 50.0, 50.0, 0, 10_000)],
        "first windows: m1 = (70 + 80 + 75) / 3"
    );
    assert_topics_name_their_machine(&first);
    let properties = user_properties(&first[0]);
    assert!(properties.iter().any(|(name, value)| name == "window_end" && value == "10000"), "{properties:?}");
    let rejected = dead.take(1, Duration::from_secs(20)).await;
    assert_eq!(body(&rejected[0])["ts"], 6_000);
    let reasons = user_properties(&rejected[0]);
    assert!(reasons.contains(&("weir-dl-reason".to_owned(), "rejected".to_owned())), "{reasons:?}");
    assert!(reasons.contains(&("weir-dl-detail".to_owned(), "field `temperature` is missing".to_owned())), "{reasons:?}");

    // 3 s is behind the watermark (12 s, no allowed lateness) and its window has closed.
    publish_v5(broker.port, vec![reading("m1", 3_000, 10.0), reading("m1", 25_000, 100.0)]).await;
    let late = dead.take(1, Duration::from_secs(20)).await;
    assert_eq!(body(&late[0])["ts"], 3_000);
    let reasons = user_properties(&late[0]);
    assert!(reasons.contains(&("weir-dl-reason".to_owned(), "late".to_owned())), "{reasons:?}");
    assert!(reasons.iter().any(|(name, value)| name == "weir-dl-detail" && value.contains("behind the watermark")), "{reasons:?}");
    let second = results.take(2, Duration::from_secs(20)).await;
    assert_eq!(
        sorted(&second),
        vec![("m1".into(), 1, 90.0, 90.0, 90.0, 10_000, 20_000), ("m2".into(), 1, 60.0, 60.0, 60.0, 10_000, 20_000)],
        "the late reading is in no window"
    );
    results.assert_quiet(Duration::from_millis(300)).await;
    weir.stop();
}

/// Half a window, a stop (graceful or kill -9), a restart, the other half: the result
/// equals that of a run without the stop.
async fn restart_in_the_middle_of_a_window(kill: bool) {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("averages.toml");
    let store = dir.path().join("store");
    std::fs::write(&path, pipeline(broker.port, &store, if kill { "weir-agg-kill" } else { "weir-agg-stop" })).unwrap();
    let mut results = Subscriber::connect(broker.port, &["averages/#"]).await;

    let mut weir = WeirProcess::start(&path);
    // m3's only reading comes before the stop: its result's topic comes from the checkpoint.
    publish_v5(broker.port, vec![reading("m1", 1_000, 70.0), reading("m2", 1_500, 10.0), reading("m3", 1_800, 50.0), reading("m1", 2_000, 72.0)]).await;
    // Let a checkpoint happen (every 100 ms), then stop.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(store.join("averages.window-state").is_file(), "no checkpoint written:\n{}", weir.log_text());
    if kill {
        weir.kill9();
    } else {
        weir.stop();
    }
    // While weir is down the broker keeps what arrives for its session.
    publish_v5(broker.port, vec![reading("m1", 3_000, 74.0)]).await;
    let mut weir = WeirProcess::start(&path);
    assert!(weir.log_text().contains("continuing open windows"), "{}", weir.log_text());
    publish_v5(broker.port, vec![reading("m2", 4_000, 30.0), reading("m1", 10_000, 0.0)]).await;
    let out = results.take(3, Duration::from_secs(20)).await;
    assert_eq!(
        sorted(&out),
        vec![("m1".into(), 3, 72.0, 70.0, 74.0, 0, 10_000), ("m2".into(), 2, 20.0, 10.0, 30.0, 0, 10_000), ("m3".into(), 1, 50.0, 50.0, 50.0, 0, 10_000)],
        "the window spanning the restart counts every reading once"
    );
    assert_topics_name_their_machine(&out);
    results.assert_quiet(Duration::from_millis(300)).await;
    weir.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_mid_window_continues_the_window() {
    restart_in_the_middle_of_a_window(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_mid_window_continues_the_window() {
    restart_in_the_middle_of_a_window(true).await;
}

/// A sliding window with the z-score module: twelve ordinary readings, then a spike; only
/// the spike comes out, on the module's `anomalies` output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sliding_z_score_emits_only_the_anomaly() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anomalies.toml");
    let toml = format!(
        r#"
[broker]
url = "mqtt://127.0.0.1:{port}"
client_id = "weir-agg-zscore"

[store]
dir = {store}

[modules.zscore]
path = {module}
config = {{ field = "temperature", threshold = 3.0, min_count = 10 }}
window = {{ kind = "sliding", size = "1m", key = "$body.machine" }}

[routes]
telemetry = 'FROM /topics/factory/+/telemetry INTO BrokeredEndpoint("/modules/zscore/inputs/in")'
alarms = 'FROM /messages/modules/zscore/outputs/anomalies INTO /topics/alarms/{{$body.key}}'
"#,
        port = broker.port,
        store = toml_path(&dir.path().join("store")),
        module = toml_path(&module("zscore")),
    );
    std::fs::write(&path, toml).unwrap();
    let mut alarms = Subscriber::connect(broker.port, &["alarms/#"]).await;
    let mut weir = WeirProcess::start(&path);
    let mut readings: Vec<_> = [20.0, 20.5, 19.5, 20.2, 19.8, 20.1, 19.9, 20.4, 19.6, 20.0, 20.3, 19.7].into_iter().map(|t| reading("m1", 0, t)).collect();
    readings.push(reading("m2", 0, 99.0)); // another machine with no history: not judged
    readings.push(reading("m1", 0, 31.0));
    publish_v5(broker.port, readings).await;
    let anomalies = alarms.take(1, Duration::from_secs(20)).await;
    let anomaly = body(&anomalies[0]);
    assert_eq!(anomalies[0].topic, b"alarms/m1".as_slice());
    assert_eq!((anomaly["key"].as_str(), anomaly["value"].as_f64()), (Some("m1"), Some(31.0)), "{anomaly}");
    assert!(anomaly["z"].as_f64().unwrap() > 3.0, "{anomaly}");
    alarms.assert_quiet(Duration::from_millis(500)).await;
    weir.stop();
}

fn check(toml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, toml).unwrap();
    let output = std::process::Command::new(weir_tests::weir_binary()).arg("check").arg(&path).output().unwrap();
    assert!(!output.status.success(), "weir check accepted:\n{toml}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn weir_check_names_what_is_wrong_with_a_window() {
    let base = pipeline(1883, Path::new("store"), "x");
    let without = base.replace("[modules.averages.window]", "[unused]");
    let err = check(
        &without.replace("[unused]\nkind = \"tumbling\"\nsize = \"10s\"\nkey = \"$body.machine\"\ntime = \"$body.ts\"\ncheckpoint_interval = \"100ms\"\n", ""),
    );
    assert!(err.contains("is an aggregate: give it a window table"), "{err}");

    let err = check(&base.replace("size = \"10s\"", "size = 10"));
    assert!(err.contains("modules.averages.window.size") && err.contains("duration"), "{err}");
    let err = check(&base.replace("key = \"$body.machine\"", "key = \"$body.machine AND\""));
    assert!(err.contains("modules.averages.window.key"), "{err}");
    let err = check(&base.replace("kind = \"tumbling\"", "kind = \"hopping\""));
    assert!(err.contains("hopping windows need `hop`"), "{err}");
}

/// Tumbling 1 s event-time averages of five machines over 30 windows, results to a queued
/// file sink, weir killed with kill -9 twice, each time shortly after windows were emitted,
/// and restarted. Before, the readings of windows emitted since the last checkpoint came
/// back from the broker into fresh windows, and those windows came out a second time
/// (65 of 150 in one run). Now a checkpoint records a window as closed before its result is
/// sent: each of the 150 windows comes out with the values of a run without a crash, and a
/// result sent again (one not yet accepted when weir died) carries the same `weir-window` id
/// and the same values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_windows_were_emitted_does_not_emit_them_again() {
    const MACHINES: u64 = 5;
    const WINDOWS: u64 = 30;
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("averages.toml");
    let output = dir.path().join("windows.jsonl");
    let toml = format!(
        r#"
upstream = "windows"

[broker]
url = "mqtt://127.0.0.1:{port}"
client_id = "weir-agg-once"
clean_session = false

[store]
dir = "store"

[modules.averages]
path = {module}
config = {{ field = "temperature" }}

[modules.averages.window]
kind = "tumbling"
size = "1s"
key = "$body.machine"
time = "$body.ts"

[sinks.windows]
type = "file"
path = {output}

[routes]
telemetry = 'FROM /topics/factory/+/telemetry INTO BrokeredEndpoint("/modules/averages/inputs/in")'
averages = 'FROM /messages/modules/averages/outputs/* INTO $upstream'
"#,
        port = broker.port,
        module = toml_path(&module("averages")),
        output = toml_path(&output),
    );
    std::fs::write(&path, toml).unwrap();
    let temperature = |machine: u64, window: u64, i: u64| (machine * 1000 + window * 4 + i) as f64;
    let readings = |windows: std::ops::Range<u64>| {
        let mut out = Vec::new();
        for window in windows {
            for i in 0..4 {
                for machine in 0..MACHINES {
                    out.push(reading(&format!("m{machine}"), window * 1000 + i * 250, temperature(machine, window, i)));
                }
            }
        }
        out
    };
    let results = || -> Vec<Value> {
        let text = std::fs::read_to_string(&output).unwrap_or_default();
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        whole.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    };
    let wait_for = |windows: usize| {
        let results = &results;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while results().len() < windows {
                assert!(tokio::time::Instant::now() < deadline, "{} of {windows} results", results().len());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    let mut weir = WeirProcess::start(&path);
    for (phase, range) in [(0u64, 0..10), (1, 10..20)] {
        publish_v5(broker.port, readings(range.clone())).await;
        // Windows up to the phase's last but one close as the next window's readings come.
        wait_for(((range.end - 1) * MACHINES) as usize).await;
        weir.kill9();
        weir = WeirProcess::start(&path);
        assert!(weir.log_text().contains("continuing open windows"), "phase {phase}: {}", weir.log_text());
    }
    let mut last = readings(20..WINDOWS);
    last.extend((0..MACHINES).map(|machine| reading(&format!("m{machine}"), WINDOWS * 1000, 0.0)));
    publish_v5(broker.port, last).await;
    wait_for((WINDOWS * MACHINES) as usize).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    weir.stop();

    let mut seen: std::collections::BTreeMap<String, Value> = std::collections::BTreeMap::new();
    let mut repeats = 0;
    for result in results() {
        let id = result["properties"].as_array().unwrap().iter().find(|p| p["name"] == "weir-window").expect("every result has weir-window")["value"]
            .as_str()
            .unwrap()
            .to_owned();
        match seen.get(&id) {
            Some(first) => {
                assert_eq!(first["payload"], result["payload"], "a repeat of {id} differs from the first");
                repeats += 1;
            }
            None => {
                seen.insert(id, result);
            }
        }
    }
    eprintln!("{} windows, {repeats} sent again (same id, same values)", seen.len());
    assert_eq!(seen.len() as u64, MACHINES * WINDOWS);
    for result in seen.values() {
        let payload = &result["payload"];
        let machine: u64 = payload["key"].as_str().unwrap()[1..].parse().unwrap();
        let window = payload["window_start"].as_u64().unwrap() / 1000;
        let expected = (4, temperature(machine, window, 0) + 1.5, temperature(machine, window, 0), temperature(machine, window, 3));
        let got = (payload["count"].as_u64().unwrap(), payload["avg"].as_f64().unwrap(), payload["min"].as_f64().unwrap(), payload["max"].as_f64().unwrap());
        assert_eq!(got, expected, "m{machine} window {window}: every reading counted once");
    }
    // A repeat is a result whose acceptance was not yet checkpointed when weir was killed: at
    // most the windows a phase emits (usually none; 24 once on a loaded machine).
    assert!(repeats <= 2 * 10 * MACHINES as usize, "{repeats} results sent again: more than the two phases emitted");
}
