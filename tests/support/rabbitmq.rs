//! RabbitMQ (Debian's `rabbitmq-server`) on a free loopback port, with its own node name,
//! Erlang cookie, data and log directories in a temp dir, killed on drop (nothing in it
//! needs a clean shutdown).
//!
//! The node runs as the user running the tests. (Under `runuser -u rabbitmq`, killing the
//! node's process group took the caller's whole session down on this machine.)

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

pub struct RabbitMq {
    pub port: u16,
    node: String,
    env: Vec<(&'static str, String)>,
    /// The start script; the Erlang VM under it writes its pid to `rabbit.pid`.
    child: Child,
    dir: tempfile::TempDir,
}

impl RabbitMq {
    /// Start a node and wait until it accepts AMQP connections (about 10 s).
    pub fn start() -> RabbitMq {
        assert!(Path::new(SERVER).is_file(), "{SERVER} is missing: install RabbitMQ with `apt-get install rabbitmq-server` (scripts/test.sh does)");
        let port = free_port();
        let node = format!("weir-test-{port}@localhost");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").unwrap();
        let env = Self::env(dir.path(), &node, port);
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(SERVER)
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {SERVER}: {err}"));
        let mut rabbit = RabbitMq { port, node, env, child, dir };
        // The AMQP listener opens once the node has booted.
        let deadline = Instant::now() + Duration::from_secs(90);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = rabbit.child.try_wait() {
                panic!("RabbitMQ exited ({status}) while starting:\n{}", rabbit.log());
            }
            assert!(Instant::now() < deadline, "RabbitMQ did not listen on 127.0.0.1:{port} within 90 s:\n{}", rabbit.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        rabbit
    }

    fn env(dir: &Path, node: &str, port: u16) -> Vec<(&'static str, String)> {
        let path = |name: &str| dir.join(name).display().to_string();
        vec![
            // The Erlang cookie lives in $HOME: the node's and rabbitmqctl's must match.
            ("HOME", dir.display().to_string()),
            ("RABBITMQ_NODENAME", node.to_owned()),
            ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".into()),
            ("RABBITMQ_NODE_PORT", port.to_string()),
            // The default (port + 20000) may not exist above ephemeral ports.
            ("RABBITMQ_DIST_PORT", free_port().to_string()),
            ("ERL_EPMD_ADDRESS", "127.0.0.1".into()),
            ("RABBITMQ_MNESIA_BASE", path("mnesia")),
            ("RABBITMQ_LOG_BASE", path("log")),
            ("RABBITMQ_LOGS", "-".into()),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins")),
            ("RABBITMQ_CONFIG_FILE", path("rabbitmq")),
            ("RABBITMQ_ADVANCED_CONFIG_FILE", path("advanced.config")),
            ("RABBITMQ_CONF_ENV_FILE", path("rabbitmq-env.conf")),
            ("RABBITMQ_PID_FILE", path("rabbit.pid")),
        ]
    }

    /// `rabbitmqctl -n NODE ARGS…` with the node's environment.
    pub fn ctl(&self, args: &[&str]) -> std::process::Output {
        let mut command = Command::new(CTL);
        command.envs(self.env.iter().map(|(name, value)| (*name, value.as_str()))).args(["-n", &self.node]).args(args);
        command.output().unwrap_or_else(|err| panic!("cannot run {CTL}: {err}"))
    }

    /// `amqp://127.0.0.1:PORT/%2f` (user guest, which RabbitMQ accepts from loopback).
    pub fn url(&self) -> String {
        format!("amqp://127.0.0.1:{}/%2f", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        // The Erlang VM by its pid (the start script only waits for it), then the script.
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("rabbit.pid")) {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
