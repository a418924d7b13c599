//! The relay benchmarks of the performance issue, R1 and R1b, and two readings (R9 idle
//! memory, startup to ready). Run with `scripts/bench-relay.sh` (it builds the release
//! binary this measures). Everything on loopback, side by side in one run:
//!
//! - publisher: an rumqttc MQTT 5 client in this process sending N messages of the given
//!   size as fast as the broker takes them (`mosquitto_pub -l` lost two thirds of a QoS 1
//!   run when its input ended);
//! - plain: `mosquitto_sub` subscribed to the same topic, counting what arrives;
//! - R1: `weir run` (MQTT source → pass-through WASM filter → null sink), counted from its
//!   /metrics (`weir_sink_messages_total`);
//! - R1b: weir republishing each message to a local topic, counted by `mosquitto_sub`.
//!
//! Each consumer's throughput is messages received / (last arrival − publisher start), and
//! per CPU-second its own CPU time (utime + stime from /proc) over the run. Results and
//! method: `docs/benchmarks.md`.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use weir_tests::{Mosquitto, WeirProcess, free_port, metric, module, publish_v5_qos, scrape_metrics, toml_path};

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

/// The messages: JSON readings padded to `size` bytes.
fn payloads(n: usize, size: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let head = format!("{{\"seq\":{i},\"temperature\":80,\"pad\":\"");
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

fn plain(broker: &Mosquitto, qos: u8, lines: &[Vec<u8>], n: usize) -> Outcome {
    let (mut child, seen) = subscriber(broker.port, "bench/in", qos);
    let cpu_before = cpu_seconds(child.id());
    let started = publish(broker.port, qos, lines);
    let received = settle(n, || seen.lock().unwrap().0);
    let cpu = cpu_seconds(child.id()) - cpu_before;
    let last = seen.lock().unwrap().1.unwrap_or(started);
    let _ = child.kill();
    let _ = child.wait();
    let seconds = (last - started).as_secs_f64().max(1e-6);
    Outcome { received, per_second: received as f64 / seconds, per_cpu_second: received as f64 / cpu.max(0.01) }
}

fn pipeline(dir: &Path, broker: u16, qos: u8, metrics: u16, republish: bool) -> std::path::PathBuf {
    let out = if republish { "/topics/out/{$topic[1]}" } else { "$upstream" };
    let text = format!(
        r#"
upstream = "discard"
[runtime]
http_listen = "127.0.0.1:{metrics}"
[broker]
url = "mqtt://127.0.0.1:{broker}"
qos = {qos}
[modules.pass]
path = {pass}
kind = "filter"
[sinks.discard]
type = "null"
queue = false
[routes]
in = 'FROM /topics/bench/# INTO BrokeredEndpoint("/modules/pass/inputs/in")'
out = 'FROM /messages/modules/pass/outputs/* INTO {out}'
"#,
        pass = toml_path(&module("pass_through")),
    );
    let path = dir.join(format!("relay-{qos}-{republish}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn weir(broker: &Mosquitto, dir: &Path, qos: u8, lines: &[Vec<u8>], n: usize, republish: bool) -> Outcome {
    let metrics = free_port();
    let process = WeirProcess::start(&pipeline(dir, broker.port, qos, metrics, republish));
    let pid = process.pid().unwrap();
    let count = || metric(&scrape_metrics(metrics), "weir_sink_messages_total", &["sink=\"discard\""]).unwrap_or(0.0) as usize;
    let subscriber = republish.then(|| subscriber(broker.port, "out/#", qos));
    let cpu_before = cpu_seconds(pid);
    let started = publish(broker.port, qos, lines);
    let (received, last) = match &subscriber {
        Some((_, seen)) => (settle(n, || seen.lock().unwrap().0), seen.lock().unwrap().1.unwrap_or(started)),
        None => {
            let mut last = started;
            let mut previous = 0;
            let received = settle(n, || {
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
    let seconds = (last - started).as_secs_f64().max(1e-6);
    Outcome { received, per_second: received as f64 / seconds, per_cpu_second: received as f64 / cpu.max(0.01) }
}

/// The broker; `WEIR_BENCH_NODELAY=1` sets Mosquitto's `set_tcp_nodelay true` (its default
/// is off, so its small PUBACKs can wait for Nagle and the peer's delayed ACK).
fn broker() -> Mosquitto {
    let mut extra = "allow_anonymous true\n".to_owned();
    if std::env::var("WEIR_BENCH_NODELAY").is_ok_and(|v| v == "1") {
        extra.push_str("set_tcp_nodelay true\n");
    }
    Mosquitto::start_with(free_port(), &extra)
}

fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let n: usize = std::env::var("WEIR_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    println!("relay: {n} messages per case, publisher rumqttc (MQTT 5), broker Mosquitto, all on loopback");
    println!("{:<28} {:>10} {:>12} {:>14} {:>7}", "case", "received", "msg/s", "msg/CPU-s", "ratio");
    for qos in [0u8, 1] {
        for size in [64usize, 256] {
            let lines = payloads(n, size);
            let broker = broker();
            let base = plain(&broker, qos, &lines, n);
            let r1 = weir(&broker, dir.path(), qos, &lines, n, false);
            let r1b = weir(&broker, dir.path(), qos, &lines, n, true);
            let row = |name: &str, o: &Outcome, ratio: f64| {
                println!("{:<28} {:>10} {:>12.0} {:>14.0} {:>7.2}", name, o.received, o.per_second, o.per_cpu_second, ratio)
            };
            row(&format!("plain sub  QoS {qos} {size:>3} B"), &base, 1.0);
            row(&format!("R1  weir   QoS {qos} {size:>3} B"), &r1, r1.per_second / base.per_second);
            row(&format!("R1b weir   QoS {qos} {size:>3} B"), &r1b, r1b.per_second / base.per_second);
        }
    }
    // R9 and startup: the demo-like relay pipeline, idle, modules compiled (second start).
    let broker = Mosquitto::start();
    let path = pipeline(dir.path(), broker.port, 1, free_port(), false);
    drop(WeirProcess::start(&path)); // compiles and caches the module
    let started = Instant::now();
    let process = WeirProcess::start(&path);
    let ready = started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    println!("startup to ready (module cached, polled every 20 ms): {} ms", ready.as_millis());
    println!("R9 idle RSS, one pass-through module: {} KiB", rss_kib(process.pid().unwrap()));
}
