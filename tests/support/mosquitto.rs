//! Mosquitto on a free loopback port, and a test PKI for its TLS listeners.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, terminate, wait_for_port};

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
        Self::start_configured(dir, port, &format!("max_inflight_messages 1000\nmax_queued_messages 200000\n{extra}"))
    }

    /// Mosquitto with its stock limits (20 QoS 1/2 messages in flight and 1,000 queued per
    /// client; more are dropped), as a plant runs it that changed nothing.
    pub fn start_stock() -> Mosquitto {
        Self::start_configured(tempfile::tempdir().unwrap(), free_port(), "allow_anonymous true\n")
    }

    fn start_configured(dir: tempfile::TempDir, port: u16, extra: &str) -> Mosquitto {
        let config = dir.path().join("mosquitto.conf");
        let persistence = if extra.contains("persistence true") { "" } else { "persistence false\n" };
        let text = format!("per_listener_settings false\nlistener {port} 127.0.0.1\n{persistence}{extra}");
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
