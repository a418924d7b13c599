//! Test support: real servers on free loopback ports, the example modules, and a pipeline
//! running in-process.
//!
//! - [`Mosquitto`] (`mosquitto.rs`): starts `mosquitto` on a free port and stops it on drop.
//!   If it is not installed the test fails and says how to install it (never skips). With it,
//!   [`TestPki`]: a test CA and certificates for TLS.
//! - [`Azurite`] (`azurite.rs`): the Azure Storage emulator on a free port, with the Azure SDK
//!   for JavaScript as an independent client to create containers and read blobs back.
//! - [`Tansu`] (`kafka.rs`): a Kafka-compatible broker (tansu, in-memory storage) on a free
//!   port, with an rdkafka client to create topics and read records back.
//! - [`RabbitMq`] (`rabbitmq.rs`): RabbitMQ (Debian's `rabbitmq-server`) on a free port, its
//!   own node.
//! - [`Proxy`] (`proxy.rs`): a TCP proxy in front of a server whose connections a test cuts.
//! - [`Tmpfs`] (`tmpfs.rs`): a small disk of the test's own, to fill and free (needs root).
//! - [`MemoryLimit`] (`memory_limit.rs`): a memory cgroup to run weir in, as a container
//!   would (needs root).
//! - [`RunningPipeline`] / [`WeirProcess`] (`pipeline.rs`): `weir check` + `weir run` of a TOML
//!   text in this process; the `weir` binary running a pipeline file, to kill -9 and restart.
//! - [`Subscriber`] / [`publish_v5`] (`mqtt_client.rs`): an independent MQTT 5 client
//!   (rumqttc) to drive and observe weir from outside.
//! - Here: [`module`] (the path of an example module built by `scripts/build-filters.sh`),
//!   pipeline texts the tests share, and readers of weir's files and operator endpoint.
#![allow(clippy::unwrap_used)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

mod azurite;
mod kafka;
mod memory_limit;
mod mosquitto;
mod mqtt_client;
mod pipeline;
mod proxy;
mod rabbitmq;
mod tmpfs;
pub use azurite::{AZURITE_KEY, Azurite};
pub use kafka::{KafkaRecord, Tansu};
pub use memory_limit::MemoryLimit;
pub use mosquitto::{Mosquitto, TestPki};
pub use mqtt_client::{Subscriber, publish_v5, publish_v5_qos, publish_v5_with_credentials, sorted_topics, user_properties};
pub use pipeline::{RunningPipeline, WeirProcess, weir_binary};
pub use proxy::Proxy;
pub use rabbitmq::RabbitMq;
pub use tmpfs::Tmpfs;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// An example module, e.g. `module("threshold")`. Fails with the command that builds them.
pub fn module(name: &str) -> PathBuf {
    let path = repo_root().join("filters/target/wasm32-wasip2/release").join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} is missing: build the example modules with scripts/build-filters.sh (scripts/test.sh does it)", path.display());
    path
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on 127.0.0.1:{port} within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Set an environment variable a pipeline's secret names (`{ env = "…" }`).
pub fn set_test_env(name: &str, value: &str) {
    // Edition 2024 makes set_var unsafe because of other threads reading the environment;
    // tests read these variables only through the pipelines they start.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var(name, value)
    };
}

/// Where scripts/test.sh installs npm tools (Azurite, the Azure SDK for JavaScript).
fn tools_dir() -> PathBuf {
    std::env::var_os("WEIR_TOOLS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/weir-tools"))
}

/// SIGTERM, then wait up to `within` (SIGKILL after that).
fn terminate(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A pipeline relaying `in/#` to `out/…` through the pass-through module, with `broker`
/// as the body of its `[broker]` table.
pub fn relay_pipeline(broker: &str) -> String {
    format!(
        r#"
[broker]
{broker}

[modules.pass]
path = {pass}

[routes]
in = 'FROM /topics/in/# INTO BrokeredEndpoint("/modules/pass/inputs/in")'
out = 'FROM /messages/modules/pass/outputs/* INTO /topics/out/{{$topic[1]}}'
"#,
        pass = toml_path(&module("pass_through")),
    )
}

/// A pipeline for testing a source: its `[sources.commands]` table as given; what it
/// brings on `edge/…` is republished locally on `from-source/<level 1>` and sent to an
/// MQTT "cloud" broker on `cloud` without a queue, so while the cloud is down nothing the
/// source brought counts as accepted.
pub fn source_test_pipeline(local: u16, cloud: u16, source: &str) -> String {
    format!(
        r#"
upstream = "cloud"
[runtime]
drain_timeout = "2s"
[broker]
url = "mqtt://127.0.0.1:{local}"
[sources.commands]
{source}
[sinks.cloud]
type = "mqtt"
connection = {{ url = "mqtt://127.0.0.1:{cloud}", protocol = "5" }}
queue = false
[routes]
local = "FROM /topics/edge/# WHERE $source = 'commands' INTO /topics/from-source/{{$topic[1]}}"
up = "FROM /topics/edge/# WHERE $source = 'commands' INTO $upstream"
"#
    )
}

/// Lines of a JSON Lines file, parsed (empty if the file does not exist yet). A last line
/// still being written (no newline yet) is left for the next read.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("{}: {err} in a line of {} bytes", path.display(), l.len()))).collect()
}

/// Wait until `path` holds at least `n` JSON lines.
pub async fn wait_for_lines(path: &Path, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let lines = json_lines(path);
        if lines.len() >= n {
            return lines;
        }
        assert!(Instant::now() < deadline, "expected {n} lines in {}, found {}; the last: {:?}", path.display(), lines.len(), lines.last());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET path` on weir's operator endpoint: the status code and the body.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|err| panic!("no HTTP endpoint on port {port}: {err}"));
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

/// The Prometheus text weir serves on `127.0.0.1:port/metrics`.
pub fn scrape_metrics(port: u16) -> String {
    let (status, body) = http_get(port, "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the sample `name{labels}` (labels as written, e.g. `sink="cloud"`; every
/// given label must be present) in Prometheus text.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// A TOML string literal for a path.
pub fn toml_path(path: &Path) -> String {
    format!("'{}'", path.display())
}
