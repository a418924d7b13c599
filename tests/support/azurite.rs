//! Azurite's blob service on a free loopback port; the Azure SDK for JavaScript
//! (`azure-blob.cjs`) as the independent client that creates containers and reads blobs.

use std::process::{Child, Command, Stdio};

use super::{free_port, repo_root, tools_dir, wait_for_port};

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
