//! weir under test: a pipeline running in this process, or the `weir` binary as a process
//! of its own (to kill -9 and restart).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::terminate;

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
