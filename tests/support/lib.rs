//! Test support: real servers on free loopback ports, the example modules, and a pipeline
//! running in-process.
//!
//! - [`Mosquitto`]: starts `mosquitto` on a free port and stops it on drop. If it is not
//!   installed the test fails and says how to install it (never skips).
//! - [`module`]: the path of an example module built by `scripts/build-filters.sh`.
//! - [`RunningPipeline`]: `weir check` + `weir run` of a TOML text, in this process.
//! - [`Azurite`]: the Azure Storage emulator on a free port, with the Azure SDK for
//!   JavaScript as an independent client to create containers and read blobs back.
//! - [`Tansu`]: a Kafka-compatible broker (tansu, in-memory storage) on a free port.
//! - [`RabbitMq`]: RabbitMQ (Debian's `rabbitmq-server`) on a free port, its own node.
//! - [`WeirProcess`]: the `weir` binary running a pipeline file, to kill -9 and restart.
//! - [`Subscriber`] / [`publish_v5`]: an independent MQTT 5 client (rumqttc) to drive and
//!   observe weir from outside.
#![allow(clippy::unwrap_used)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod kafka;
mod rabbitmq;
pub use kafka::KafkaRecord;
pub use rabbitmq::RabbitMq;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

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

/// A Mosquitto broker on a free loopback port, stopped on drop.
pub struct Mosquitto {
    pub port: u16,
    child: Option<Child>,
    config: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Anonymous, plain TCP.
    pub fn start() -> Mosquitto {
        Self::start_with(free_port(), "allow_anonymous true\n")
    }

    /// On `port`, with `extra` lines for the listener (TLS, passwords …).
    pub fn start_with(port: u16, extra: &str) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, port, extra)
    }

    /// A broker that keeps sessions and queued messages across [`Mosquitto::restart_gracefully`].
    pub fn start_persistent() -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let data = broker_writable(dir.path(), "data");
        let extra = format!("allow_anonymous true\npersistence true\npersistence_location {}/\n", data.display());
        Self::start_in(dir, free_port(), &extra)
    }

    /// A broker that logs every packet to [`Mosquitto::log_path`], to count what it did.
    pub fn start_logging_packets() -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let logs = broker_writable(dir.path(), "logs");
        let extra = format!("allow_anonymous true\nlog_dest file {}/mosquitto.log\nlog_type all\n", logs.display());
        Self::start_in(dir, free_port(), &extra)
    }

    /// The log of a broker from [`Mosquitto::start_logging_packets`].
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("logs").join("mosquitto.log")
    }

    /// How many publishes the broker sent `client_id` again, flagged as duplicates (what it
    /// redelivers on a session resume because their acknowledgement never reached it).
    /// Needs [`Mosquitto::start_logging_packets`].
    pub fn redeliveries_to(&self, client_id: &str) -> usize {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_else(|err| panic!("{}: {err}", self.log_path().display()));
        let resent = format!("Sending PUBLISH to {client_id} (d1,");
        log.lines().filter(|line| line.contains(&resent)).count()
    }

    /// Like `start_with`, in a directory already holding the files `extra` names.
    pub fn start_in(dir: tempfile::TempDir, port: u16, extra: &str) -> Mosquitto {
        let config = dir.path().join("mosquitto.conf");
        let persistence = if extra.contains("persistence true") { "" } else { "persistence false\n" };
        let text =
            format!("per_listener_settings false\nlistener {port} 127.0.0.1\n{persistence}max_inflight_messages 1000\nmax_queued_messages 200000\n{extra}");
        std::fs::write(&config, text).unwrap();
        let mut broker = Mosquitto { port, child: None, config, dir };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let child = match Command::new("mosquitto").arg("-c").arg(&self.config).stdout(Stdio::null()).stderr(Stdio::null()).spawn() {
            Ok(child) => child,
            Err(err) => panic!("cannot start mosquitto ({err}): install it with `apt-get install mosquitto mosquitto-clients` (scripts/test.sh does this)"),
        };
        self.child = Some(child);
        wait_for_port(self.port, "mosquitto");
    }

    /// The broker's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stop the broker (it loses its sessions: persistence is off).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop and start again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Stop with SIGTERM (a persistent broker saves its sessions), without starting again.
    pub fn stop_gracefully(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(10));
        }
    }

    /// Start again after [`Mosquitto::stop_gracefully`] or [`Mosquitto::stop`].
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the broker is still running");
        self.spawn();
    }
}

/// A directory `name` in `dir` that mosquitto can write: started as root, it drops to its
/// own user.
fn broker_writable(dir: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::create_dir(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    path
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A test CA with a server certificate for 127.0.0.1 and a client certificate, as PEM files.
pub struct TestPki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestPki {
    /// Write the files into `dir`.
    pub fn create(dir: &Path) -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name = DistinguishedName::new();
        ca_params.distinguished_name.push(DnType::CommonName, "weir test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf = |names: Vec<String>, common_name: &str| {
            let mut params = CertificateParams::new(names).unwrap();
            params.distinguished_name = DistinguishedName::new();
            params.distinguished_name.push(DnType::CommonName, common_name);
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &ca).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()], "127.0.0.1");
        let (client_cert, client_key) = leaf(vec!["weir-device".into()], "weir-device");
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        TestPki {
            ca: write("ca.pem", &ca.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server.key", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client.key", &client_key),
        }
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

/// Azurite's blob service on a free loopback port, stopped on drop.
pub struct Azurite {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

/// Azurite's well-known development account key.
pub const AZURITE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl Azurite {
    pub fn start() -> Azurite {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Azurite {
        let bin = tools_dir().join("node/node_modules/.bin/azurite-blob");
        assert!(bin.is_file(), "{} is missing: install it with scripts/test.sh (npm install azurite @azure/storage-blob in $WEIR_TOOLS/node)", bin.display());
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(&bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--loose", "--skipApiVersionCheck", "--disableTelemetry", "-l"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", bin.display()));
        wait_for_port(port, "azurite");
        Azurite { port, child, _dir: dir }
    }

    /// The blob endpoint weir's `endpoint` key takes.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/devstoreaccount1", self.port)
    }

    fn connection_string(&self) -> String {
        format!("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};BlobEndpoint={};", self.endpoint())
    }

    fn sdk(&self, command: &str, container: &str) -> String {
        let script = repo_root().join("tests/support/azure-blob.cjs");
        let output = Command::new("node")
            .arg(script)
            .args([command, &self.connection_string(), container])
            .env("NODE_PATH", tools_dir().join("node/node_modules"))
            .output()
            .expect("node runs (it comes with the machine; scripts/test.sh installs the Azure SDK)");
        assert!(output.status.success(), "azure-blob.cjs {command}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }

    /// Create a container with the Azure SDK (object_store cannot).
    pub fn create_container(&self, container: &str) {
        self.sdk("create", container);
    }

    /// Every blob in the container with its content, read with the Azure SDK.
    pub fn blobs(&self, container: &str) -> std::collections::BTreeMap<String, String> {
        serde_json::from_str(&self.sdk("dump", container)).unwrap()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tansu, a Kafka-compatible broker, on a free loopback port with in-memory storage.
pub struct Tansu {
    pub port: u16,
    child: Child,
}

impl Tansu {
    pub fn start() -> Tansu {
        let bin = tools_dir().join("tansu/bin/tansu");
        assert!(
            bin.is_file(),
            "{} is missing: install it with scripts/test.sh (cargo install tansu --features dynostore --root $WEIR_TOOLS/tansu, ~18 min once)",
            bin.display()
        );
        let port = free_port();
        let listener = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args(["broker", "--listener-url", &listener, "--advertised-listener-url", &listener, "--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", bin.display()));
        wait_for_port(port, "tansu");
        Tansu { port, child }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// `target/<profile>/weir`, next to the running test's own directory; or `WEIR_BINARY`, to
/// compare another build in alternating runs of a benchmark.
pub fn weir_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WEIR_BINARY") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "WEIR_BINARY={} is not a file", path.display());
        return path;
    }
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(|deps| deps.parent()).unwrap().join("weir");
    assert!(path.is_file(), "{} is missing: build it with `cargo build -p weir` (`cargo test --workspace` and scripts/test.sh do)", path.display());
    path
}

/// The `weir` binary running `weir run PIPELINE`, its log going to a file.
pub struct WeirProcess {
    child: Option<Child>,
    pub pipeline: PathBuf,
    pub log: PathBuf,
}

impl WeirProcess {
    /// Start `weir run pipeline` and wait until it logs that it is ready.
    pub fn start(pipeline: &Path) -> WeirProcess {
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let run = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = pipeline.with_extension(format!("run{run}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(weir_binary()).arg("run").arg(pipeline).env("RUST_LOG", "info").stderr(file).stdout(Stdio::null()).spawn().unwrap();
        let mut process = WeirProcess { child: Some(child), pipeline: pipeline.to_owned(), log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !process.log_text().contains("ready: every source") {
            if let Some(status) = process.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("weir exited ({status}) before it was ready:\n{}", process.log_text());
            }
            assert!(Instant::now() < deadline, "weir not ready within 30 s:\n{}", process.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
        process
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// kill -9: no drain, no clean close.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait for the drain; panics with the log if weir did not exit cleanly.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = terminate(&mut child, Duration::from_secs(40));
            assert!(status.success(), "weir exited with {status}:\n{}", self.log_text());
        }
    }
}

impl Drop for WeirProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A pipeline running in this process.
pub struct RunningPipeline {
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub dir: tempfile::TempDir,
}

impl RunningPipeline {
    /// Check and start the pipeline in `toml` (written to a temp dir, so relative paths start
    /// there; use absolute module paths). Waits until every source is subscribed.
    pub async fn start(toml: &str) -> RunningPipeline {
        // `WEIR_TEST_LOG=debug cargo test …` shows weir's log.
        if let Ok(level) = std::env::var("WEIR_TEST_LOG") {
            // SAFETY: set before weir's logging reads it; tests that log run single-threaded setup here.
            #[allow(unsafe_code)]
            unsafe {
                std::env::set_var("RUST_LOG", level)
            };
            weir::telemetry::init_logging(weir::telemetry::LogFormat::Human);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipeline.toml");
        std::fs::write(&path, toml).unwrap();
        // Module calls happen in `check`: keep them off the async worker threads.
        let checked = tokio::task::spawn_blocking(move || weir::cli::check::check(&path)).await.unwrap();
        let checked = match checked {
            Ok(checked) => checked,
            Err(err) => panic!("pipeline does not check:\n{err:#}\n{toml}"),
        };
        let shutdown = CancellationToken::new();
        let (ready_tx, mut ready_rx) = watch::channel(false);
        let token = shutdown.clone();
        let task =
            tokio::spawn(async move { weir::executor::run(&checked.loaded, checked.plan, checked.modules, &checked.registry, token, Some(ready_tx)).await });
        tokio::time::timeout(Duration::from_secs(20), ready_rx.wait_for(|ready| *ready))
            .await
            .expect("pipeline not ready within 20 s")
            .expect("pipeline stopped before it was ready");
        RunningPipeline { shutdown, task: Some(task), dir }
    }

    /// Drain and stop; returns the executor's result.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(40), task).await.expect("pipeline did not stop within 40 s").unwrap()
    }
}

impl Drop for RunningPipeline {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// What a test client's event loop saw.
#[allow(clippy::large_enum_variant)] // one per event, moved straight into a channel
enum Seen {
    Publish(Publish),
    Subscribed,
    Other,
    Error,
}

/// An MQTT 5 or 3.1.1 event loop, seen the same way.
trait TestEventLoop: Send + 'static {
    fn next(&mut self) -> impl std::future::Future<Output = Seen> + Send;
}

impl TestEventLoop for rumqttc::v5::EventLoop {
    async fn next(&mut self) -> Seen {
        match self.poll().await {
            Ok(Event::Incoming(Packet::Publish(publish))) => Seen::Publish(publish),
            Ok(Event::Incoming(Packet::SubAck(_))) => Seen::Subscribed,
            Ok(_) => Seen::Other,
            Err(_) => Seen::Error,
        }
    }
}

impl TestEventLoop for rumqttc::EventLoop {
    async fn next(&mut self) -> Seen {
        match self.poll().await {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => Seen::Publish(Publish::new(p.topic, QoS::AtLeastOnce, p.payload, None)),
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => Seen::Subscribed,
            Ok(_) => Seen::Other,
            Err(_) => Seen::Error,
        }
    }
}

/// Drive a client's event loop, forwarding publishes and signalling once `wanted`
/// subscriptions are acknowledged.
fn collect(
    wanted: usize,
    subscribed: mpsc::Sender<()>,
    publishes: mpsc::UnboundedSender<Publish>,
    mut eventloop: impl TestEventLoop,
) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        let mut acks = 0;
        loop {
            match eventloop.next().await {
                Seen::Publish(publish) => {
                    let _ = publishes.send(publish);
                }
                Seen::Subscribed => {
                    acks += 1;
                    if acks == wanted {
                        let _ = subscribed.send(()).await;
                    }
                }
                Seen::Other => {}
                Seen::Error => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .abort_handle()
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

/// The topics of these messages, sorted.
pub fn sorted_topics(messages: &[Publish]) -> Vec<String> {
    let mut topics: Vec<String> = messages.iter().map(|p| String::from_utf8_lossy(&p.topic).into_owned()).collect();
    topics.sort();
    topics
}

/// An MQTT 5 client subscribed to topics, collecting what arrives.
pub struct Subscriber {
    rx: mpsc::UnboundedReceiver<Publish>,
    /// Keeps the connection open (an MQTT 5 or 3.1.1 client).
    _client: Box<dyn std::any::Any + Send>,
    /// The task driving the connection: stopped on drop, so a dropped subscriber does not
    /// reconnect behind the test's back and take over its session.
    connection: tokio::task::AbortHandle,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl Subscriber {
    pub async fn connect(port: u16, topics: &[&str]) -> Subscriber {
        Self::connect_as(port, topics, None).await
    }

    /// Subscribe with a user name and password.
    pub async fn connect_with_credentials(port: u16, topics: &[&str], user: &str, password: &str) -> Subscriber {
        Self::connect_as(port, topics, Some((user, password))).await
    }

    /// Subscribe with a persistent session under `client_id`: after a broker restart (with
    /// persistence) or a reconnect, what was queued for it arrives.
    pub async fn connect_persistent(port: u16, topics: &[&str], client_id: &str) -> Subscriber {
        Self::connect_with(port, topics, None, Some(client_id)).await
    }

    async fn connect_as(port: u16, topics: &[&str], credentials: Option<(&str, &str)>) -> Subscriber {
        Self::connect_with(port, topics, credentials, None).await
    }

    async fn connect_with(port: u16, topics: &[&str], credentials: Option<(&str, &str)>, persistent_id: Option<&str>) -> Subscriber {
        let id = persistent_id.map(str::to_owned).unwrap_or_else(|| format!("test-sub-{}", free_port()));
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(10));
        options.set_max_packet_size(Some(16 << 20));
        if persistent_id.is_some() {
            options.set_clean_start(false);
            options.set_session_expiry_interval(Some(3600));
        }
        if let Some((user, password)) = credentials {
            options.set_credentials(user, password);
        }
        let (client, eventloop) = AsyncClient::new(options, 100);
        let (tx, rx) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed_rx) = mpsc::channel(1);
        for topic in topics {
            client.subscribe(*topic, QoS::AtLeastOnce).await.unwrap();
        }
        let connection = collect(topics.len(), subscribed_tx, tx, eventloop);
        tokio::time::timeout(Duration::from_secs(10), subscribed_rx.recv()).await.expect("subscription not acknowledged");
        Subscriber { rx, _client: Box::new(client), connection }
    }

    /// The same over MQTT 3.1.1 (the embedded broker's protocol); messages arrive in the
    /// MQTT 5 type with no properties.
    pub async fn connect_v311(port: u16, topics: &[&str]) -> Subscriber {
        let mut options = rumqttc::MqttOptions::new(format!("test-sub-{}", free_port()), "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(10));
        let (client, eventloop) = rumqttc::AsyncClient::new(options, 100);
        let (tx, rx) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed_rx) = mpsc::channel(1);
        for topic in topics {
            client.subscribe(*topic, rumqttc::QoS::AtLeastOnce).await.unwrap();
        }
        let connection = collect(topics.len(), subscribed_tx, tx, eventloop);
        tokio::time::timeout(Duration::from_secs(10), subscribed_rx.recv()).await.expect("subscription not acknowledged");
        Subscriber { rx, _client: Box::new(client), connection }
    }

    /// The next message (`None` if the connection task ended).
    pub async fn next(&mut self) -> Option<Publish> {
        self.rx.recv().await
    }

    /// The next `n` messages, or fail after `timeout` saying how many came.
    pub async fn take(&mut self, n: usize, timeout: Duration) -> Vec<Publish> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while out.len() < n {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(publish)) => out.push(publish),
                _ => panic!("expected {n} messages, got {} within {timeout:?}: {out:?}", out.len()),
            }
        }
        out
    }

    /// Assert nothing more arrives within `wait`.
    pub async fn assert_quiet(&mut self, wait: Duration) {
        if let Ok(Some(extra)) = tokio::time::timeout(wait, self.rx.recv()).await {
            panic!("unexpected message: {extra:?}");
        }
    }
}

/// Publish messages with MQTT 5 properties at QoS 1 and wait until the broker has them.
pub async fn publish_v5(port: u16, messages: Vec<(String, Vec<u8>, PublishProperties)>) {
    publish_v5_as(port, messages, None, QoS::AtLeastOnce).await
}

/// [`publish_v5`] at another QoS: waits for PUBCOMP at QoS 2, for the packets to leave at QoS 0.
pub async fn publish_v5_qos(port: u16, messages: Vec<(String, Vec<u8>, PublishProperties)>, qos: QoS) {
    publish_v5_as(port, messages, None, qos).await
}

/// [`publish_v5`] with a user name and password.
pub async fn publish_v5_with_credentials(port: u16, messages: Vec<(String, Vec<u8>, PublishProperties)>, user: &str, password: &str) {
    publish_v5_as(port, messages, Some((user, password)), QoS::AtLeastOnce).await
}

async fn publish_v5_as(port: u16, messages: Vec<(String, Vec<u8>, PublishProperties)>, credentials: Option<(&str, &str)>, qos: QoS) {
    let mut options = MqttOptions::new(format!("test-pub-{}", free_port()), "127.0.0.1", port);
    if let Some((user, password)) = credentials {
        options.set_credentials(user, password);
    }
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    let total = messages.len();
    let driver = tokio::spawn(async move {
        let mut acked = 0;
        while acked < total {
            match (eventloop.poll().await, qos) {
                (Ok(Event::Incoming(Packet::PubAck(_))), QoS::AtLeastOnce) => acked += 1,
                (Ok(Event::Incoming(Packet::PubComp(_))), QoS::ExactlyOnce) => acked += 1,
                (Ok(Event::Outgoing(rumqttc::Outgoing::Publish(_))), QoS::AtMostOnce) => acked += 1,
                (Ok(_), _) => {}
                (Err(err), _) => panic!("publisher: {err}"),
            }
        }
    });
    for (topic, payload, properties) in messages {
        client.publish_with_properties(topic, qos, false, payload, properties).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(20), driver).await.expect("broker did not acknowledge the publishes").unwrap();
    // Give QoS 0 packets time to leave the socket before the client is dropped.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// User properties of a received publish.
pub fn user_properties(publish: &Publish) -> Vec<(String, String)> {
    publish.properties.as_ref().map(|p| p.user_properties.clone()).unwrap_or_default()
}

/// Lines of a JSON Lines file, parsed (empty if the file does not exist yet).
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
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
