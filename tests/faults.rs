//! Nothing lost under ordinary faults, counted end to end: every message published is
//! acknowledged to its publisher, then found at the sink or in `$deadletter` with a reason.
//! Each test runs against a stock Mosquitto (20 messages in flight and 1,000 queued per
//! client), as a plant that changed nothing runs it.
//!
//! - the queue's disk full for seconds: weir holds the messages back (unacknowledged) and
//!   retries the write; once space is back every message arrives, and the source never
//!   stalls;
//! - a templated topic of 70,000 characters: dead-lettered with the reason, the 100 messages
//!   around it delivered, the publisher's connection never dropped;
//! - one trapping message among 2,000 at the default batch size: only it is dead-lettered;
//! - twenty 200 MiB messages to weir in a 128 MiB memory cgroup: refused or dead-lettered,
//!   the rest flows;
//! - a module that sleeps past its deadline beside a pass-through route;
//! - QoS 2 through a connection cut every 700 ms: every reading exactly once.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::PublishProperties;
use weir_tests::{Mosquitto, Subscriber, Tmpfs, WeirProcess, free_port, json_lines, metric, module, publish_v5, scrape_metrics, toml_path};

/// QoS 1 messages `data/<n % 10>` with payload `n` for every `n` in `range`.
fn numbered(range: std::ops::Range<usize>) -> Vec<(String, Vec<u8>, PublishProperties)> {
    range.map(|n| (format!("data/{}", n % 10), n.to_string().into_bytes(), PublishProperties::default())).collect()
}

/// Publish `range` in steps of `step` messages, `pause` apart; each step waits for the
/// broker's acknowledgements (so every message counted here was acknowledged to its publisher).
async fn publish_paced(port: u16, range: std::ops::Range<usize>, step: usize, pause: Duration) -> usize {
    let mut acknowledged = 0;
    let mut start = range.start;
    while start < range.end {
        let end = (start + step).min(range.end);
        publish_v5(port, numbered(start..end)).await;
        acknowledged += end - start;
        start = end;
        tokio::time::sleep(pause).await;
    }
    acknowledged
}

/// The distinct numbers in a file sink's output, once `n` of them are there (or fail after
/// `timeout`, saying which are missing).
async fn wait_for_numbers(path: &Path, n: usize, timeout: Duration) -> BTreeSet<u64> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let seen: BTreeSet<u64> = json_lines(path).iter().filter_map(|line| line["payload"].as_u64()).collect();
        if seen.len() >= n {
            return seen;
        }
        if tokio::time::Instant::now() > deadline {
            let missing: Vec<u64> = (0..n as u64).filter(|i| !seen.contains(i)).take(20).collect();
            panic!("{} of {n} messages in {} within {timeout:?}; missing (first 20): {missing:?}", seen.len(), path.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A pipeline on the broker at `local`, as `client_id`, whose dead letters go to
/// `deadletter.jsonl`; `tables` follow.
fn with_dead_letters(local: u16, client_id: &str, tables: &str) -> String {
    format!(
        "deadletter = \"dlq\"\n\n[broker]\nurl = \"mqtt://127.0.0.1:{local}\"\nclient_id = \"{client_id}\"\n\n[sinks.dlq]\ntype = \"file\"\npath = \"deadletter.jsonl\"\n\n{tables}"
    )
}

/// `weir run` of `pipeline` (with an operator endpoint) in a directory of its own.
fn start(pipeline: &str) -> (WeirProcess, tempfile::TempDir, u16) {
    start_with(pipeline, "")
}

/// [`start`] with more keys for the `[runtime]` table.
fn start_with(pipeline: &str, runtime: &str) -> (WeirProcess, tempfile::TempDir, u16) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = dir.path().join("pipeline.toml");
    std::fs::write(&path, format!("{pipeline}\n[runtime]\nhttp_listen = \"127.0.0.1:{port}\"\ndrain_timeout = \"5s\"\n{runtime}")).unwrap();
    (WeirProcess::start(&path), dir, port)
}

/// The queue's disk fills up while readings arrive, and is freed five seconds later. Before,
/// weir failed the write, withheld the acknowledgements for good, and Mosquitto's in-flight
/// window (20) filled: weir heard nothing more until restarted, and a short write left a
/// fragment in the segment that later cost a message. Now the write is retried until the
/// space is back: every reading published during and after the outage arrives, in a queue
/// with no damaged bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_disk_holds_messages_back_and_loses_none() {
    const DURING: usize = 500;
    const AFTER: usize = 500;
    let disk = Tmpfs::mount(8 << 20);
    let local = Mosquitto::start_stock();
    let out = tempfile::tempdir().unwrap();
    let output = out.path().join("cloud.jsonl");
    let (mut weir, _dir, port) = start(&format!(
        r#"
upstream = "cloud"

[broker]
url = "mqtt://127.0.0.1:{local}"
client_id = "weir-faults-disk"

[store]
dir = {store}

[sinks.cloud]
type = "file"
path = {output}

[routes]
up = "FROM /topics/data/# INTO $upstream"
"#,
        local = local.port,
        store = toml_path(&disk.path().join("store")),
        output = toml_path(&output),
    ));
    // Warm up: the queue's segment exists and a message went through.
    publish_v5(local.port, numbered(0..1)).await;
    wait_for_numbers(&output, 1, Duration::from_secs(10)).await;

    let ballast = disk.fill();
    let mut acknowledged = 1 + publish_paced(local.port, 1..1 + DURING, 50, Duration::from_millis(500)).await;
    let failing = metric(&scrape_metrics(port), "weir_queue_write_failing", &["sink=\"cloud\""]);
    assert_eq!(failing, Some(1.0), "the queue's writes should be failing while the disk is full");
    let arrived_while_full = json_lines(&output).len();
    assert!(arrived_while_full < acknowledged, "nothing should get through a full queue, yet {arrived_while_full} of {acknowledged} arrived");

    std::fs::remove_file(&ballast).unwrap();
    acknowledged += publish_paced(local.port, 1 + DURING..1 + DURING + AFTER, 50, Duration::from_millis(100)).await;
    let seen = wait_for_numbers(&output, acknowledged, Duration::from_secs(60)).await;
    assert_eq!(seen.len(), acknowledged, "every acknowledged reading arrives, once space is back");

    let metrics = scrape_metrics(port);
    assert!(metric(&metrics, "weir_queue_write_errors_total", &["sink=\"cloud\""]).unwrap_or(0.0) > 0.0, "the writes did fail");
    assert_eq!(metric(&metrics, "weir_queue_write_failing", &["sink=\"cloud\""]), Some(0.0));
    assert_eq!(metric(&metrics, "weir_queue_damaged_bytes_total", &["sink=\"cloud\""]).unwrap_or(0.0), 0.0, "a short write left a fragment");
    let log = weir.log_text();
    assert!(log.contains("its disk is full: free space there"), "the log says what is wrong:\n{log}");
    assert!(log.contains("the queue takes writes again"), "{log}");
    weir.stop();
}

/// A route whose topic comes from the body makes a topic of 70,000 characters for one
/// message of 101. MQTT strings are at most 65,535 bytes: before, the client wrote a wrong
/// length, the broker dropped the connection, and the same packet was sent again forever;
/// nothing behind it arrived. Now that message goes to `$deadletter` with a short reason,
/// and the other 100 arrive without a reconnection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_too_long_for_mqtt_is_dead_lettered_and_the_rest_flows() {
    let local = Mosquitto::start_stock();
    let (mut weir, dir, _port) = start(&with_dead_letters(
        local.port,
        "weir-faults-topic",
        r#"
[routes]
by_name = "FROM /topics/named/# INTO /topics/out/{$body.name}"
"#,
    ));
    let mut out = Subscriber::connect(local.port, &["out/#"]).await;
    let reading = |name: &str| ("named/x".to_owned(), serde_json::json!({ "name": name }).to_string().into_bytes(), PublishProperties::default());
    let mut messages: Vec<_> = (0..50).map(|n| reading(&format!("m{n}"))).collect();
    messages.push(reading(&"x".repeat(70_000)));
    messages.extend((50..100).map(|n| reading(&format!("m{n}"))));
    publish_v5(local.port, messages).await;

    let received = out.take(100, Duration::from_secs(20)).await;
    let topics: BTreeSet<String> = received.iter().map(|p| String::from_utf8(p.topic.to_vec()).unwrap()).collect();
    assert_eq!(topics, (0..100).map(|n| format!("out/m{n}")).collect());
    out.assert_quiet(Duration::from_millis(500)).await;

    let letters = weir_tests::wait_for_lines(&dir.path().join("deadletter.jsonl"), 1, Duration::from_secs(10)).await;
    assert_eq!(letters.len(), 1);
    let property = |name: &str| letters[0]["properties"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()["value"].as_str().unwrap().to_owned();
    assert_eq!(property("weir-dl-reason"), "sink-rejected");
    let detail = property("weir-dl-detail");
    assert!(detail.contains("the topic is 70004 bytes long; MQTT topics are at most 65535 bytes"), "{detail}");
    assert!(detail.len() < 300, "the detail repeats the topic ({} bytes)", detail.len());
    let log = weir.log_text();
    assert!(!log.contains("publisher connection lost"), "the long topic broke a connection:\n{log}");
    weir.stop();
}

/// One message that makes the module trap, among 2,000 at the default batch size (64).
/// Before, its whole batch (up to 63 innocent neighbours) went to `$deadletter`. Now the
/// batch's messages are called again one at a time: only the culprit is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_poison_message_among_2000_is_the_only_dead_letter() {
    const TOTAL: usize = 2000;
    let local = Mosquitto::start_stock();
    let (mut weir, dir, port) = start(&with_dead_letters(
        local.port,
        "weir-faults-poison",
        &format!(
            r#"
[modules.chaos]
path = {chaos}

[sinks.kept]
type = "file"
path = "kept.jsonl"

[routes]
chaos_in = 'FROM /topics/data/# INTO BrokeredEndpoint("/modules/chaos/inputs/in")'
chaos_out = 'FROM /messages/modules/chaos/outputs/* INTO kept'
"#,
            chaos = toml_path(&module("chaos")),
        ),
    ));
    let mut messages = numbered(0..TOTAL);
    messages[TOTAL / 2].1 = b"trap".to_vec();
    publish_v5(local.port, messages).await;

    let kept = wait_for_numbers(&dir.path().join("kept.jsonl"), TOTAL - 1, Duration::from_secs(60)).await;
    assert!(!kept.contains(&((TOTAL / 2) as u64)));
    weir_tests::wait_for_lines(&dir.path().join("deadletter.jsonl"), 1, Duration::from_secs(10)).await;
    // Any later dead letter would have been written by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let letters = json_lines(&dir.path().join("deadletter.jsonl"));
    assert_eq!(letters.len(), 1, "only the trapping message is a dead letter: {letters:?}");
    assert_eq!(letters[0]["payload_text"], "trap");
    assert_eq!(json_lines(&dir.path().join("kept.jsonl")).len(), TOTAL - 1, "every other message once");
    let log = weir.log_text();
    assert!(log.contains("calling the batch's messages one at a time"), "the trap should have come in a batch of several:\n{log}");
    assert_eq!(metric(&scrape_metrics(port), "weir_dead_letters_total", &["reason=\"trap\""]), Some(1.0));
    weir.stop();
}

/// An aggregate whose module traps on every 50th reading (count windows of 98 readings, so
/// the 980 good ones make 10 windows). Before, a trap sent its whole batch to `$deadletter`
/// and left the readings held since the last checkpoint unacknowledged: the broker never
/// sent them again (weir did not reconnect), its in-flight window filled, and the source
/// went silent. Now the windows are rolled back to the last checkpoint, the readings since
/// are given to a new instance again, and the batch's readings one at a time: each good
/// reading is counted in exactly one window, each trapping one is a dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregate_that_traps_on_every_50th_reading_counts_the_rest_exactly_once() {
    const TOTAL: u64 = 1000;
    let local = Mosquitto::start_stock();
    let (mut weir, dir, _port) = start(&with_dead_letters(
        local.port,
        "weir-faults-aggregate",
        &format!(
            r#"
[modules.ids]
path = {ids}

[modules.ids.window]
kind = "count"
size = 98
key = "$body.machine"

[sinks.windows]
type = "file"
path = "windows.jsonl"

[routes]
in = 'FROM /topics/data/# INTO BrokeredEndpoint("/modules/ids/inputs/in")'
out = 'FROM /messages/modules/ids/outputs/* INTO windows'
"#,
            ids = toml_path(&module("chaos_aggregate")),
        ),
    ));
    let reading = |id: u64| {
        let body = serde_json::json!({ "machine": "m1", "id": id, "trap": id % 50 == 49 });
        ("data/m1".to_owned(), body.to_string().into_bytes(), PublishProperties::default())
    };
    publish_v5(local.port, (0..TOTAL).map(reading).collect()).await;

    let windows = weir_tests::wait_for_lines(&dir.path().join("windows.jsonl"), 10, Duration::from_secs(60)).await;
    weir_tests::wait_for_lines(&dir.path().join("deadletter.jsonl"), 20, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut counted = std::collections::BTreeMap::<u64, usize>::new();
    for window in json_lines(&dir.path().join("windows.jsonl")) {
        for id in window["payload"]["ids"].as_array().unwrap() {
            *counted.entry(id.as_u64().unwrap()).or_default() += 1;
        }
    }
    let good: Vec<u64> = (0..TOTAL).filter(|id| id % 50 != 49).collect();
    let twice: Vec<u64> = counted.iter().filter(|(_, n)| **n > 1).map(|(id, _)| *id).collect();
    assert!(twice.is_empty(), "readings counted more than once: {twice:?}");
    assert_eq!(counted.keys().copied().collect::<Vec<_>>(), good, "every good reading in a window");
    assert_eq!(windows.len(), 10, "{windows:?}");
    let letters = json_lines(&dir.path().join("deadletter.jsonl"));
    let dead: Vec<u64> = letters.iter().map(|l| l["payload"]["id"].as_u64().unwrap()).collect();
    assert_eq!(dead, (0..TOTAL).filter(|id| id % 50 == 49).collect::<Vec<_>>(), "exactly the trapping readings are dead letters");
    assert!(letters.iter().all(|l| l["properties"].as_array().unwrap().iter().any(|p| p["name"] == "weir-dl-reason" && p["value"] == "trap")));
    weir.stop();
}

/// `weir run` of the `chaos_aggregate` module keyed by machine, with `window` as its window
/// table, results to `windows.jsonl`, dead letters to `deadletter.jsonl`.
fn ids_by_machine(local: u16, client_id: &str, window: &str) -> (WeirProcess, tempfile::TempDir, u16) {
    start(&with_dead_letters(
        local,
        client_id,
        &format!(
            r#"
[modules.ids]
path = {ids}

[modules.ids.window]
{window}
key = "$body.machine"
checkpoint_interval = "100ms"

[sinks.windows]
type = "file"
path = "windows.jsonl"

[routes]
in = 'FROM /topics/data/# INTO BrokeredEndpoint("/modules/ids/inputs/in")'
out = 'FROM /messages/modules/ids/outputs/* INTO windows'
"#,
            ids = toml_path(&module("chaos_aggregate")),
        ),
    ))
}

/// A reading of `machine` with `id`; `trap_close` makes its window's close trap.
fn reading(machine: &str, id: u64, trap_close: bool) -> (String, Vec<u8>, PublishProperties) {
    let body = serde_json::json!({ "machine": machine, "id": id, "trap_close": trap_close });
    (format!("data/{machine}"), body.to_string().into_bytes(), PublishProperties::default())
}

/// The one dead letter of a window whose close failed: its key and the ids its state holds.
fn given_up_window(letters: &[serde_json::Value]) -> (String, Vec<u64>) {
    assert_eq!(letters.len(), 1, "{letters:?}");
    let property =
        |name: &str| letters[0]["properties"].as_array().unwrap().iter().find(|p| p["name"] == name).map(|p| p["value"].as_str().unwrap().to_owned());
    assert_eq!(property("weir-dl-reason").as_deref(), Some("close-failed"), "{letters:?}");
    let ids = letters[0]["payload"]["ids"].as_array().unwrap().iter().map(|id| id.as_u64().unwrap()).collect();
    (property("window_key").unwrap(), ids)
}

/// The windows in `windows.jsonl` once there are `n`: key and ids, sorted.
async fn windows_counted(dir: &Path, n: usize) -> Vec<(String, Vec<u64>)> {
    let windows = weir_tests::wait_for_lines(&dir.join("windows.jsonl"), n, Duration::from_secs(10)).await;
    let mut counted: Vec<(String, Vec<u64>)> = windows
        .iter()
        .map(|w| (w["payload"]["key"].as_str().unwrap().to_owned(), w["payload"]["ids"].as_array().unwrap().iter().map(|id| id.as_u64().unwrap()).collect()))
        .collect();
    counted.sort();
    counted
}

/// A window whose close traps (processing-time windows, closed by the clock). Before, the
/// failure restored the windows from the last checkpoint and the window's result was gone,
/// though its readings had been acknowledged. Now the close is tried again on a new
/// instance, and when it fails there too the window's state (every reading it counted) goes
/// to `$deadletter` with reason `close-failed`; the other windows close as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_whose_close_traps_is_dead_lettered_with_its_state() {
    let local = Mosquitto::start_stock();
    let (mut weir, dir, _port) = ids_by_machine(local.port, "weir-faults-close", "kind = \"tumbling\"\nsize = \"1s\"");
    publish_v5(local.port, vec![reading("m1", 0, false), reading("m1", 1, true), reading("m1", 2, false), reading("m2", 3, false)]).await;
    let letters = weir_tests::wait_for_lines(&dir.path().join("deadletter.jsonl"), 1, Duration::from_secs(10)).await;
    assert_eq!(given_up_window(&letters), ("m1".to_owned(), vec![0, 1, 2]), "the window's state holds every reading it counted");

    // m2's window closed as usual; later windows of m1 too.
    publish_v5(local.port, vec![reading("m1", 4, false)]).await;
    assert_eq!(windows_counted(dir.path(), 2).await, vec![("m1".to_owned(), vec![4]), ("m2".to_owned(), vec![3])]);
    assert_eq!(json_lines(&dir.path().join("deadletter.jsonl")).len(), 1);
    weir.stop();
}

/// The same with count windows of three, which a message closes, not the clock. Before, the
/// close's failure was taken for the message's: the third reading of m1 was dead-lettered
/// (reason `trap`), the window stayed open, and each later reading of m1 met the same fate.
/// Now the third reading is counted in the window it ended, the window is dead-lettered with
/// its state, and m1's next window and m2's close as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_a_message_ends_whose_close_traps_is_dead_lettered_and_the_message_counted() {
    let local = Mosquitto::start_stock();
    let (mut weir, dir, _port) = ids_by_machine(local.port, "weir-faults-count-close", "kind = \"count\"\nsize = 3");
    let first = vec![reading("m1", 0, false), reading("m1", 1, true), reading("m2", 3, false), reading("m1", 2, false)];
    let then = vec![reading("m1", 4, false), reading("m2", 5, false), reading("m1", 6, false), reading("m2", 7, false), reading("m1", 8, false)];
    publish_v5(local.port, first.into_iter().chain(then).collect()).await;
    assert_eq!(windows_counted(dir.path(), 2).await, vec![("m1".to_owned(), vec![4, 6, 8]), ("m2".to_owned(), vec![3, 5, 7])]);
    let letters = weir_tests::wait_for_lines(&dir.path().join("deadletter.jsonl"), 1, Duration::from_secs(10)).await;
    assert_eq!(given_up_window(&letters), ("m1".to_owned(), vec![0, 1, 2]), "the window's state holds the reading that ended it");
    weir.stop();
}

/// A message too large for its sink's queue is dead-lettered; here the dead-letter sink's
/// queue is as small, so it refuses the dead letter too. Before, weir logged that and dropped
/// it while the broker got its acknowledgement. Now it is kept in the last-resort file
/// (`deadletter-last-resort.jsonl` in the store directory), fsynced, with why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_the_dead_letter_sink_refuses_is_kept_in_the_last_resort_file() {
    let local = Mosquitto::start_stock();
    let (mut weir, dir, port) = start(&format!(
        r#"
upstream = "cloud"
deadletter = "dlq"

[broker]
url = "mqtt://127.0.0.1:{local}"
client_id = "weir-faults-last-resort"

[store]
dir = "store"

[sinks.cloud]
type = "file"
path = "cloud.jsonl"
queue = {{ max_size = "1MiB" }}

[sinks.dlq]
type = "file"
path = "deadletter.jsonl"
queue = {{ max_size = "1MiB" }}

[routes]
up = "FROM /topics/data/# INTO $upstream"
"#,
        local = local.port,
    ));
    let mut messages = numbered(0..10);
    messages.insert(5, ("data/big".to_owned(), "x".repeat(100 << 10).into_bytes(), PublishProperties::default()));
    publish_v5(local.port, messages).await;

    wait_for_numbers(&dir.path().join("cloud.jsonl"), 10, Duration::from_secs(20)).await;
    let kept = weir_tests::wait_for_lines(&dir.path().join("store/deadletter-last-resort.jsonl"), 1, Duration::from_secs(10)).await;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["payload_text"].as_str().map(str::len), Some(100 << 10));
    let reason = kept[0]["properties"].as_array().unwrap().iter().find(|p| p["name"] == "weir-dl-reason").unwrap()["value"].clone();
    assert_eq!(reason, "too-large");
    let why = kept[0]["weir-last-resort"].as_str().unwrap();
    assert!(why.starts_with("too large for the dead-letter queue"), "{why}");
    assert!(json_lines(&dir.path().join("deadletter.jsonl")).is_empty());
    assert_eq!(metric(&scrape_metrics(port), "weir_dead_letters_last_resort_total", &[]), Some(1.0));
    weir.stop();
}

/// Twenty messages of 200 MiB, five of 8 MiB and 100 readings, to weir in a 128 MiB memory
/// cgroup with the default `runtime.max_message_size` (16 MiB) and `in_flight_bytes = "32MiB"`
/// (what a 128 MiB container should set). Over MQTT 5 weir tells the broker its limit in
/// CONNECT and the broker does not send the huge ones; over MQTT 3.1.1, which cannot say it,
/// each huge payload is dropped as it is read (before, rumqttc took up to 256 MiB into
/// memory) and the message is dead-lettered as `too-large` with its size. Either way weir
/// stays up, the OOM killer never fires, the 8 MiB messages and the readings arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_messages_under_a_memory_limit_are_refused_or_dead_lettered_and_the_rest_flows() {
    const HUGE: usize = 200 << 20;
    for protocol in ["5", "3.1.1"] {
        let local = Mosquitto::start_stock();
        let (mut weir, dir, _port) = start_with(
            &format!(
                r#"
upstream = "cloud"
deadletter = "dlq"

[broker]
url = "mqtt://127.0.0.1:{local}"
client_id = "weir-faults-huge"
protocol = "{protocol}"

[sinks.cloud]
type = "file"
path = "cloud.jsonl"
queue = false

[sinks.dlq]
type = "file"
path = "deadletter.jsonl"

[routes]
up = "FROM /topics/data/# INTO $upstream"
"#,
                local = local.port,
            ),
            "in_flight_bytes = \"32MiB\"\n",
        );
        let memory = weir_tests::MemoryLimit::new(128 << 20);
        memory.add(weir.pid().unwrap());
        for n in 0..20 {
            publish_v5(local.port, vec![(format!("data/huge/{n}"), vec![b'x'; HUGE], PublishProperties::default())]).await;
        }
        publish_v5(local.port, (0..5).map(|n| (format!("data/big/{n}"), vec![b'y'; 8 << 20], PublishProperties::default())).collect()).await;
        publish_v5(local.port, numbered(0..100)).await;
        wait_for_numbers(&dir.path().join("cloud.jsonl"), 100, Duration::from_secs(120)).await;
        // The 8 MiB ones went in before the readings, on the same subscription.
        let big: Vec<_> =
            json_lines(&dir.path().join("cloud.jsonl")).into_iter().filter(|line| line["topic"].as_str().is_some_and(|t| t.starts_with("data/big/"))).collect();
        assert_eq!(big.len(), 5, "the 8 MiB messages");
        assert!(big.iter().all(|line| line["payload_text"].as_str().is_some_and(|p| p.len() == 8 << 20)), "an 8 MiB message arrived cut");
        eprintln!("MQTT {protocol}: weir's peak memory in its cgroup {} MiB", memory.peak_bytes() >> 20);
        match protocol {
            "5" => assert!(json_lines(&dir.path().join("deadletter.jsonl")).is_empty(), "the broker should not have sent the huge ones"),
            _ => {
                let letters = weir_tests::wait_for_lines(&dir.path().join("deadletter.jsonl"), 20, Duration::from_secs(30)).await;
                let detail = letters[0]["properties"].as_array().unwrap().iter().find(|p| p["name"] == "weir-dl-detail").unwrap()["value"].clone();
                assert!(detail.as_str().unwrap().contains(&format!("{HUGE} bytes is more than runtime.max_message_size (16777216 bytes)")), "{detail}");
                assert_eq!(letters.len(), 20);
            }
        }
        assert!(
            json_lines(&dir.path().join("cloud.jsonl")).iter().all(|line| !line["topic"].as_str().unwrap_or("").starts_with("data/huge/")),
            "a huge message reached the sink"
        );
        assert_eq!(memory.oom_kills(), 0, "weir ran out of memory:\n{}", weir.log_text());
        weir.stop();
    }
}

/// A module that sleeps 60 s (in a host call, where epoch interruption cannot reach it),
/// beside a pass-through route on the same source. Before, the call held its instance and
/// thread for the whole minute, whatever its deadline. Now each sleep ends at the call's
/// deadline: five sleepers are dead-lettered with reason `deadline` about a second apart,
/// the 2,000 readings of the pass-through route arrive at the rate they are published
/// meanwhile, and SIGTERM stops weir within the drain timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_that_sleeps_is_stopped_at_its_deadline_and_slows_no_other_route() {
    const READINGS: usize = 2000;
    const SLEEPERS: usize = 5;
    let local = Mosquitto::start_stock();
    let (mut weir, dir, _port) = start(&with_dead_letters(
        local.port,
        "weir-faults-sleep",
        &format!(
            r#"
[modules.chaos]
path = {chaos}
deadline = "1s"

[sinks.kept]
type = "file"
path = "kept.jsonl"

[routes]
chaos_in = 'FROM /topics/slow/# INTO BrokeredEndpoint("/modules/chaos/inputs/in")'
chaos_out = 'FROM /messages/modules/chaos/outputs/* INTO kept'
passed = 'FROM /topics/data/# INTO kept'
"#,
            chaos = toml_path(&module("chaos")),
        ),
    ));
    let sent = std::time::Instant::now();
    let port = local.port;
    let sleepers = tokio::spawn(async move {
        for _ in 0..SLEEPERS {
            publish_v5(port, vec![("slow/x".to_owned(), b"sleep".to_vec(), PublishProperties::default())]).await;
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    });
    // 2,000 readings over about two seconds, while the sleepers keep the module busy for five.
    publish_paced(local.port, 0..READINGS, 100, Duration::from_millis(100)).await;
    let published = sent.elapsed();
    wait_for_numbers(&dir.path().join("kept.jsonl"), READINGS, Duration::from_secs(30)).await;
    let passed = sent.elapsed();
    sleepers.await.unwrap();
    let letters = weir_tests::wait_for_lines(&dir.path().join("deadletter.jsonl"), SLEEPERS, Duration::from_secs(30)).await;
    let slept = sent.elapsed();
    eprintln!("readings published in {published:?}, all passed after {passed:?}; {SLEEPERS} sleepers dead-lettered after {slept:?}");
    for letter in &letters {
        let reason = letter["properties"].as_array().unwrap().iter().find(|p| p["name"] == "weir-dl-reason").unwrap()["value"].clone();
        assert_eq!((letter["payload_text"].as_str(), reason.as_str()), (Some("sleep"), Some("deadline")));
    }
    assert!(slept < Duration::from_secs(20), "the sleepers were stopped only after {slept:?}");
    assert!(
        passed < published + Duration::from_secs(3),
        "the pass-through route fell behind its publisher: published in {published:?}, arrived after {passed:?}\n{}",
        weir.log_text()
    );

    let stopping = std::time::Instant::now();
    weir.stop();
    assert!(stopping.elapsed() < Duration::from_secs(10), "SIGTERM took {:?}", stopping.elapsed());
}

/// Twenty sleepers queued for a module (a second each, at its deadline), then SIGTERM with
/// `drain_timeout = "5s"`: the module's backlog no longer holds the stop up for twenty
/// seconds; weir stops within about two drain timeouts (the source's wait for what is in
/// flight, then the modules'), and what it did not finish stays unacknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_slow_calls_does_not_hold_up_the_stop() {
    let local = Mosquitto::start_stock();
    let (mut weir, dir, _port) = start(&with_dead_letters(
        local.port,
        "weir-faults-backlog",
        &format!(
            r#"
[modules.chaos]
path = {chaos}
deadline = "1s"
own_thread = true
batch_size = 1

[routes]
chaos_in = 'FROM /topics/data/# INTO BrokeredEndpoint("/modules/chaos/inputs/in")'
"#,
            chaos = toml_path(&module("chaos")),
        ),
    ));
    publish_v5(local.port, (0..20).map(|_| ("data/x".to_owned(), b"sleep".to_vec(), PublishProperties::default())).collect()).await;
    weir_tests::wait_for_lines(&dir.path().join("deadletter.jsonl"), 1, Duration::from_secs(10)).await;
    let stopping = std::time::Instant::now();
    weir.stop();
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(14), "SIGTERM took {took:?} with a backlog of slow calls:\n{}", weir.log_text());
    assert!(weir.log_text().contains("the module did not finish its queue within drain_timeout"), "{}", weir.log_text());
}

/// QoS 2 into weir through a connection that is cut every 700 ms while 5,000 readings
/// arrive at 500 a second. A cut between weir's PUBREC and the broker's PUBREL leaves the
/// broker to send the PUBREL again on the new connection; rumqttc had forgotten the packet id
/// (rumqtt issue 664), called the PUBREL unsolicited and dropped the connection, and the
/// broker sent it again on the next one: a reconnect storm, with nothing delivered. And a
/// cut between the pipeline's acceptance and the broker's receipt of the PUBREC made the
/// broker send the PUBLISH again, which weir passed on a second time (50 of 5,000). Now every
/// reading arrives exactly once and weir reconnects once per cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_2_across_connection_cuts_delivers_everything_exactly_once_without_a_reconnect_storm() {
    const TOTAL: usize = 5000;
    let broker = Mosquitto::start();
    let proxy = weir_tests::Proxy::start(broker.port).await;
    let (mut weir, dir, _port) = start(&format!(
        r#"
upstream = "cloud"

[broker]
url = "mqtt://127.0.0.1:{port}"
client_id = "weir-faults-qos2"
qos = 2

[sinks.cloud]
type = "file"
path = "cloud.jsonl"

[routes]
up = "FROM /topics/data/# INTO $upstream"
"#,
        port = proxy.port,
    ));
    let publisher = tokio::spawn(async move {
        for start in (0..TOTAL).step_by(50) {
            weir_tests::publish_v5_qos(broker.port, numbered(start..start + 50), rumqttc::v5::mqttbytes::QoS::ExactlyOnce).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        broker
    });
    let mut cuts = 0;
    while !publisher.is_finished() {
        tokio::time::sleep(Duration::from_millis(700)).await;
        cuts += usize::from(proxy.cut() > 0);
    }
    let _broker = publisher.await.unwrap();
    let seen = wait_for_numbers(&dir.path().join("cloud.jsonl"), TOTAL, Duration::from_secs(60)).await;
    assert_eq!(seen.len(), TOTAL);
    let lines = json_lines(&dir.path().join("cloud.jsonl")).len();
    let log = weir.log_text();
    let connected = log.lines().filter(|line| line.contains("connected") && line.contains("session_present")).count();
    eprintln!("{cuts} cuts, {connected} connections, {} duplicates", lines - TOTAL);
    // A reading whose PUBREC a cut lost is sent again by the broker, with the same packet id
    // until its PUBREL: weir answers it instead of passing it on twice.
    assert_eq!(lines, TOTAL, "{} readings passed on twice", lines - TOTAL);
    assert!(connected <= cuts + 2, "{connected} connections for {cuts} cuts: a reconnect storm\n{log}");
    weir.stop();
}
