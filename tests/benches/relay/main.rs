//! The performance issue's benchmark, one command (`scripts/bench-relay.sh`, which builds
//! the release binary this measures and installs Node-RED). Everything on loopback, side by
//! side in one run, each consumer's CPU time and the broker's read from /proc (the broker's
//! as a share of one core over the run):
//!
//! - R1: publisher → Mosquitto → weir (MQTT source → pass-through WASM filter → null sink),
//!   against publisher → Mosquitto → `mosquitto_sub`; QoS 0 and 1, 64 and 256 B;
//! - R1b: the same with weir republishing to a local topic (counted by `mosquitto_sub`);
//! - R8: latency weir adds (publish → weir → subscriber minus publish → subscriber) at half
//!   the R1b rate, beside what a bare republishing client adds ([`latency`]);
//! - R6: the threshold job as a Node-RED flow against weir with the WASM threshold filter:
//!   throughput at QoS 1 and at QoS 0, p99 latency at QoS 1 ([`node_red`]);
//! - R8 and R6 also with weir reaching the broker through its Unix domain socket
//!   (`mqtt+unix://`), as weir beside its broker can; everything else uses TCP;
//! - R9: idle RSS with one module, and what each further idle module instance adds; startup
//!   to ready with the module already compiled.
//!
//! The publisher is an rumqttc MQTT 5 client in this process sending as fast as the broker
//! takes (`mosquitto_pub -l` lost two thirds of a QoS 1 run when its input ended). A
//! consumer's throughput is messages received / (last arrival − publisher start). Throughput
//! cases run `WEIR_BENCH_ROUNDS` rounds (default 3), each weir run measured against the
//! plain (or Node-RED) run just before it, and the median ratio is reported: on a shared
//! machine one pair swings by ±30 %.
//! `WEIR_BENCH_MESSAGES` sets messages per throughput case (default 100000);
//! `WEIR_BENCH_SMOKE=1` runs every case once with few messages (CI keeps the
//! benchmark working that way; no figure is judged); `WEIR_BENCH_R8_RATE=N` runs only R8, at
//! N messages per second (for working on latency; `WEIR_BENCH_MESSAGES` is then its count);
//! `WEIR_BENCH_QOS=0|1` runs only the R1 and R1b rows of that QoS (for profiling one case).
//! Results and method: `docs/benchmarks.md`.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latency::Latencies;
use node_red::NodeRed;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use weir_tests::{Mosquitto, WeirProcess, free_port, metric, module, publish_v5_qos, scrape_metrics, toml_path};

mod latency;
mod node_red;

/// User + system CPU seconds of a running process.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

/// The messages: JSON readings padded to `size` bytes, `temperature(i)` degrees each.
fn payloads(n: usize, size: usize, temperature: impl Fn(usize) -> u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let head = format!("{{\"seq\":{i},\"temperature\":{},\"pad\":\"", temperature(i));
            let pad = size.saturating_sub(head.len() + 2);
            format!("{head}{}\"}}", "x".repeat(pad)).into_bytes()
        })
        .collect()
}

/// Publish everything (an rumqttc MQTT 5 client, waiting for the broker's acknowledgements
/// at QoS 1); returns when publishing started.
fn publish(port: u16, qos: u8, messages: &[Vec<u8>]) -> Instant {
    let batch: Vec<_> = messages.iter().map(|m| ("bench/in".to_owned(), m.clone(), PublishProperties::default())).collect();
    let qos = if qos == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let started = Instant::now();
    runtime.block_on(publish_v5_qos(port, batch, qos));
    started
}

/// Messages seen so far and when the last one came.
type Seen = Arc<Mutex<(usize, Option<Instant>)>>;

/// `mosquitto_sub` counting arrivals on `topic`.
fn subscriber(port: u16, topic: &str, qos: u8) -> (Child, Seen) {
    let mut child = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic, "-q", &qos.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub (apt-get install mosquitto-clients)");
    let seen = Arc::new(Mutex::new((0, None)));
    let reader = BufReader::new(child.stdout.take().unwrap());
    let counter = seen.clone();
    std::thread::spawn(move || {
        for _ in reader.lines() {
            let mut seen = counter.lock().unwrap();
            seen.0 += 1;
            seen.1 = Some(Instant::now());
        }
    });
    std::thread::sleep(Duration::from_millis(300)); // subscribed
    (child, seen)
}

/// Wait until `count()` reaches `n` or stops moving for 3 s; returns the count.
fn settle(n: usize, mut count: impl FnMut() -> usize) -> usize {
    let (mut last, mut since) = (0, Instant::now());
    loop {
        let now = count();
        if now >= n {
            return now;
        }
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() > Duration::from_secs(3) {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[derive(Clone, Copy)]
struct Outcome {
    received: usize,
    per_second: f64,
    per_cpu_second: f64,
    /// The broker's CPU time over the run's wall time (1.0: one core all the time).
    broker_busy: f64,
}

impl Outcome {
    fn new(received: usize, started: Instant, last: Instant, cpu: f64, broker_cpu: f64) -> Outcome {
        let seconds = (last - started).as_secs_f64().max(1e-6);
        Outcome { received, per_second: received as f64 / seconds, per_cpu_second: received as f64 / cpu.max(0.01), broker_busy: broker_cpu / seconds }
    }
}

/// `mosquitto_sub` on the input topic, as the plain consumer.
fn plain(broker: &Broker, qos: u8, lines: &[Vec<u8>]) -> Outcome {
    let (mut child, seen) = subscriber(broker.port(), "bench/in", qos);
    let cpu_before = (cpu_seconds(child.id()), broker.cpu_seconds());
    let started = publish(broker.port(), qos, lines);
    let received = settle(lines.len(), || seen.lock().unwrap().0);
    let (cpu, broker_cpu) = (cpu_seconds(child.id()) - cpu_before.0, broker.cpu_seconds() - cpu_before.1);
    let last = seen.lock().unwrap().1.unwrap_or(started);
    let _ = child.kill();
    let _ = child.wait();
    Outcome::new(received, started, last, cpu, broker_cpu)
}

/// What weir runs between its MQTT source (`bench/#`) and its sink.
#[derive(Clone, Copy, PartialEq)]
enum Job {
    /// The pass-through filter, then the null sink.
    PassThrough,
    /// The pass-through filter, then republished to `out/<level 1>`.
    Republish,
    /// The threshold filter (temperature over 70), then republished to `out/<level 1>`.
    Threshold,
}

/// The pipeline for `job`, with `idle` more pass-through modules that see no traffic. Each
/// pipeline gets a client id of its own ([`session_of`]): weir keeps a persistent session by
/// default, and a later run that reused an id would first receive what the broker queued
/// for the earlier one while it was gone.
fn pipeline(dir: &Path, broker: &str, qos: u8, metrics: u16, job: Job, idle: usize) -> std::path::PathBuf {
    let (wasm, config) = match job {
        Job::Threshold => ("threshold", "config = { field = \"temperature\", limit = 70 }"),
        Job::PassThrough | Job::Republish => ("pass_through", ""),
    };
    let out = if job == Job::PassThrough { "$upstream" } else { "/topics/out/{$topic[1]}" };
    static PIPELINES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let number = PIPELINES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("relay-{qos}-{}-{idle}-{number}.toml", job as u8));
    let client_id = session_of(&path);
    let mut text = format!(
        r#"
upstream = "discard"
[runtime]
http_listen = "127.0.0.1:{metrics}"
[broker]
url = "{broker}"
client_id = "{client_id}"
qos = {qos}
[modules.job]
path = {path}
kind = "filter"
{config}
[sinks.discard]
type = "null"
queue = false
[routes]
in = 'FROM /topics/bench/# INTO BrokeredEndpoint("/modules/job/inputs/in")'
out = 'FROM /messages/modules/job/outputs/* INTO {out}'
"#,
        path = toml_path(&module(wasm)),
    );
    for i in 0..idle {
        text.push_str(&format!(
            "idle{i} = 'FROM /topics/idle/{i} INTO BrokeredEndpoint(\"/modules/idle{i}/inputs/in\")'\n\
             idle{i}_out = 'FROM /messages/modules/idle{i}/outputs/* INTO $upstream'\n"
        ));
    }
    for i in 0..idle {
        text.push_str(&format!("[modules.idle{i}]\npath = {}\nkind = \"filter\"\n", toml_path(&module("pass_through"))));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// The client id (and so the broker session) of the subscriber of a [`pipeline`].
fn session_of(pipeline: &Path) -> String {
    format!("bench-{}", pipeline.file_stem().unwrap().to_string_lossy())
}

/// End the persistent session weir's subscriber left on the broker, so the broker stops
/// queueing the next runs' messages for it: a clean-session connect with its client id.
fn forget_session(broker: &Broker, client_id: &str) {
    let status = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port().to_string(), "-i", client_id, "-t", "bench/forget", "-E"])
        .status()
        .expect("mosquitto_sub (apt-get install mosquitto-clients)");
    assert!(status.success(), "could not end the session {client_id}");
}

/// weir doing `job` on `lines`, reaching the broker by `link`; `expected` is how many should
/// come out.
fn weir(broker: &Broker, link: Link, dir: &Path, qos: u8, lines: &[Vec<u8>], expected: usize, job: Job) -> Outcome {
    let metrics = free_port();
    let path = pipeline(dir, &broker.url(link), qos, metrics, job, 0);
    let process = WeirProcess::start(&path);
    let pid = process.pid().unwrap();
    let count = || metric(&scrape_metrics(metrics), "weir_sink_messages_total", &["sink=\"discard\""]).unwrap_or(0.0) as usize;
    let subscriber = (job != Job::PassThrough).then(|| subscriber(broker.port(), "out/#", qos));
    let cpu_before = (cpu_seconds(pid), broker.cpu_seconds());
    let started = publish(broker.port(), qos, lines);
    let (received, last) = match &subscriber {
        Some((_, seen)) => (settle(expected, || seen.lock().unwrap().0), seen.lock().unwrap().1.unwrap_or(started)),
        None => {
            let mut last = started;
            let mut previous = 0;
            let received = settle(expected, || {
                let now = count();
                if now != previous {
                    (previous, last) = (now, Instant::now());
                }
                now
            });
            (received, last)
        }
    };
    let (cpu, broker_cpu) = (cpu_seconds(pid) - cpu_before.0, broker.cpu_seconds() - cpu_before.1);
    if let Some((mut child, _)) = subscriber {
        let _ = child.kill();
        let _ = child.wait();
    }
    drop(process);
    forget_session(broker, &session_of(&path));
    Outcome::new(received, started, last, cpu, broker_cpu)
}

/// Node-RED doing the threshold job on `lines` at `qos`.
fn node_red_run(broker: &Broker, qos: u8, lines: &[Vec<u8>], expected: usize) -> Outcome {
    let node_red = NodeRed::start(broker.port(), qos, "bench/in", "out/node-red", "temperature", 70.0);
    let (mut child, seen) = subscriber(broker.port(), "out/#", qos);
    let cpu_before = (cpu_seconds(node_red.pid()), broker.cpu_seconds());
    let started = publish(broker.port(), qos, lines);
    let received = settle(expected, || seen.lock().unwrap().0);
    let (cpu, broker_cpu) = (cpu_seconds(node_red.pid()) - cpu_before.0, broker.cpu_seconds() - cpu_before.1);
    let last = seen.lock().unwrap().1.unwrap_or(started);
    let _ = child.kill();
    let _ = child.wait();
    Outcome::new(received, started, last, cpu, broker_cpu)
}

/// The broker as the test suite starts it (Mosquitto's defaults but for
/// `max_inflight_messages 1000` and `max_queued_messages 200000`, see `Mosquitto::start_in`),
/// plus the configuration lines (`;`-separated) of `WEIR_BENCH_MOSQUITTO`, e.g.
/// `set_tcp_nodelay true` (off by default, so its small packets can wait for Nagle and the
/// peer's delayed ACK). Besides its TCP port it listens on a Unix domain socket, which weir
/// beside its broker can use instead ([`Link`]); the benchmark's own clients use TCP.
struct Broker {
    server: Mosquitto,
    socket: std::path::PathBuf,
    _sockets: tempfile::TempDir,
}

/// How weir reaches the broker.
#[derive(Clone, Copy, PartialEq)]
enum Link {
    Tcp,
    /// A Unix domain socket (`mqtt+unix://`).
    Unix,
}

impl Broker {
    fn start() -> Broker {
        use std::os::unix::fs::PermissionsExt;
        // Mosquitto drops to its own user: it must be able to create the socket here.
        let sockets = tempfile::tempdir().unwrap();
        std::fs::set_permissions(sockets.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let socket = sockets.path().join("mosquitto.sock");
        let mut extra = format!("allow_anonymous true\nlistener 0 {}\n", socket.display());
        for line in std::env::var("WEIR_BENCH_MOSQUITTO").unwrap_or_default().split(';').filter(|l| !l.trim().is_empty()) {
            extra.push_str(line.trim());
            extra.push('\n');
        }
        let server = Mosquitto::start_with(free_port(), &extra);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker { server, socket, _sockets: sockets }
    }

    fn port(&self) -> u16 {
        self.server.port
    }

    /// The broker's CPU seconds so far.
    fn cpu_seconds(&self) -> f64 {
        self.server.pid().map(cpu_seconds).unwrap_or(0.0)
    }

    /// The `[broker] url` weir is given.
    fn url(&self, link: Link) -> String {
        match link {
            Link::Tcp => format!("mqtt://127.0.0.1:{}", self.server.port),
            Link::Unix => format!("mqtt+unix://{}", self.socket.display()),
        }
    }
}

/// One consumer's ratios to the plain subscriber over several rounds, each round's weir run
/// against the plain run just before it (the machine is shared: a single pair swings ±30 %).
#[derive(Default)]
struct Ratios {
    throughput: Vec<f64>,
    per_cpu: Vec<f64>,
}

impl Ratios {
    /// Record `o` against `base`; returns the throughput ratio.
    fn add(&mut self, o: &Outcome, base: &Outcome) -> f64 {
        let ratio = o.per_second / base.per_second.max(1e-9);
        self.throughput.push(ratio);
        self.per_cpu.push(o.per_cpu_second / base.per_cpu_second.max(1e-9));
        ratio
    }

    fn summary(&self) -> String {
        let list = |v: &[f64]| v.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(" ");
        format!("{:.2} [{}]   per CPU-s {:.2} [{}]", median(&self.throughput), list(&self.throughput), median(&self.per_cpu), list(&self.per_cpu))
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.is_empty() {
        0.0
    } else if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

fn row(name: &str, o: &Outcome, ratio: f64) {
    println!("{:<30} {:>10} {:>12.0} {:>14.0} {:>7.2} {:>9.0} %", name, o.received, o.per_second, o.per_cpu_second, ratio, o.broker_busy * 100.0);
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn latency_row(name: &str, l: &Latencies) {
    println!("{:<30} {:>6}/{:<6} p50 {:>9.0} µs  p99 {:>9.0} µs", name, l.received(), l.sent, micros(l.percentile(50.0)), micros(l.percentile(99.0)));
}

/// R8: the latency weir adds when republishing, at `rate` messages per second.
fn r8(dir: &Path, rate: f64, smoke: bool, count: Option<usize>) {
    let count = if smoke { 500 } else { count.unwrap_or(((rate * 10.0) as usize).clamp(5_000, 100_000)) };
    let lines = payloads(count, 64, |_| 80);
    println!("R8 latency, QoS 1, 64 B, {count} messages at {rate:.0} msg/s (half the R1b rate unless set):");
    let base = {
        let broker = Broker::start();
        latency::measure(broker.port(), "bench/in", "bench/in", &lines, rate)
    };
    let bare = {
        let broker = Broker::start();
        let _relay = latency::BareRelay::start(broker.port(), "bench/#", "out/bare");
        latency::measure(broker.port(), "bench/in", "out/#", &lines, rate)
    };
    let through = weir_latency(dir, &lines, rate, Job::Republish, Link::Tcp);
    let through_unix = weir_latency(dir, &lines, rate, Job::Republish, Link::Unix);
    latency_row("  broker alone", &base);
    latency_row("  broker → bare relay → broker", &bare);
    latency_row("  broker → weir → broker", &through);
    latency_row("  weir on a Unix socket", &through_unix);
    let extra = |l: &Latencies, p: f64| micros(l.percentile(p)) - micros(base.percentile(p));
    println!("  extra a bare rumqttc relay adds: p50 {:.0} µs, p99 {:.0} µs", extra(&bare, 50.0), extra(&bare, 99.0));
    println!("  extra weir adds: p50 {:.0} µs, p99 {:.0} µs", extra(&through, 50.0), extra(&through, 99.0));
    println!("  extra weir adds on a Unix socket: p50 {:.0} µs, p99 {:.0} µs", extra(&through_unix, 50.0), extra(&through_unix, 99.0));
}

/// Latencies through weir doing `job`, publishing on `bench/in` and watching `out/#`.
fn weir_latency(dir: &Path, lines: &[Vec<u8>], rate: f64, job: Job, link: Link) -> Latencies {
    let broker = Broker::start();
    let weir = WeirProcess::start(&pipeline(dir, &broker.url(link), 1, free_port(), job, 0));
    let latencies = latency::measure(broker.port(), "bench/in", "out/#", lines, rate);
    if weir.log_text().contains("acknowledgements arrive ~40 ms late") {
        println!("  (weir logged its advice about the broker's delayed acknowledgements in this run)");
    }
    latencies
}

/// Idle RSS with one module, and with `extra` more.
fn idle_rss(dir: &Path, extra: usize) -> (u64, u64) {
    let broker = Broker::start();
    let rss = |idle| {
        let process = WeirProcess::start(&pipeline(dir, &broker.url(Link::Tcp), 1, free_port(), Job::PassThrough, idle));
        std::thread::sleep(Duration::from_secs(1));
        rss_kib(process.pid().unwrap())
    };
    (rss(0), rss(extra))
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` runs this as a smoke (few messages).
    let smoke = !std::env::args().any(|arg| arg == "--bench") || std::env::var("WEIR_BENCH_SMOKE").is_ok_and(|v| v == "1");
    let messages: Option<usize> = std::env::var("WEIR_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok());
    let n = if smoke { 2_000 } else { messages.unwrap_or(100_000) };
    let dir = tempfile::tempdir().unwrap();
    println!("relay: {n} messages per case, publisher rumqttc (MQTT 5), broker Mosquitto, all on loopback{}", if smoke { " (smoke run)" } else { "" });
    println!("{:<30} {:>10} {:>12} {:>14} {:>7} {:>11}", "case", "received", "msg/s", "msg/CPU-s", "ratio", "broker CPU");
    if let Some(rate) = std::env::var("WEIR_BENCH_R8_RATE").ok().and_then(|v| v.parse().ok()) {
        // Here WEIR_BENCH_MESSAGES, when set, is R8's count (low rates want fewer than 5,000).
        return r8(dir.path(), rate, smoke, messages);
    }
    let only_qos: Option<u8> = std::env::var("WEIR_BENCH_QOS").ok().and_then(|v| v.parse().ok());
    let rounds: usize = if smoke { 1 } else { std::env::var("WEIR_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1) };
    let mut summary = Vec::new();
    let mut republish_rates = Vec::new();
    for qos in [0u8, 1].into_iter().filter(|qos| only_qos.is_none_or(|only| only == *qos)) {
        for size in [64usize, 256] {
            let lines = payloads(n, size, |_| 80);
            let broker = Broker::start();
            let (mut relay, mut republish) = (Ratios::default(), Ratios::default());
            for round in 1..=rounds {
                let base = plain(&broker, qos, &lines);
                let r1 = weir(&broker, Link::Tcp, dir.path(), qos, &lines, n, Job::PassThrough);
                let r1b = weir(&broker, Link::Tcp, dir.path(), qos, &lines, n, Job::Republish);
                row(&format!("plain sub  QoS {qos} {size:>3} B #{round}"), &base, 1.0);
                row(&format!("R1  weir   QoS {qos} {size:>3} B #{round}"), &r1, relay.add(&r1, &base));
                row(&format!("R1b weir   QoS {qos} {size:>3} B #{round}"), &r1b, republish.add(&r1b, &base));
                if qos == 1 && size == 64 {
                    republish_rates.push(r1b.per_second);
                }
            }
            summary.push((format!("R1  QoS {qos} {size:>3} B"), relay));
            summary.push((format!("R1b QoS {qos} {size:>3} B"), republish));
        }
    }
    println!("R1 / R1b over {rounds} round(s): median ratio to the plain subscriber [each round], and msg/CPU-s the same way");
    for (name, ratios) in &summary {
        println!("  {name}  {}", ratios.summary());
    }
    if only_qos.is_some() {
        return;
    }

    // R8: at half the rate weir republished at above (the median round).
    r8(dir.path(), (median(&republish_rates) / 2.0).max(100.0), smoke, None);

    // R6: the threshold job, half the readings over the limit; QoS 1 first (its rates set
    // the latency run's), then QoS 0.
    let lines = payloads(n, 64, |i| if i % 2 == 0 { 80 } else { 65 });
    let expected = n.div_ceil(2);
    let mut at_least_once = (0.0, 0.0);
    let mut summary = Vec::new();
    for qos in [1u8, 0] {
        println!("R6 threshold job, QoS {qos}, 64 B, {n} readings (half over the limit); msg/s counts readings in:");
        let broker = Broker::start();
        let (mut red_rates, mut ours_rates) = (Vec::new(), Vec::new());
        let (mut tcp, mut unix) = (Ratios::default(), Ratios::default());
        for round in 1..=rounds {
            let red = node_red_run(&broker, qos, &lines, expected);
            let ours = weir(&broker, Link::Tcp, dir.path(), qos, &lines, expected, Job::Threshold);
            let ours_unix = weir(&broker, Link::Unix, dir.path(), qos, &lines, expected, Job::Threshold);
            let scaled = |o: &Outcome| Outcome { per_second: o.per_second * 2.0, per_cpu_second: o.per_cpu_second * 2.0, ..*o };
            row(&format!("  Node-RED flow #{round}"), &scaled(&red), 1.0);
            row(&format!("  weir + WASM threshold #{round}"), &scaled(&ours), tcp.add(&ours, &red));
            row(&format!("  weir on a Unix socket #{round}"), &scaled(&ours_unix), unix.add(&ours_unix, &red));
            red_rates.push(red.per_second);
            ours_rates.push(ours.per_second);
        }
        if qos == 1 {
            at_least_once = (median(&red_rates), median(&ours_rates));
        }
        summary.push((format!("R6 QoS {qos} weir / Node-RED"), tcp));
        summary.push((format!("R6 QoS {qos} on a Unix socket"), unix));
    }
    println!("R6 over {rounds} round(s): median ratio to Node-RED [each round], and msg/CPU-s the same way");
    for (name, ratios) in &summary {
        println!("  {name}  {}", ratios.summary());
    }
    // Outputs per second are half the readings per second: this is half the slower one's maximum.
    let rate = at_least_once.0.min(at_least_once.1).max(100.0);
    let count = if smoke { 500 } else { ((rate * 10.0) as usize).clamp(5_000, 50_000) };
    let lines = payloads(count, 64, |i| if i % 2 == 0 { 80 } else { 65 });
    let red_latency = {
        let broker = Broker::start();
        let _node_red = NodeRed::start(broker.port(), 1, "bench/in", "out/node-red", "temperature", 70.0);
        latency::measure(broker.port(), "bench/in", "out/#", &lines, rate)
    };
    let weir_latency_tcp = weir_latency(dir.path(), &lines, rate, Job::Threshold, Link::Tcp);
    let weir_latency_unix = weir_latency(dir.path(), &lines, rate, Job::Threshold, Link::Unix);
    println!("R6 latency of kept readings, QoS 1, {count} readings at {rate:.0}/s (half the slower one's maximum):");
    latency_row("  Node-RED flow", &red_latency);
    latency_row("  weir + WASM threshold", &weir_latency_tcp);
    latency_row("  weir on a Unix socket", &weir_latency_unix);
    let p99_ratio = |l: &Latencies| micros(l.percentile(99.0)) / micros(red_latency.percentile(99.0)).max(1e-9);
    println!("  p99 weir / Node-RED: {:.2} (weir on a Unix socket: {:.2})", p99_ratio(&weir_latency_tcp), p99_ratio(&weir_latency_unix));

    // R9 and startup: idle, modules compiled (second start).
    let extra = 10;
    let (one, more) = idle_rss(dir.path(), extra);
    println!(
        "R9 idle RSS, one pass-through module: {one} KiB; with {extra} more: {more} KiB, {} KiB per idle instance",
        (more.saturating_sub(one)) / extra as u64
    );
    let broker = Broker::start();
    let path = pipeline(dir.path(), &broker.url(Link::Tcp), 1, free_port(), Job::PassThrough, 0);
    drop(WeirProcess::start(&path)); // compiles and caches the module
    let started = Instant::now();
    let process = WeirProcess::start(&path);
    let ready = started.elapsed();
    drop(process);
    println!("startup to ready (module cached, polled every 20 ms): {} ms", ready.as_millis());
}
