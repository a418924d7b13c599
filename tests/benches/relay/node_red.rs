//! Node-RED doing the threshold job (R6): `mqtt in` (JSON) → `function` → `mqtt out`, the
//! flow most Node-RED edge deployments start from. Node-RED comes from npm
//! (`scripts/bench-relay.sh` installs it into `$WEIR_TOOLS/node-red`), runs with its own
//! user directory, its editor on a free loopback port, and is killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir_tests::free_port;

pub struct NodeRed {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for NodeRed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    let tools = std::env::var_os("WEIR_TOOLS").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        home.join(".cache/weir-tools")
    });
    let path = tools.join("node-red/node_modules/.bin/node-red");
    assert!(
        path.is_file(),
        "{} is missing: install Node-RED with `npm install --prefix \"$WEIR_TOOLS/node-red\" node-red@4` (scripts/bench-relay.sh does)",
        path.display()
    );
    path
}

/// The flow: readings on `input` whose `field` is over `limit` go to `output`, subscribed
/// and published at `qos`. (Nodes without a position are taken for configuration nodes, so
/// each has `x` and `y`.)
fn flow(broker: u16, qos: u8, input: &str, output: &str, field: &str, limit: f64) -> String {
    serde_json::json!([
        { "id": "tab", "type": "tab", "label": "threshold" },
        {
            "id": "broker", "type": "mqtt-broker", "name": "local", "broker": "127.0.0.1", "port": broker.to_string(),
            "clientid": "", "autoConnect": true, "usetls": false, "protocolVersion": "4", "keepalive": "60",
            "cleansession": true, "birthTopic": "", "closeTopic": "", "willTopic": ""
        },
        {
            "id": "in", "type": "mqtt in", "z": "tab", "name": "readings", "topic": input, "qos": qos.to_string(), "datatype": "json",
            "broker": "broker", "nl": false, "rap": true, "rh": 0, "inputs": 0, "x": 100, "y": 100, "wires": [["threshold"]]
        },
        {
            "id": "threshold", "type": "function", "z": "tab", "name": "threshold", "outputs": 1, "timeout": 0,
            "func": format!("return msg.payload.{field} > {limit} ? msg : null;"), "x": 300, "y": 100, "wires": [["out"]]
        },
        { "id": "out", "type": "mqtt out", "z": "tab", "name": "alerts", "topic": output, "qos": qos.to_string(), "retain": "false", "broker": "broker", "x": 500, "y": 100, "wires": [] }
    ])
    .to_string()
}

impl NodeRed {
    /// Start Node-RED with the threshold flow at `qos` and wait until its editor answers and
    /// the flow had a moment to connect.
    pub fn start(broker: u16, qos: u8, input: &str, output: &str, field: &str, limit: f64) -> NodeRed {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        std::fs::write(dir.path().join("flows.json"), flow(broker, qos, input, output, field, limit)).expect("flow file");
        // Loopback only, no telemetry, no update checks, no projects.
        let settings = format!(
            "module.exports = {{ uiHost: '127.0.0.1', uiPort: {port}, flowFile: 'flows.json', credentialSecret: false, \
             diagnostics: {{ enabled: false }}, telemetry: {{ enabled: false }}, logging: {{ console: {{ level: 'warn' }} }} }};\n"
        );
        std::fs::write(dir.path().join("settings.js"), settings).expect("settings file");
        let child = Command::new(binary())
            .args(["--userDir", &path_text(dir.path()), "--settings", &path_text(&dir.path().join("settings.js"))])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting node-red");
        let node_red = NodeRed { child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "Node-RED did not answer on 127.0.0.1:{port} within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(2)); // the flow's MQTT nodes connect and subscribe
        node_red
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
