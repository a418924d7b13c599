//! The performance issue's benchmark, one command (`scripts/bench-relay.sh`, which builds
//! the release binary this measures and installs Node-RED). Everything on loopback, side by
//! side in one run, each consumer's CPU time read from /proc:
//!
//! - R1: publisher → Mosquitto → weir (MQTT source → pass-through WASM filter → null sink),
//!   against publisher → Mosquitto → `mosquitto_sub`; QoS 0 and 1, 64 and 256 B;
//! - R1b: the same with weir republishing to a local topic (counted by `mosquitto_sub`);
//! - R8: latency weir adds (publish → weir → subscriber minus publish → subscriber) at half
//!   the R1b rate, beside what a bare republishing client adds ([`latency`]);
//! - R6: the threshold job as a Node-RED flow against weir with the WASM threshold filter:
//!   throughput and p99 latency ([`node_red`]);
//! - R8 and R6 also with weir reaching the broker through its Unix domain socket
//!   (`mqtt+unix://`), as weir beside its broker can; everything else uses TCP;
//! - R9: idle RSS with one module, and what each further idle module instance adds; startup
//!   to ready with the module already compiled.
//!
//! The publisher is an rumqttc MQTT 5 client in this process sending as fast as the broker
//! takes (`mosquitto_pub -l` lost two thirds of a QoS 1 run when its input ended). A
//! consumer's throughput is messages received / (last arrival − publisher start).
//! `WEIR_BENCH_MESSAGES` sets messages per throughput case (default 100000);
//! `WEIR_BENCH_SMOKE=1` runs every case once with few messages and no Node-RED (CI keeps the
//! benchmark working that way; no figure is judged); `WEIR_BENCH_R8_RATE=N` runs only R8, at
//! N messages per second (for working on latency); `WEIR_BENCH_QOS=0|1` runs only the R1 and R1b
//! rows of that QoS (for profiling one case). Results and method: `docs/benchmarks.md`.
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

struct Outcome {
    received: usize,
    per_second: f64,
    per_cpu_second: f64,
}

impl Outcome {
    fn new(received: usize, started: Instant, last: Instant, cpu: f64) -> Outcome {
        let seconds = (last - started).as_secs_f64().max(1e-6);
        Outcome { received, per_second: received as f64 / seconds, per_cpu_second: received as f64 / cpu.max(0.01) }
    }
}

/// `mosquitto_sub` on the input topic, as the plain consumer.
fn plain(broker: &Broker, qos: u8, lines: &[Vec<u8>]) -> Outcome {
    let (mut child, seen) = subscriber(broker.port(), "bench/in", qos);
    let cpu_before = cpu_seconds(child.id());
    let started = publish(broker.port(), qos, lines);
    let received = settle(lines.len(), || seen.lock().unwrap().0);
    let cpu = cpu_seconds(child.id()) - cpu_before;
    let last = seen.lock().unwrap().1.unwrap_or(started);
    let _ = child.kill();
    let _ = child.wait();
    Outcome::new(received, started, last, cpu)
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

/// The pipeline for `job`, with `idle` more pass-through modules that see no traffic.
fn pipeline(dir: &Path, broker: &str, qos: u8, metrics: u16, job: Job, idle: usize) -> std::path::PathBuf {
    let (wasm, config) = match job {
        Job::Threshold => ("threshold", "config = { field = \"temperature\", limit = 70 }"),
        Job::PassThrough | Job::Republish => ("pass_through", ""),
    };
    let out = if job == Job::PassThrough { "$upstream" } else { "/topics/out/{$topic[1]}" };
    let mut text = format!(
        r#"
upstream = "discard"
[runtime]
http_listen = "127.0.0.1:{metrics}"
[broker]
url = "{broker}"
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
    let path = dir.join(format!("relay-{qos}-{}-{idle}.toml", job as u8));
    std::fs::write(&path, text).unwrap();
    path
}

/// weir doing `job` on `lines`, reaching the broker by `link`; `expected` is how many should
/// come out.
fn weir(broker: &Broker, link: Link, dir: &Path, qos: u8, lines: &[Vec<u8>], expected: usize, job: Job) -> Outcome {
    let metrics = free_port();
    let process = WeirProcess::start(&pipeline(dir, &broker.url(link), qos, metrics, job, 0));
    let pid = process.pid().unwrap();
    let count = || metric(&scrape_metrics(metrics), "weir_sink_messages_total", &["sink=\"discard\""]).unwrap_or(0.0) as usize;
    let subscriber = (job != Job::PassThrough).then(|| subscriber(broker.port(), "out/#", qos));
    let cpu_before = cpu_seconds(pid);
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
    let cpu = cpu_seconds(pid) - cpu_before;
    if let Some((mut child, _)) = subscriber {
        let _ = child.kill();
        let _ = child.wait();
    }
    Outcome::new(received, started, last, cpu)
}

/// Node-RED doing the threshold job on `lines`.
fn node_red_run(broker: &Broker, lines: &[Vec<u8>], expected: usize) -> Outcome {
    let node_red = NodeRed::start(broker.port(), "bench/in", "out/node-red", "temperature", 70.0);
    let (mut child, seen) = subscriber(broker.port(), "out/#", 1);
    let cpu_before = cpu_seconds(node_red.pid());
    let started = publish(broker.port(), 1, lines);
    let received = settle(expected, || seen.lock().unwrap().0);
    let cpu = cpu_seconds(node_red.pid()) - cpu_before;
    let last = seen.lock().unwrap().1.unwrap_or(started);
    let _ = child.kill();
    let _ = child.wait();
    Outcome::new(received, started, last, cpu)
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

    /// The `[broker] url` weir is given.
    fn url(&self, link: Link) -> String {
        match link {
            Link::Tcp => format!("mqtt://127.0.0.1:{}", self.server.port),
            Link::Unix => format!("mqtt+unix://{}", self.socket.display()),
        }
    }
}

fn row(name: &str, o: &Outcome, ratio: f64) {
    println!("{:<30} {:>10} {:>12.0} {:>14.0} {:>7.2}", name, o.received, o.per_second, o.per_cpu_second, ratio);
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn latency_row(name: &str, l: &Latencies) {
    println!("{:<30} {:>6}/{:<6} p50 {:>9.0} µs  p99 {:>9.0} µs", name, l.received(), l.sent, micros(l.percentile(50.0)), micros(l.percentile(99.0)));
}

/// R8: the latency weir adds when republishing, at `rate` messages per second.
fn r8(dir: &Path, rate: f64, smoke: bool) {
    let count = if smoke { 500 } else { ((rate * 10.0) as usize).clamp(5_000, 100_000) };
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
    let n: usize = if smoke { 2_000 } else { std::env::var("WEIR_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000) };
    let dir = tempfile::tempdir().unwrap();
    println!("relay: {n} messages per case, publisher rumqttc (MQTT 5), broker Mosquitto, all on loopback{}", if smoke { " (smoke run)" } else { "" });
    println!("{:<30} {:>10} {:>12} {:>14} {:>7}", "case", "received", "msg/s", "msg/CPU-s", "ratio");
    if let Some(rate) = std::env::var("WEIR_BENCH_R8_RATE").ok().and_then(|v| v.parse().ok()) {
        return r8(dir.path(), rate, smoke);
    }
    let only_qos: Option<u8> = std::env::var("WEIR_BENCH_QOS").ok().and_then(|v| v.parse().ok());
    let mut republish_rate = 0.0;
    for qos in [0u8, 1].into_iter().filter(|qos| only_qos.is_none_or(|only| only == *qos)) {
        for size in [64usize, 256] {
            let lines = payloads(n, size, |_| 80);
            let broker = Broker::start();
            let base = plain(&broker, qos, &lines);
            let r1 = weir(&broker, Link::Tcp, dir.path(), qos, &lines, n, Job::PassThrough);
            let r1b = weir(&broker, Link::Tcp, dir.path(), qos, &lines, n, Job::Republish);
            row(&format!("plain sub  QoS {qos} {size:>3} B"), &base, 1.0);
            row(&format!("R1  weir   QoS {qos} {size:>3} B"), &r1, r1.per_second / base.per_second);
            row(&format!("R1b weir   QoS {qos} {size:>3} B"), &r1b, r1b.per_second / base.per_second);
            if qos == 1 && size == 64 {
                republish_rate = r1b.per_second;
            }
        }
    }
    if only_qos.is_some() {
        return;
    }

    // R8: at half the rate weir republished at above.
    r8(dir.path(), (republish_rate / 2.0).max(100.0), smoke);

    // R6: the threshold job, half the readings over the limit.
    let lines = payloads(n, 64, |i| if i % 2 == 0 { 80 } else { 65 });
    let expected = n.div_ceil(2);
    let (red, ours, ours_unix) = {
        let broker = Broker::start();
        let red = node_red_run(&broker, &lines, expected);
        let ours = weir(&broker, Link::Tcp, dir.path(), 1, &lines, expected, Job::Threshold);
        (red, ours, weir(&broker, Link::Unix, dir.path(), 1, &lines, expected, Job::Threshold))
    };
    println!("R6 threshold job, QoS 1, 64 B, {n} readings (half over the limit); msg/s counts readings in:");
    let scaled = |o: &Outcome| Outcome { received: o.received, per_second: o.per_second * 2.0, per_cpu_second: o.per_cpu_second * 2.0 };
    row("  Node-RED flow", &scaled(&red), 1.0);
    row("  weir + WASM threshold", &scaled(&ours), ours.per_second / red.per_second.max(1e-9));
    row("  weir on a Unix socket", &scaled(&ours_unix), ours_unix.per_second / red.per_second.max(1e-9));
    // Outputs per second are half the readings per second: this is half the slower one's maximum.
    let rate = red.per_second.min(ours.per_second).max(100.0);
    let count = if smoke { 500 } else { ((rate * 10.0) as usize).clamp(5_000, 50_000) };
    let lines = payloads(count, 64, |i| if i % 2 == 0 { 80 } else { 65 });
    let red_latency = {
        let broker = Broker::start();
        let _node_red = NodeRed::start(broker.port(), "bench/in", "out/node-red", "temperature", 70.0);
        latency::measure(broker.port(), "bench/in", "out/#", &lines, rate)
    };
    let weir_latency_tcp = weir_latency(dir.path(), &lines, rate, Job::Threshold, Link::Tcp);
    let weir_latency_unix = weir_latency(dir.path(), &lines, rate, Job::Threshold, Link::Unix);
    println!("  latency of kept readings, {count} readings at {rate:.0}/s (half the slower one's maximum):");
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
