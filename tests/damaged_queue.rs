//! A damaged store-and-forward queue never keeps weir from starting, and costs only the
//! records in the damaged bytes: weir quarantines what it cannot read and delivers every
//! intact record. Damage made here, all at once, to a queue written by weir itself:
//!
//! - 4 MiB of random bytes inside a 64 MiB segment (scanning past garbage used to compute a
//!   checksum per byte offset over whatever length the garbage claimed: hours);
//! - one flipped bit in a segment's header (the whole intact segment used to be dropped);
//! - a directory and a FIFO named like segments (reading the FIFO would wait forever);
//! - a foreign file named like a segment;
//! - records of 100 KiB written under a 1 GiB cap, read under a 1 MiB one (they used to be
//!   judged implausible by the new cap).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use weir::queue::{Fsync, Item, QueueSettings, SinkQueue, WhenFull, lane_dir, segment};
use weir_tests::{WeirProcess, weir_binary};

/// Payload of record `n`: JSON of a fixed length, so every record's frame has the same size.
fn payload(n: usize, pad: usize) -> Vec<u8> {
    format!("{{\"id\":\"{n:08}\",\"pad\":\"{}\"}}", "x".repeat(pad)).into_bytes()
}

fn item(n: usize, pad: usize, priority: u8) -> Item {
    let meta = weir_core::Metadata::new("local".into(), "data/m1");
    Item { message: weir_core::Message::new(payload(n, pad), meta, weir_core::Ack::none()), priority, expires_ms: 0 }
}

/// Deterministic bytes that look random (xorshift).
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// The JSON lines of a file a sink is still writing: a last line not yet whole is left out.
fn complete_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// Patch `bytes` into the file at `at`.
fn overwrite(path: &Path, at: usize, bytes: &[u8]) {
    let mut data = std::fs::read(path).unwrap();
    data[at..at + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, data).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_queue_never_keeps_weir_from_starting_and_every_intact_record_arrives() {
    const PAD: usize = 4000;
    const BIG: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let queue_dir = dir.path().join("store/cloud");
    let settings = |max_bytes| QueueSettings {
        dir: queue_dir.clone(),
        max_bytes,
        when_full: WhenFull::Block,
        fsync: Fsync::Never,
        time_to_live: Duration::from_secs(7 * 86_400),
    };
    // Written under a 1 GiB cap: 64 MiB segments. 18,000 records of ~4 KiB fill the first and
    // start the second; three records of 100 KiB go to lane 1.
    let total = 18_000;
    let frame = {
        let mut frame = Vec::new();
        weir::queue::record::encode(&mut frame, &item(0, PAD, 0).message, weir_core::message::now_ms(), 0)
    };
    {
        let queue = SinkQueue::open("cloud", settings(1 << 30)).unwrap();
        for start in (0..total).step_by(1000) {
            queue.enqueue((start..start + 1000).map(|n| item(n, PAD, 0)).collect(), &|| false).unwrap();
        }
        queue.enqueue((total..total + BIG).map(|n| item(n, 100 << 10, 1)).collect(), &|| false).unwrap();
        queue.close().unwrap();
    }
    let lane = lane_dir(&queue_dir, 0);
    let first = segment::path(&lane, 1);
    let per_segment = ((64 << 20) - segment::HEADER as usize) / frame;
    assert!(std::fs::metadata(segment::path(&lane, 2)).is_ok(), "the records fill more than one segment");

    // 4 MiB of garbage in the middle of the first segment: the records it touches are lost.
    let (from, to) = (30 << 20, 34 << 20);
    overwrite(&first, from, &garbage(to - from, 0x9e37_79b9_7f4a_7c15));
    let hit = |n: usize| {
        let start = segment::HEADER as usize + n * frame;
        n < per_segment && start < to && start + frame > from
    };
    // One flipped bit in the second segment's header.
    overwrite(&segment::path(&lane, 2), 3, &[b'R' ^ 0x04]);
    // Things named like segments that are not.
    std::fs::create_dir(segment::path(&lane, 999)).unwrap();
    assert!(Command::new("mkfifo").arg(segment::path(&lane, 998)).status().unwrap().success());
    std::fs::write(segment::path(&lane, 997), garbage(10_000, 7)).unwrap();

    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        "upstream = \"cloud\"\n[store]\ndir = \"store\"\nmax_size = \"1MiB\"\n[sinks.cloud]\ntype = \"file\"\npath = \"cloud.jsonl\"\n[routes]\nup = \"FROM /topics/data/# INTO $upstream\"\n",
    )
    .unwrap();
    let started = Instant::now();
    let mut weir = WeirProcess::start(&pipeline);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "weir took {took:?} to start on the damaged queue");

    let expected: BTreeSet<usize> = (0..total + BIG).filter(|n| !hit(*n)).collect();
    assert!(expected.len() < total + BIG - 900, "the garbage should cost about a thousand records");
    let output = dir.path().join("cloud.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    let seen = loop {
        let seen: BTreeSet<usize> = complete_lines(&output).iter().map(|line| line["payload"]["id"].as_str().unwrap().parse().unwrap()).collect();
        if seen.len() >= expected.len() || Instant::now() > deadline {
            break seen;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let missing: Vec<&usize> = expected.difference(&seen).take(10).collect();
    assert!(missing.is_empty(), "{} of {} intact records delivered; missing (first 10): {missing:?}", seen.len(), expected.len());
    assert!(seen.is_subset(&expected), "a record from the damaged bytes came out");
    let log = weir.log_text();
    assert!(log.contains("damaged queue data"), "{log}");
    assert!(log.contains("not a regular file, though named like a queue segment"), "{log}");
    weir.stop();

    // `weir queue repair` on the stopped queue: a report, and nothing more to set aside.
    let repair = Command::new(weir_binary()).args(["queue", "repair"]).arg(&pipeline).output().unwrap();
    let text = String::from_utf8_lossy(&repair.stdout);
    assert!(repair.status.success(), "{text}{}", String::from_utf8_lossy(&repair.stderr));
    assert!(text.contains("sink `cloud`: repaired: 0 message(s) kept"), "{text}");
}
