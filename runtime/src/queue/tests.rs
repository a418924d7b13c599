//! The queue against its promises: order, restarts, priorities, the size cap, damage.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use weir_core::{Ack, Message, Metadata};

use super::*;

fn settings(dir: &Path, max_bytes: u64, when_full: WhenFull) -> QueueSettings {
    QueueSettings { dir: dir.to_owned(), max_bytes, when_full, fsync: Fsync::Batch, time_to_live: Duration::from_secs(7200) }
}

fn item(n: usize, priority: u8) -> Item {
    let payload = Bytes::from(format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(200)));
    Item { message: Message::new(payload, Metadata::new("s".into(), format!("t/{n}")), Ack::none()), priority, expires_ms: 0 }
}

fn number(record: &record::Record) -> usize {
    let value: serde_json::Value = serde_json::from_slice(&record.message.payload).expect("json");
    value["n"].as_u64().expect("n") as usize
}

/// Deliver everything (committing each batch); the numbers in delivery order.
fn drain(queue: &SinkQueue) -> Vec<usize> {
    let mut seen = Vec::new();
    while let Some(peek) = queue.peek(10, 1 << 20).expect("peek") {
        seen.extend(peek.records.iter().map(number));
        queue.commit(&peek).expect("commit");
    }
    seen
}

fn never() -> bool {
    false
}

#[test]
fn delivers_in_order_across_segments_and_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings(dir.path(), 1 << 20, WhenFull::Block); // 64 KiB segments
    {
        let queue = SinkQueue::open("cloud", settings.clone()).expect("open");
        queue.enqueue((0..1000).map(|n| item(n, 0)).collect(), &never).expect("enqueue");
        assert_eq!(queue.stats().depth, 1000);
        let first = queue.peek(100, 1 << 20).expect("peek").expect("records");
        assert_eq!(first.records.iter().map(number).collect::<Vec<_>>(), (0..100).collect::<Vec<_>>());
        queue.commit(&first).expect("commit");
        // Dropped without close(): like a crash after the commit.
    }
    let queue = SinkQueue::open("cloud", settings).expect("reopen");
    assert_eq!(queue.stats().depth, 900);
    assert_eq!(drain(&queue), (100..1000).collect::<Vec<_>>());
    assert_eq!(queue.stats().depth, 0);
    let segments = segment::list(&lane_dir(dir.path(), 0)).expect("list");
    assert_eq!(segments.len(), 1, "delivered segments are deleted: {segments:?}");
}

#[test]
fn a_peek_that_is_not_committed_is_delivered_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = SinkQueue::open("cloud", settings(dir.path(), 1 << 20, WhenFull::Block)).expect("open");
    queue.enqueue((0..5).map(|n| item(n, 0)).collect(), &never).expect("enqueue");
    let first = queue.peek(3, 1 << 20).expect("peek").expect("records");
    let again = queue.peek(3, 1 << 20).expect("peek").expect("records");
    assert_eq!(first.records.iter().map(number).collect::<Vec<_>>(), again.records.iter().map(number).collect::<Vec<_>>());
}

#[test]
fn higher_priority_first_but_lower_priorities_are_not_starved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = SinkQueue::open("cloud", settings(dir.path(), 8 << 20, WhenFull::Block)).expect("open");
    queue.enqueue((0..100).map(|n| item(n, 5)).collect(), &never).expect("low first");
    queue.enqueue((100..300).map(|n| item(n, 0)).collect(), &never).expect("then high");
    let mut lanes = Vec::new();
    for _ in 0..16 {
        let peek = queue.peek(10, 1 << 20).expect("peek").expect("records");
        lanes.push(peek.lane);
        queue.commit(&peek).expect("commit");
    }
    // Seven high-priority batches, then the older low-priority lane's turn, and again.
    let expected: Vec<u8> = (1..=16).map(|i| if i % FAIR_EVERY == 0 { 5 } else { 0 }).collect();
    assert_eq!(lanes, expected);
}

#[test]
fn block_policy_refuses_past_the_cap_and_says_what_was_not_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = SinkQueue::open("cloud", settings(dir.path(), 1 << 20, WhenFull::Block)).expect("open");
    let unqueued = queue.enqueue((0..10_000).map(|n| item(n, 0)).collect(), &|| true).expect("enqueue");
    let stats = queue.stats();
    assert!(stats.disk_bytes <= 1 << 20, "cap exceeded: {stats:?}");
    assert!(!unqueued.not_written.is_empty());
    assert_eq!(stats.depth as usize + unqueued.not_written.len(), 10_000);
}

#[test]
fn block_policy_waits_for_the_reader_to_free_space() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = SinkQueue::open("cloud", settings(dir.path(), 1 << 20, WhenFull::Block)).expect("open");
    let writer = {
        let queue = queue.clone();
        std::thread::spawn(move || queue.enqueue((0..20_000).map(|n| item(n, 0)).collect(), &never).expect("enqueue"))
    };
    let mut seen = Vec::new();
    while seen.len() < 20_000 {
        match queue.peek(100, 1 << 20).expect("peek") {
            Some(peek) => {
                seen.extend(peek.records.iter().map(number));
                queue.commit(&peek).expect("commit");
            }
            None => std::thread::sleep(Duration::from_millis(1)),
        }
        assert!(queue.stats().disk_bytes <= 1 << 20);
    }
    let unqueued = writer.join().expect("writer");
    assert!(unqueued.not_written.is_empty() && unqueued.too_large.is_empty());
    assert_eq!(seen, (0..20_000).collect::<Vec<_>>());
}

#[test]
fn drop_oldest_keeps_the_newest_and_counts_what_it_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = SinkQueue::open("cloud", settings(dir.path(), 1 << 20, WhenFull::DropOldest)).expect("open");
    queue.enqueue((0..20_000).map(|n| item(n, 0)).collect(), &never).expect("enqueue");
    let stats = queue.stats();
    assert!(stats.disk_bytes <= 1 << 20, "cap exceeded: {stats:?}");
    let seen = drain(&queue);
    assert_eq!(*seen.last().expect("some kept"), 19_999);
    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "what is kept is a contiguous newest run");
}

#[test]
fn a_record_too_large_for_the_queue_is_handed_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = SinkQueue::open("cloud", settings(dir.path(), 1 << 20, WhenFull::Block)).expect("open");
    let big = Message::new(Bytes::from(vec![b'x'; 100_000]), Metadata::new("s".into(), "t"), Ack::none());
    let unqueued = queue.enqueue(vec![Item { message: big, priority: 0, expires_ms: 0 }, item(1, 0)], &never).expect("enqueue");
    assert_eq!(unqueued.too_large.len(), 1);
    assert!(unqueued.too_large[0].1.contains("raise its max_size"), "{}", unqueued.too_large[0].1);
    assert_eq!(drain(&queue), vec![1]);
}

#[test]
fn damage_is_quarantined_and_the_rest_delivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings(dir.path(), 1 << 20, WhenFull::Block);
    {
        let queue = SinkQueue::open("cloud", settings.clone()).expect("open");
        queue.enqueue((0..1000).map(|n| item(n, 0)).collect(), &never).expect("enqueue");
    }
    // Rot in the middle of the second segment, a torn write at the end of the last, and a
    // file that only pretends to be a segment.
    let lane = lane_dir(dir.path(), 0);
    let ids = segment::list(&lane).expect("list");
    assert!(ids.len() >= 3);
    let middle = segment::path(&lane, ids[1]);
    let mut bytes = std::fs::read(&middle).expect("read");
    let at = bytes.len() / 2;
    bytes[at..at + 64].fill(0xAB);
    std::fs::write(&middle, bytes).expect("write");
    let last = segment::path(&lane, *ids.last().expect("last"));
    let mut tail = std::fs::read(&last).expect("read");
    tail.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&last, tail).expect("write");
    std::fs::write(segment::path(&lane, ids.last().expect("last") + 1), b"garbage").expect("write");

    let report = report::inspect("cloud", dir.path(), settings.limits()).expect("inspect");
    assert!(report.damaged(), "{report}");

    let queue = SinkQueue::open("cloud", settings.clone()).expect("open despite damage");
    queue.enqueue(vec![item(5000, 0)], &never).expect("appends continue after the cut tail");
    let seen = drain(&queue);
    let lost = 1000 - (seen.len() - 1);
    assert!((1..=2).contains(&lost), "one or two records sat in the rotten bytes, lost {lost}");
    assert_eq!(*seen.last().expect("new record"), 5000);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    let quarantined: Vec<_> = std::fs::read_dir(dir.path().join("quarantine")).expect("quarantine").collect();
    assert_eq!(quarantined.len(), 3, "rot, torn tail and the foreign file are kept for inspection");
}

/// 1,000 records over several segments, 100 delivered, then a clean close: the lane's index.
fn closed_cleanly(dir: &Path) -> QueueSettings {
    let settings = settings(dir, 1 << 20, WhenFull::Block);
    let queue = SinkQueue::open("cloud", settings.clone()).expect("open");
    queue.enqueue((0..1000).map(|n| item(n, 0)).collect(), &never).expect("enqueue");
    let first = queue.peek(100, 1 << 20).expect("peek").expect("records");
    queue.commit(&first).expect("commit");
    queue.close().expect("close");
    assert!(lane_dir(dir, 0).join("index").is_file(), "a clean close writes the index");
    settings
}

/// Rot in the middle of the second segment (behind the index's back).
fn rot_second_segment(dir: &Path) {
    let lane = lane_dir(dir, 0);
    let middle = segment::path(&lane, segment::list(&lane).expect("list")[1]);
    let mut bytes = std::fs::read(&middle).expect("read");
    let at = bytes.len() / 2;
    bytes[at..at + 64].fill(0xAB);
    std::fs::write(&middle, bytes).expect("write");
}

#[test]
fn after_a_clean_stop_the_index_opens_the_queue_without_scanning_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = closed_cleanly(dir.path());
    rot_second_segment(dir.path());
    // The index stands in for the scan: the rot is not seen at open, only when read.
    let queue = SinkQueue::open("cloud", settings).expect("reopen");
    assert_eq!(queue.stats().depth, 900, "the depth the index gives");
    assert!(!lane_dir(dir.path(), 0).join("index").exists(), "a used index is removed, so a crash never finds it stale");
    let seen = drain(&queue);
    let lost = 900 - seen.len();
    assert!((1..=2).contains(&lost), "one or two records sat in the rotten bytes, lost {lost}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]) && seen[0] == 100 && *seen.last().expect("last") == 999);
    assert_eq!(std::fs::read_dir(dir.path().join("quarantine")).expect("quarantine").count(), 1, "the rot found while reading is kept");
}

#[test]
fn repair_and_an_index_that_does_not_fit_scan_the_lane() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = closed_cleanly(dir.path());
    rot_second_segment(dir.path());
    let queue = SinkQueue::open_scanning("cloud", settings.clone()).expect("repair's open");
    let depth = queue.stats().depth;
    assert!((898..=899).contains(&depth), "the scan found the rot at open: depth {depth}");
    queue.close().expect("close");
    drop(queue);

    // A newest segment longer than the index says (written after it, or damaged): scanned.
    let lane = lane_dir(dir.path(), 0);
    let last = segment::path(&lane, *segment::list(&lane).expect("list").last().expect("last"));
    let mut tail = std::fs::read(&last).expect("read");
    tail.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&last, tail).expect("write");
    let queue = SinkQueue::open("cloud", settings).expect("reopen");
    assert_eq!(queue.stats().depth, depth, "the torn tail is cut, no record lost");
    assert_eq!(drain(&queue).len() as u64, depth);
}

#[test]
fn an_unreadable_cursor_replays_rather_than_loses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings(dir.path(), 1 << 20, WhenFull::Block);
    {
        let queue = SinkQueue::open("cloud", settings.clone()).expect("open");
        queue.enqueue((0..10).map(|n| item(n, 0)).collect(), &never).expect("enqueue");
        let peek = queue.peek(5, 1 << 20).expect("peek").expect("records");
        queue.commit(&peek).expect("commit");
    }
    std::fs::write(lane_dir(dir.path(), 0).join("cursor"), b"\x01\x02").expect("write");
    let queue = SinkQueue::open("cloud", settings).expect("reopen");
    assert_eq!(drain(&queue), (0..10).collect::<Vec<_>>());
}

#[test]
fn a_second_process_cannot_open_the_same_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings(dir.path(), 1 << 20, WhenFull::Block);
    let _first = SinkQueue::open("cloud", settings.clone()).expect("open");
    let err = SinkQueue::open("cloud", settings).err().expect("second open fails");
    assert!(format!("{err:#}").contains("in use by another weir process"), "{err:#}");
}

/// One step of the model-based test.
#[derive(Debug, Clone)]
enum Op {
    Append {
        count: usize,
        priority: u8,
    },
    Deliver {
        max: usize,
        commit: bool,
    },
    /// Drop the queue without closing it (what kill -9 leaves), then open it again.
    Crash,
    /// Close cleanly and open again.
    Restart,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (1..40usize, 0..3u8).prop_map(|(count, priority)| Op::Append { count, priority }),
        4 => (1..50usize, proptest::bool::weighted(0.8)).prop_map(|(max, commit)| Op::Deliver { max, commit }),
        1 => Just(Op::Crash),
        1 => Just(Op::Restart),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Random appends, deliveries (committed or not), crashes and restarts against a model:
    /// one FIFO per priority. Every delivered batch is the head of its lane in the model,
    /// in order; nothing is lost or repeated once committed; depth always matches.
    #[test]
    fn the_queue_behaves_like_one_fifo_per_priority(ops in proptest::collection::vec(op(), 1..80)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = settings(dir.path(), 1 << 20, WhenFull::Block); // 64 KiB segments: many of them
        let mut queue = Some(SinkQueue::open("cloud", settings.clone()).expect("open"));
        let mut model: std::collections::BTreeMap<u8, std::collections::VecDeque<usize>> = Default::default();
        let mut next = 0;
        for op in ops {
            let q = queue.as_ref().expect("open queue");
            match op {
                Op::Append { count, priority } => {
                    q.enqueue((next..next + count).map(|n| item(n, priority)).collect(), &never).expect("enqueue");
                    model.entry(priority).or_default().extend(next..next + count);
                    next += count;
                }
                Op::Deliver { max, commit } => match q.peek(max, 1 << 20).expect("peek") {
                    None => proptest::prop_assert!(model.values().all(|lane| lane.is_empty()), "peek found nothing but the model has {model:?}"),
                    Some(peek) => {
                        let got: Vec<usize> = peek.records.iter().map(number).collect();
                        let lane = model.entry(peek.lane).or_default();
                        let expected: Vec<usize> = lane.iter().take(got.len()).copied().collect();
                        proptest::prop_assert!(!got.is_empty() && got.len() <= max);
                        proptest::prop_assert_eq!(&got, &expected, "lane {} delivered out of order", peek.lane);
                        if commit {
                            q.commit(&peek).expect("commit");
                            lane.drain(..got.len());
                        }
                    }
                },
                Op::Crash => {
                    drop(queue.take());
                    queue = Some(SinkQueue::open("cloud", settings.clone()).expect("reopen after a crash"));
                }
                Op::Restart => {
                    queue.take().expect("open queue").close().expect("close");
                    queue = Some(SinkQueue::open("cloud", settings.clone()).expect("reopen"));
                }
            }
            let depth = queue.as_ref().expect("open queue").stats().depth;
            proptest::prop_assert_eq!(depth as usize, model.values().map(|lane| lane.len()).sum::<usize>());
        }
    }
}

/// A segment whose reads fail while weir runs (an I/O error; here the file is swapped for a
/// directory of its name, whose reads fail with EISDIR): the other lanes go on at once, and
/// after three failed reads the segment is set aside and its lane goes on after it.
#[test]
fn a_segment_that_cannot_be_read_holds_up_neither_other_lanes_nor_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = SinkQueue::open("cloud", settings(dir.path(), 1 << 20, WhenFull::Block)).expect("open"); // 64 KiB segments
    queue.enqueue((0..1000).map(|n| item(n, 0)).collect(), &never).expect("lane 0");
    queue.enqueue((1000..1300).map(|n| item(n, 5)).collect(), &never).expect("lane 5");
    let lane = lane_dir(dir.path(), 0);
    let first = segment::path(&lane, segment::list(&lane).expect("list")[0]);
    std::fs::remove_file(&first).expect("remove");
    std::fs::create_dir(&first).expect("a directory in its place");

    let mut from_lane_5 = Vec::new();
    for _ in 0..lane::READ_ERRORS_TO_SET_ASIDE - 1 {
        let peek = queue.peek(100, 1 << 20).expect("peek").expect("lane 5 goes on");
        assert_eq!(peek.lane, 5);
        from_lane_5.extend(peek.records.iter().map(number));
        queue.commit(&peek).expect("commit");
    }
    // The third failure sets the segment aside; lane 0 goes on after it.
    let rest = drain(&queue);
    let lane_0: Vec<usize> = rest.iter().copied().filter(|n| *n < 1000).collect();
    assert!(
        !lane_0.is_empty() && lane_0.windows(2).all(|w| w[0] + 1 == w[1]) && *lane_0.last().expect("some") == 999,
        "lane 0 after the set-aside segment: {lane_0:?}"
    );
    from_lane_5.extend(rest.iter().copied().filter(|n| *n >= 1000));
    assert_eq!(from_lane_5, (1000..1300).collect::<Vec<_>>());
    let aside =
        std::fs::read_dir(dir.path().join("quarantine")).expect("quarantine").flatten().any(|e| e.file_name().to_string_lossy().ends_with("-unreadable.seg"));
    assert!(aside, "the segment was moved to the quarantine directory");
}
