//! Nothing lost: the store-and-forward queue with real processes and real brokers.
//!
//! - kill -9 of weir in the middle of 100,000 QoS 1 messages, then a restart: every message
//!   arrives at the upstream broker; duplicates are counted and are no more than what the
//!   local broker sent again (counted in its log) plus the queue's replay of the batches on
//!   their way (docs/store-and-forward.md);
//! - the upstream broker stopped for a while: messages queue (the queue's depth shows it),
//!   then arrive in order once it is back;
//! - the local broker restarted: weir reconnects and resubscribes, nothing lost;
//! - a full queue under `block` stops weir taking messages instead of growing past its cap;
//!   `drop_oldest` and the time to live account for every message (metrics);
//! - after an outage higher priority drains first, lower is not starved, each lane in order;
//! - messages that outlive their time to live are dropped, not delivered late;
//! - a message too large for the queue goes to `$deadletter` (here a local topic of our
//!   choosing) with reason `too-large`.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::PublishProperties;
use weir::queue::{QueueSettings, report};
use weir_tests::{
    Mosquitto, RunningPipeline, Subscriber, WeirProcess, free_port, http_get, json_lines, metric, publish_v5, scrape_metrics, toml_path, user_properties,
};

/// A pipeline relaying `data/#` from `local` to `cloud/…` on the `cloud` broker through a
/// queue in `store`.
fn relay(local: u16, cloud: u16, store: &Path, extra: &str) -> String {
    format!(
        r#"
upstream = "cloud"

[broker]
url = "mqtt://127.0.0.1:{local}"
client_id = "weir-saf-in"
clean_session = false

[store]
dir = {store}
{extra}

[runtime]
drain_timeout = "2s"

[sinks.cloud]
type = "mqtt"
topic = "cloud/{{topic}}"
connection = {{ url = "mqtt://127.0.0.1:{cloud}", client_id = "weir-saf-cloud" }}

[routes]
up = "FROM /topics/data/# INTO $upstream"
"#,
        store = toml_path(store),
    )
}

fn numbered(range: std::ops::Range<usize>) -> Vec<(String, Vec<u8>, PublishProperties)> {
    range.map(|i| (format!("data/{}", i % 10), format!("{i}").into_bytes(), PublishProperties::default())).collect()
}

fn number(publish: &rumqttc::v5::mqttbytes::v5::Publish) -> usize {
    std::str::from_utf8(&publish.payload).unwrap().parse().unwrap()
}

fn queue_report(store: &Path, sink: &str) -> report::QueueReport {
    let settings = QueueSettings {
        dir: store.join(sink),
        max_bytes: 1 << 30,
        when_full: weir::queue::WhenFull::Block,
        fsync: weir::queue::Fsync::Batch,
        time_to_live: Duration::from_secs(7200),
    };
    report::inspect(sink, &settings.dir, settings.limits()).unwrap()
}

/// Receive until every number below `total` was seen; returns how often each arrived.
/// The payload numbers in the file sink's lines once `n` distinct ones are there (sorted,
/// without repeats), or fail after `timeout` saying how many came.
async fn wait_for_distinct_numbers(path: &Path, n: usize, timeout: Duration) -> Vec<usize> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut seen: Vec<usize> = json_lines(path).iter().map(|line| line["payload"].as_u64().unwrap() as usize).collect();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() >= n {
            return seen;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {} of {n} distinct messages in {} within {timeout:?}", seen.len(), path.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn receive_all(subscriber: &mut Subscriber, total: usize, timeout: Duration, counts: &mut HashMap<usize, u32>) {
    let deadline = tokio::time::Instant::now() + timeout;
    while counts.len() < total {
        match tokio::time::timeout_at(deadline, subscriber.next()).await {
            Ok(Some(publish)) => *counts.entry(number(&publish)).or_default() += 1,
            _ => panic!("only {} of {total} distinct messages arrived", counts.len()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_100k_qos1_messages_loses_nothing() {
    const TOTAL: usize = 100_000;
    // It logs every packet: what it sends weir again after the restart is counted from its log.
    let local = Mosquitto::start_logging_packets();
    let cloud = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("relay.toml");
    std::fs::write(&pipeline, relay(local.port, cloud.port, &dir.path().join("store"), "")).unwrap();
    let mut received = Subscriber::connect(cloud.port, &["cloud/#"]).await;

    let mut first = WeirProcess::start(&pipeline);
    let publisher = tokio::spawn(publish_v5(local.port, numbered(0..TOTAL)));
    let mut counts = HashMap::new();
    receive_all(&mut received, 30_000, Duration::from_secs(120), &mut counts).await;
    first.kill9();
    let at_kill = counts.len();
    let duplicates_before: u32 = counts.values().map(|n| n - 1).sum();

    // Publishing goes on while weir is dead: the local broker keeps it for weir's session.
    // The second run serves its metrics: on failure they say whether the copies came from
    // the broker (the source's count) or from the queue (the delivered count).
    let metrics_port = free_port();
    let second = std::fs::read_to_string(&pipeline).unwrap().replace("[runtime]", &format!("[runtime]\nhttp_listen = \"127.0.0.1:{metrics_port}\""));
    std::fs::write(&pipeline, second).unwrap();
    let mut weir = WeirProcess::start(&pipeline);
    receive_all(&mut received, TOTAL, Duration::from_secs(240), &mut counts).await;
    publisher.await.unwrap();
    // Redelivered copies can still be on their way after the last new one: they count too.
    while let Ok(Some(publish)) = tokio::time::timeout(Duration::from_millis(500), received.next()).await {
        *counts.entry(number(&publish)).or_default() += 1;
    }
    assert_eq!(counts.len(), TOTAL, "numbers outside 0..{TOTAL} arrived");
    let scraped = scrape_metrics(metrics_port);
    let counters = ["weir_source_messages_total", "weir_queue_delivered_total", "weir_sink_messages_total"];
    let counters: Vec<&str> = scraped.lines().filter(|line| counters.iter().any(|name| line.starts_with(name))).collect();
    weir.stop();

    let duplicates: u32 = counts.values().map(|n| n - 1).sum();
    // The broker's redeliveries: messages whose acknowledgement had not reached it. Weir's
    // own share is the queue's replay: the batches on their way to the sink when it died
    // (runtime.batch_size × the MQTT sink's pipeline depth, defaults). docs/store-and-forward.md
    // says why the first can be far above weir's receive maximum with this broker.
    let redelivered = local.redeliveries_to("weir-saf-in") as u32;
    let bound = redelivered + 64 * 4;
    eprintln!(
        "kill -9 after {at_kill} messages had arrived: all {TOTAL} arrived, {duplicates} duplicates; the broker sent {redelivered} again (bound {bound})"
    );
    // On failure: which numbers came twice, and both runs' logs, to tell where the copies came from.
    let mut repeated: Vec<usize> = counts.iter().filter(|(_, n)| **n > 1).map(|(i, _)| *i).collect();
    repeated.sort_unstable();
    let log = |weir: &WeirProcess| weir.log_text().lines().filter(|line| !line.contains("acknowledgements arrive")).collect::<Vec<_>>().join("\n");
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates is more than the broker's {redelivered} redeliveries plus the queue's replay ({bound}) ({duplicates_before} of them before the kill; {} numbers came more than once, from {:?} to {:?})\nsecond run's counters:\n{}\nfirst run:\n{}\nsecond run:\n{}",
        repeated.len(),
        repeated.first(),
        repeated.last(),
        counters.join("\n"),
        log(&first),
        log(&weir)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_outage_queues_messages_then_delivers_them_in_order() {
    let local = Mosquitto::start();
    let mut cloud = Mosquitto::start_persistent();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let metrics_port = free_port();
    let pipeline = dir.path().join("relay.toml");
    let toml = relay(local.port, cloud.port, &store, "").replace("[runtime]", &format!("[runtime]\nhttp_listen = \"127.0.0.1:{metrics_port}\""));
    std::fs::write(&pipeline, toml).unwrap();
    let mut received = Subscriber::connect_persistent(cloud.port, &["cloud/#"], "saf-outage-watcher").await;
    let mut weir = WeirProcess::start(&pipeline);
    assert_eq!(http_get(metrics_port, "/healthz").0, 200);
    assert_eq!(http_get(metrics_port, "/readyz"), (200, "ready\n".to_owned()), "ready once the source is subscribed");

    publish_v5(local.port, numbered(0..500)).await;
    let before: Vec<usize> = received.take(500, Duration::from_secs(30)).await.iter().map(number).collect();
    assert_eq!(before, (0..500).collect::<Vec<_>>());

    // The upstream goes away; weir keeps taking messages and queues them.
    drop(received);
    cloud.stop_gracefully();
    publish_v5(local.port, numbered(500..3000)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let report = queue_report(&store, "cloud");
        let depth: u64 = report.lanes.iter().map(|l| l.depth).sum();
        if depth >= 2500 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "queue depth {depth}, expected 2500:\n{report}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The gauges are refreshed every second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let during = scrape_metrics(metrics_port);
    // 2500, plus the batch that was in flight when the broker went away, if any.
    let depth = metric(&during, "weir_queue_depth_messages", &["sink=\"cloud\""]).unwrap_or(0.0);
    assert!((2500.0..=2564.0).contains(&depth), "depth gauge {depth}:\n{during}");
    let age = metric(&during, "weir_queue_oldest_age_seconds", &["sink=\"cloud\""]).unwrap_or(0.0);
    assert!(age >= 1.0, "the backlog's age is visible: {age}");

    // Back: the backlog arrives in order, nothing lost, and live traffic follows it.
    cloud.start_again();
    let mut received = Subscriber::connect_persistent(cloud.port, &["cloud/#"], "saf-outage-watcher").await;
    publish_v5(local.port, numbered(3000..3100)).await;
    // A batch in flight when the broker went away may be delivered twice: first arrivals count.
    let mut after = Vec::new();
    let mut seen: std::collections::HashSet<usize> = (0..500).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while after.len() < 2600 {
        let publish = tokio::time::timeout_at(deadline, received.next()).await.unwrap_or_else(|_| panic!("{} of 2600 arrived", after.len())).unwrap();
        if seen.insert(number(&publish)) {
            after.push(number(&publish));
        }
    }
    let first_wrong = after.iter().zip(500..).position(|(got, want)| *got != want);
    assert_eq!(first_wrong, None, "out of order at position {first_wrong:?}: {:?}", first_wrong.map(|i| &after[i.saturating_sub(3)..(i + 3).min(after.len())]));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let done = loop {
        let text = scrape_metrics(metrics_port);
        if metric(&text, "weir_queue_depth_messages", &["sink=\"cloud\""]) == Some(0.0) || tokio::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let replayed = metric(&done, "weir_queue_delivered_total", &["sink=\"cloud\"", "kind=\"replayed\""]).unwrap_or(0.0);
    let live = metric(&done, "weir_queue_delivered_total", &["sink=\"cloud\"", "kind=\"live\""]).unwrap_or(0.0);
    assert!(replayed >= 2500.0, "the backlog counts as replayed ({replayed}):\n{done}");
    // All 500 before the outage, less the batch that was in flight when the broker went away.
    assert!(live >= 436.0, "traffic before the outage counts as live ({live})");
    assert_eq!(metric(&done, "weir_queue_depth_messages", &["sink=\"cloud\""]), Some(0.0));
    weir.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_the_local_broker_loses_nothing() {
    let mut local = Mosquitto::start_persistent();
    let out = tempfile::tempdir().unwrap();
    let lines = out.path().join("up.jsonl");
    let toml = format!(
        r#"
upstream = "file"
[broker]
url = "mqtt://127.0.0.1:{port}"
client_id = "weir-local-restart"
clean_session = false
[store]
dir = {store}
[sinks.file]
type = "file"
path = {lines}
[routes]
up = "FROM /topics/data/# INTO $upstream"
"#,
        port = local.port,
        store = toml_path(&out.path().join("store")),
        lines = toml_path(&lines),
    );
    let pipeline = RunningPipeline::start(&toml).await;
    publish_v5(local.port, numbered(0..2000)).await;
    local.stop_gracefully();
    local.start_again();
    publish_v5(local.port, numbered(2000..4000)).await;
    // At least once: the restart may write some twice, so wait for 4,000 distinct ones.
    let seen = wait_for_distinct_numbers(&lines, 4000, Duration::from_secs(60)).await;
    assert_eq!(seen, (0..4000).collect::<Vec<_>>());
    pipeline.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_blocks_the_source_instead_of_growing() {
    let local = Mosquitto::start();
    let cloud_port = free_port();
    let store = tempfile::tempdir().unwrap();
    let pipeline = RunningPipeline::start(&relay(local.port, cloud_port, store.path(), "max_size = \"1MiB\"\nwhen_full = \"block\"")).await;

    // 4 MB of messages against a 1 MiB cap, with the upstream down.
    let padded: Vec<_> = (0..20_000).map(|i| (format!("data/{i}"), format!("{i:0>200}").into_bytes(), PublishProperties::default())).collect();
    let publisher = tokio::spawn(publish_v5(local.port, padded));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = queue_report(store.path(), "cloud");
    let bytes: u64 = report.lanes.iter().map(|l| l.bytes).sum();
    let depth: u64 = report.lanes.iter().map(|l| l.depth).sum();
    assert!(bytes <= 1 << 20, "the queue grew past its cap:\n{report}");
    assert!(depth > 1000 && depth < 20_000, "expected a full queue of part of the messages:\n{report}");

    // The upstream comes back: everything arrives, the queue drains.
    let cloud = Mosquitto::start_with(cloud_port, "allow_anonymous true\n");
    let mut received = Subscriber::connect(cloud.port, &["cloud/#"]).await;
    let mut counts = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while counts.len() < 20_000 {
        match tokio::time::timeout_at(deadline, received.next()).await {
            Ok(Some(publish)) => *counts.entry(std::str::from_utf8(&publish.payload).unwrap().parse::<usize>().unwrap()).or_insert(0) += 1,
            _ => panic!("{} of 20000 arrived", counts.len()),
        }
    }
    publisher.await.unwrap();
    pipeline.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_past_their_time_to_live_are_dropped_not_delivered_late() {
    let local = Mosquitto::start();
    let cloud_port = free_port();
    let store = tempfile::tempdir().unwrap();
    // Route `old` keeps messages 1 s (IoT Edge's timeToLiveSecs); `fresh` the [store] default.
    let toml = relay(local.port, cloud_port, store.path(), "").replace(
        r#"up = "FROM /topics/data/# INTO $upstream""#,
        "old = { route = 'FROM /topics/data/old/# INTO $upstream', time_to_live = 1 }\nfresh = 'FROM /topics/data/fresh/# INTO $upstream'",
    );
    let pipeline = RunningPipeline::start(&toml).await;
    let old: Vec<_> = (0..50).map(|i| (format!("data/old/{i}"), format!("{i}").into_bytes(), PublishProperties::default())).collect();
    publish_v5(local.port, old).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let cloud = Mosquitto::start_with(cloud_port, "allow_anonymous true\n");
    let mut received = Subscriber::connect(cloud.port, &["cloud/#"]).await;
    publish_v5(local.port, vec![("data/fresh/1".into(), b"50".to_vec(), PublishProperties::default())]).await;
    let fresh = received.take(1, Duration::from_secs(30)).await;
    assert_eq!(number(&fresh[0]), 50, "the expired messages must not arrive before the fresh one");
    received.assert_quiet(Duration::from_millis(500)).await;
    pipeline.stop().await.unwrap();
    let depth: u64 = queue_report(store.path(), "cloud").lanes.iter().map(|l| l.depth).sum();
    assert_eq!(depth, 0, "expired messages are removed from the queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_too_large_for_the_queue_is_dead_lettered_with_the_reason() {
    let local = Mosquitto::start();
    let cloud = Mosquitto::start();
    let store = tempfile::tempdir().unwrap();
    let mut received = Subscriber::connect(cloud.port, &["cloud/#"]).await;
    let mut dead = Subscriber::connect(local.port, &["plant/dlq"]).await;
    let toml = relay(local.port, cloud.port, store.path(), "max_size = \"1MiB\"")
        .replace("upstream = \"cloud\"", "upstream = \"cloud\"\ndeadletter = \"/topics/plant/dlq\"");
    let pipeline = RunningPipeline::start(&toml).await;
    publish_v5(
        local.port,
        vec![("data/big".into(), vec![b'x'; 200_000], PublishProperties::default()), ("data/small".into(), b"1".to_vec(), PublishProperties::default())],
    )
    .await;
    let small = received.take(1, Duration::from_secs(30)).await;
    assert_eq!(&small[0].payload[..], b"1");
    let letter = dead.take(1, Duration::from_secs(30)).await;
    assert_eq!(letter[0].payload.len(), 200_000);
    let properties = user_properties(&letter[0]);
    assert!(properties.contains(&("weir-dl-reason".into(), "too-large".into())), "{properties:?}");
    assert!(properties.iter().any(|(k, v)| k == "weir-dl-detail" && v.contains("raise its max_size")), "{properties:?}");
    pipeline.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_size_cap_and_the_time_to_live_are_applied_and_counted() {
    let local = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let pipeline = dir.path().join("relay.toml");
    // The upstream never comes: 4 MB of messages meet a 1 MiB cap, and what is kept expires.
    let toml = relay(local.port, free_port(), &dir.path().join("store"), "max_size = \"1MiB\"\nwhen_full = \"drop_oldest\"\ntime_to_live = \"3s\"")
        .replace("[runtime]", &format!("[runtime]\nhttp_listen = \"127.0.0.1:{metrics_port}\""));
    std::fs::write(&pipeline, toml).unwrap();
    let mut weir = WeirProcess::start(&pipeline);
    let padded: Vec<_> = (0..20_000).map(|i| (format!("data/{i}"), format!("{i:0>200}").into_bytes(), PublishProperties::default())).collect();
    publish_v5(local.port, padded).await;

    // Every message is accounted for: dropped for room, or expired; none silently gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (dropped, expired) = loop {
        let text = scrape_metrics(metrics_port);
        let dropped = metric(&text, "weir_queue_dropped_total", &["sink=\"cloud\"", "reason=\"full\""]).unwrap_or(0.0);
        let expired = metric(&text, "weir_queue_expired_total", &["sink=\"cloud\""]).unwrap_or(0.0);
        if dropped + expired >= 20_000.0 {
            break (dropped, expired);
        }
        assert!(tokio::time::Instant::now() < deadline, "dropped {dropped} + expired {expired} of 20000:\n{text}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(dropped + expired, 20_000.0);
    assert!(dropped > 0.0 && expired > 0.0, "dropped {dropped}, expired {expired}");
    weir.stop();
    let log = weir.log_text();
    assert!(log.contains("queue full (when_full = \"drop_oldest\")") && log.contains("waited longer than their time to live"), "both are logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_higher_priority_goes_first_and_each_lane_keeps_its_order() {
    let local = Mosquitto::start();
    let cloud_port = free_port();
    let store = tempfile::tempdir().unwrap();
    let toml = relay(local.port, cloud_port, store.path(), "").replace(
        r#"up = "FROM /topics/data/# INTO $upstream""#,
        "bulk = { route = 'FROM /topics/data/bulk/# INTO $upstream', priority = 5 }\nalarm = { route = 'FROM /topics/data/alarm/# INTO $upstream', priority = 0 }",
    );
    let pipeline = RunningPipeline::start(&toml).await;
    // The bulk readings queue first, then the alarms, while the upstream is down.
    let bulk: Vec<_> = (0..300).map(|i| (format!("data/bulk/{i}"), format!("{i}").into_bytes(), PublishProperties::default())).collect();
    // 800 alarms make 13 batches of 64: at least one "every 8th batch" turn falls among them.
    let alarms: Vec<_> = (1000..1800).map(|i| (format!("data/alarm/{i}"), format!("{i}").into_bytes(), PublishProperties::default())).collect();
    publish_v5(local.port, bulk).await;
    publish_v5(local.port, alarms).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while queue_report(store.path(), "cloud").lanes.iter().map(|l| l.depth).sum::<u64>() < 1100 {
        assert!(tokio::time::Instant::now() < deadline, "not all 1100 queued");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let cloud = Mosquitto::start_with(cloud_port, "allow_anonymous true\n");
    let mut received = Subscriber::connect(cloud.port, &["cloud/#"]).await;
    let mut order = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while order.len() < 1100 {
        let publish = tokio::time::timeout_at(deadline, received.next()).await.unwrap_or_else(|_| panic!("{} of 1100 arrived", order.len())).unwrap();
        if seen.insert(number(&publish)) {
            order.push(number(&publish));
        }
    }
    pipeline.stop().await.unwrap();
    // Alarms lead; bulk gets one batch in eight meanwhile (plus, possibly, the batch that was
    // being retried when the link came back).
    let alarms_first: Vec<usize> = order.iter().copied().filter(|n| *n >= 1000).collect();
    let bulk_order: Vec<usize> = order.iter().copied().filter(|n| *n < 1000).collect();
    assert_eq!(alarms_first, (1000..1800).collect::<Vec<_>>(), "alarms in order");
    assert_eq!(bulk_order, (0..300).collect::<Vec<_>>(), "bulk in order");
    let last_alarm = order.iter().rposition(|n| *n >= 1000).unwrap();
    let bulk_before_last_alarm = order[..last_alarm].iter().filter(|n| **n < 1000).count();
    assert!(bulk_before_last_alarm <= 64 * 3, "alarms drained first ({bulk_before_last_alarm} bulk messages went before the last alarm)");
    assert!(bulk_before_last_alarm >= 1, "bulk is not starved while alarms drain (one batch in eight)");
}
