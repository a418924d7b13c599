//! How long a sink's queue takes to open with a backlog: after a clean stop (each lane's
//! index stands in for reading the segments) and after a crash or `weir queue repair` (every
//! segment read and every frame checked). Page cache warm, and cold where this process may
//! drop the kernel's caches (root: `/proc/sys/vm/drop_caches`). Figures: docs/benchmarks.md.
//!
//!     cargo bench -p weir --bench queue_open [-- MIB]      (default 512 MiB of backlog)

use std::time::{Duration, Instant};

use bytes::Bytes;
use weir::queue::{Fsync, Item, QueueSettings, SinkQueue, WhenFull};
use weir_core::{Ack, Message, Metadata};

const PAYLOAD: usize = 4096;
const GROUP: usize = 256;

fn main() {
    let mib: usize = std::env::args().skip(1).find_map(|arg| arg.parse().ok()).unwrap_or(512);
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = QueueSettings {
        dir: dir.path().join("q"),
        max_bytes: 64 << 30,
        when_full: WhenFull::Block,
        fsync: Fsync::Never,
        time_to_live: Duration::from_secs(86_400),
    };
    let messages = (mib << 20) / PAYLOAD;
    {
        let queue = SinkQueue::open("bench", settings.clone()).expect("open");
        let payload = Bytes::from(vec![b'x'; PAYLOAD]);
        for start in (0..messages).step_by(GROUP) {
            let items = (start..(start + GROUP).min(messages))
                .map(|n| Item {
                    message: Message::new(payload.clone(), Metadata::new("local".into(), format!("m/{n}")), Ack::none()),
                    priority: 0,
                    expires_ms: 0,
                })
                .collect();
            queue.enqueue(items, &|| false).expect("enqueue");
        }
        queue.close().expect("close");
    }
    println!("queue_open: a backlog of {messages} messages of {PAYLOAD} bytes ({mib} MiB), opened 3 times each way");
    let cold = drop_caches();
    for caches in if cold { vec![false, true] } else { vec![false] } {
        for (name, scan) in [("after a clean stop (index)", false), ("scanning (crash, repair)", true)] {
            let mut times = Vec::new();
            for _ in 0..3 {
                if caches {
                    drop_caches();
                }
                let started = Instant::now();
                let queue = if scan { SinkQueue::open_scanning("bench", settings.clone()) } else { SinkQueue::open("bench", settings.clone()) }.expect("open");
                times.push(started.elapsed());
                assert_eq!(queue.stats().depth, messages as u64);
                queue.close().expect("close");
            }
            times.sort();
            println!(
                "  {:<30} page cache {:<5} median {:>9.1} ms (min {:.1}, max {:.1})",
                name,
                if caches { "cold" } else { "warm" },
                ms(times[1]),
                ms(times[0]),
                ms(times[2])
            );
        }
    }
    if !cold {
        println!("  (no cold-cache figures: /proc/sys/vm/drop_caches is not writable here)");
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Write dirty pages back and drop the page cache; whether this process may.
fn drop_caches() -> bool {
    let _ = std::process::Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}
