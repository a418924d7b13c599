//! Why weir's queue is its own segmented log: the same job done by the queue and by redb
//! (a well-kept embedded key-value store), side by side in one run.
//!
//! The job: 20,000 messages of 256 bytes written in groups of 64 (one group = one commit,
//! as the writer's group commit does), then all of them read back in order in batches of
//! 64 and removed (as the forwarder does). Each with an fsync per group and without.
//! Printed: messages per second for writing and for draining, and the disk space used
//! when full and after draining. Results and discussion: docs/store-and-forward.md.
//!
//!     cargo bench -p weir --bench queue_store

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redb::{Database, Durability, ReadableDatabase, ReadableTableMetadata, TableDefinition};
use weir::queue::{Fsync, Item, QueueSettings, SinkQueue, WhenFull};
use weir_core::{Ack, Message, Metadata};

const MESSAGES: usize = 20_000;
const GROUP: usize = 64;
const RUNS: usize = 3;
const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("queue");

fn message(n: usize) -> Message {
    let payload = format!("{{\"machine\":\"m{}\",\"seq\":{n},\"pad\":\"{}\"}}", n % 50, "x".repeat(220));
    Message::new(Bytes::from(payload), Metadata::new("local".into(), format!("factory/m{}/telemetry", n % 50)), Ack::none())
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    write_per_s: f64,
    drain_per_s: f64,
    full_bytes: u64,
    drained_bytes: u64,
}

fn dir_bytes(path: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
        let meta = entry.metadata().expect("metadata");
        total += if meta.is_dir() { dir_bytes(&entry.path()) } else { meta.len() };
    }
    total
}

fn weir_log(fsync: Fsync) -> Figures {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = QueueSettings { dir: dir.path().join("q"), max_bytes: 1 << 30, when_full: WhenFull::Block, fsync, time_to_live: Duration::from_secs(7200) };
    let queue = SinkQueue::open("bench", settings).expect("open");
    let messages: Vec<Message> = (0..MESSAGES).map(message).collect();
    let started = Instant::now();
    for group in messages.chunks(GROUP) {
        let items = group.iter().map(|m| Item { message: m.clone(), priority: 0, expires_ms: 0 }).collect();
        queue.enqueue(items, &|| false).expect("enqueue");
    }
    let write = started.elapsed();
    let full_bytes = dir_bytes(dir.path());
    let started = Instant::now();
    let mut seen = 0;
    while let Some(peek) = queue.peek(GROUP, 4 << 20).expect("peek") {
        seen += peek.records.len();
        queue.commit(&peek).expect("commit");
    }
    let drain = started.elapsed();
    assert_eq!(seen, MESSAGES);
    Figures {
        write_per_s: MESSAGES as f64 / write.as_secs_f64(),
        drain_per_s: MESSAGES as f64 / drain.as_secs_f64(),
        full_bytes,
        drained_bytes: dir_bytes(dir.path()),
    }
}

fn redb_store(durability: Durability) -> Figures {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::create(dir.path().join("queue.redb")).expect("create");
    // The same bytes the log stores: the encoded record.
    let records: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|n| {
            let mut frame = Vec::new();
            weir::queue::record::encode(&mut frame, &message(n), 0, 0);
            frame
        })
        .collect();
    let started = Instant::now();
    for (g, group) in records.chunks(GROUP).enumerate() {
        let mut txn = db.begin_write().expect("begin");
        txn.set_durability(durability).expect("durability");
        {
            let mut table = txn.open_table(TABLE).expect("table");
            for (i, record) in group.iter().enumerate() {
                table.insert((g * GROUP + i) as u64, record.as_slice()).expect("insert");
            }
        }
        txn.commit().expect("commit");
    }
    let write = started.elapsed();
    let full_bytes = dir_bytes(dir.path());
    let started = Instant::now();
    let mut seen = 0;
    loop {
        let mut txn = db.begin_write().expect("begin");
        txn.set_durability(durability).expect("durability");
        let mut taken = 0;
        {
            let mut table = txn.open_table(TABLE).expect("table");
            while taken < GROUP {
                match table.pop_first().expect("pop") {
                    Some(entry) => {
                        let decoded = weir::queue::record::decode(&Bytes::copy_from_slice(entry.1.value())).expect("decode");
                        std::hint::black_box(decoded);
                        taken += 1;
                    }
                    None => break,
                }
            }
        }
        txn.commit().expect("commit");
        seen += taken;
        if taken == 0 {
            break;
        }
    }
    let drain = started.elapsed();
    assert_eq!(seen, MESSAGES);
    let empty = db.begin_read().expect("read").open_table(TABLE).expect("table").len().expect("len") == 0;
    assert!(empty);
    drop(db);
    Figures {
        write_per_s: MESSAGES as f64 / write.as_secs_f64(),
        drain_per_s: MESSAGES as f64 / drain.as_secs_f64(),
        full_bytes,
        drained_bytes: dir_bytes(dir.path()),
    }
}

fn median(mut runs: Vec<Figures>) -> Figures {
    runs.sort_by(|a, b| a.write_per_s.total_cmp(&b.write_per_s));
    let mut figures = runs[runs.len() / 2];
    let mut drains: Vec<f64> = runs.iter().map(|r| r.drain_per_s).collect();
    drains.sort_by(f64::total_cmp);
    figures.drain_per_s = drains[drains.len() / 2];
    figures
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once as a smoke test.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let runs = if smoke { 1 } else { RUNS };
    println!("{MESSAGES} messages of ~256 B, groups of {GROUP}; median of {runs} run(s), interleaved");
    println!("{:<34} {:>12} {:>12} {:>12} {:>14}", "store", "write msg/s", "drain msg/s", "full bytes", "drained bytes");
    let mut results: Vec<(&str, Vec<Figures>)> = vec![
        ("weir log, fsync per group", Vec::new()),
        ("redb, Durability::Immediate", Vec::new()),
        ("weir log, no fsync", Vec::new()),
        ("redb, Durability::None", Vec::new()),
    ];
    for _ in 0..runs {
        results[0].1.push(weir_log(Fsync::Batch));
        results[1].1.push(redb_store(Durability::Immediate));
        results[2].1.push(weir_log(Fsync::Never));
        results[3].1.push(redb_store(Durability::None));
    }
    for (name, runs) in results {
        let f = median(runs);
        println!("{name:<34} {:>12.0} {:>12.0} {:>12} {:>14}", f.write_per_s, f.drain_per_s, f.full_bytes, f.drained_bytes);
    }
}
