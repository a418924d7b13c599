//! A memory cgroup of the test's own, to run a process under a memory limit as a container
//! runtime would (cgroup v2's `memory.max`, or v1's `memory.limit_in_bytes`).

use std::path::{Path, PathBuf};

/// A memory cgroup with a limit, removed on drop (once its processes have ended).
pub struct MemoryLimit {
    dir: PathBuf,
    v2: bool,
}

impl MemoryLimit {
    /// A cgroup limited to `bytes`. Needs root and a memory controller (CI and scripts/test.sh
    /// run as root): without them the test fails and says so.
    pub fn new(bytes: u64) -> MemoryLimit {
        static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!("weir-test-{}-{}", std::process::id(), MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let v2 = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"));
        let (dir, limit_file) =
            if v2 { (Path::new("/sys/fs/cgroup").join(name), "memory.max") } else { (Path::new("/sys/fs/cgroup/memory").join(name), "memory.limit_in_bytes") };
        if let Err(err) = std::fs::create_dir(&dir) {
            panic!(
                "could not make the memory cgroup {} ({err}): this test runs weir under a memory limit, which needs root and a cgroup memory controller",
                dir.display()
            );
        }
        let limit = MemoryLimit { dir, v2 };
        limit.write(limit_file, &bytes.to_string());
        if !v2 {
            // No swap to escape to: the limit is the memory there is.
            let _ = std::fs::write(limit.dir.join("memory.memsw.limit_in_bytes"), bytes.to_string());
        }
        limit
    }

    /// Move process `pid` into the cgroup (what it allocates from now on counts).
    pub fn add(&self, pid: u32) {
        self.write("cgroup.procs", &pid.to_string());
    }

    /// The most memory the cgroup's processes held at once, in bytes.
    pub fn peak_bytes(&self) -> u64 {
        let file = if self.v2 { "memory.peak" } else { "memory.max_usage_in_bytes" };
        self.read(file).trim().parse().unwrap_or_else(|err| panic!("{}: {err}", self.dir.join(file).display()))
    }

    /// How many times the kernel's OOM killer killed a process of the cgroup.
    pub fn oom_kills(&self) -> u64 {
        let file = if self.v2 { "memory.events" } else { "memory.oom_control" };
        let text = self.read(file);
        text.lines().find_map(|line| line.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
    }

    fn write(&self, file: &str, value: &str) {
        let path = self.dir.join(file);
        std::fs::write(&path, value).unwrap_or_else(|err| panic!("writing {value} to {}: {err}", path.display()));
    }

    fn read(&self, file: &str) -> String {
        let path = self.dir.join(file);
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
    }
}

impl Drop for MemoryLimit {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}
