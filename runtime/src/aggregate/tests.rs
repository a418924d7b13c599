//! The window table against hand-computed windows, and against a model on random streams.
//!
//! Each test feeds `(key, time, id)` messages and carries out the table's steps on a fake
//! accumulator that records which message ids each window received, so what is checked is
//! what a module would see: every closed window's key, bounds and contents.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::windows::{Refused, Step, TableSettings, WindowKind, WindowTable};

/// A closed window: key, start, end, and the sorted ids of the messages in it.
type Closed = (String, u64, u64, Vec<u32>);

struct Harness {
    table: WindowTable<u32>,
    contents: HashMap<u64, Vec<u32>>,
    closed: Vec<Closed>,
    refused: Vec<(u32, Refused)>,
}

impl Harness {
    fn new(kind: WindowKind) -> Self {
        Self::with(TableSettings { kind, event_time: false, allowed_lateness: 0, max_keys: 1000, close_oldest: false })
    }

    fn event_time(kind: WindowKind, lateness: u64) -> Self {
        Self::with(TableSettings { kind, event_time: true, allowed_lateness: lateness, max_keys: 1000, close_oldest: false })
    }

    fn with(settings: TableSettings) -> Self {
        Harness { table: WindowTable::new(settings), contents: HashMap::new(), closed: Vec::new(), refused: Vec::new() }
    }

    fn apply(&mut self, steps: Vec<Step<u32>>) {
        for step in steps {
            match step {
                Step::Open(window) => assert!(self.contents.insert(window.id, Vec::new()).is_none(), "window {} opened twice", window.id),
                Step::Accumulate { window, item } => self.contents.get_mut(&window).expect("accumulate into an open window").push(item),
                Step::Merge { target, source } => {
                    let moved = self.contents.remove(&source).expect("merge source open");
                    self.contents.get_mut(&target).expect("merge target open").extend(moved);
                }
                Step::Close(window, _) => {
                    let mut items = self.contents.remove(&window.id).expect("close an open window");
                    items.sort_unstable();
                    self.closed.push((window.key.to_string(), window.start_ms, window.end_ms, items));
                }
            }
        }
    }

    fn send(&mut self, key: &str, time: u64, id: u32) {
        let mut steps = Vec::new();
        match self.table.assign(key, time, id, &mut steps) {
            Ok(()) => {}
            Err(refused) => self.refused.push((id, refused)),
        }
        self.apply(steps);
    }

    fn advance(&mut self, now: u64) {
        let mut steps = Vec::new();
        self.table.advance(now, &mut steps);
        self.apply(steps);
    }

    fn finish(mut self) -> (Vec<Closed>, Vec<(u32, Refused)>) {
        let mut steps = Vec::new();
        self.table.close_all(&mut steps);
        self.apply(steps);
        assert!(self.contents.is_empty(), "windows left open: {:?}", self.contents);
        self.closed.sort();
        (self.closed, self.refused)
    }
}

fn closed(key: &str, start: u64, end: u64, items: &[u32]) -> Closed {
    (key.to_owned(), start, end, items.to_vec())
}

#[test]
fn tumbling_in_processing_time() {
    let mut h = Harness::new(WindowKind::Tumbling { size: 10 });
    h.send("m1", 1, 1);
    h.send("m2", 3, 2);
    h.send("m1", 9, 3);
    h.advance(10); // closes [0,10) for both keys
    assert_eq!(h.closed.len(), 2);
    h.send("m1", 12, 4);
    h.send("m1", 25, 5);
    let (closed_windows, refused) = h.finish();
    assert!(refused.is_empty());
    assert_eq!(closed_windows, vec![closed("m1", 0, 10, &[1, 3]), closed("m1", 10, 20, &[4]), closed("m1", 20, 30, &[5]), closed("m2", 0, 10, &[2])]);
}

#[test]
fn processing_time_never_goes_backwards() {
    // A clock step backwards puts the message in the current window, not a closed one.
    let mut h = Harness::new(WindowKind::Tumbling { size: 10 });
    h.advance(15);
    h.send("k", 3, 1);
    let (closed_windows, refused) = h.finish();
    assert!(refused.is_empty());
    assert_eq!(closed_windows, vec![closed("k", 10, 20, &[1])]);
}

#[test]
fn hopping_puts_a_message_in_every_window_that_covers_it() {
    let mut h = Harness::new(WindowKind::Hopping { size: 10, hop: 5 });
    h.send("k", 7, 1); // [0,10) and [5,15)
    h.send("k", 12, 2); // [5,15) and [10,20)
    h.send("k", 3, 3); // processing time: counts as 12 (the clock does not go back)
    let (closed_windows, _) = h.finish();
    assert_eq!(closed_windows, vec![closed("k", 0, 10, &[1]), closed("k", 5, 15, &[1, 2, 3]), closed("k", 10, 20, &[2, 3])]);
}

#[test]
fn event_time_tumbling_with_late_and_out_of_order_data() {
    let mut h = Harness::event_time(WindowKind::Tumbling { size: 10 }, 5);
    h.send("k", 12, 1);
    h.send("k", 8, 2); // out of order; watermark 7: [0,10) still open
    h.send("k", 16, 3); // watermark 11 after this
    h.advance(0); // closes [0,10): end 10 <= 11
    assert_eq!(h.closed, vec![closed("k", 0, 10, &[2])]);
    h.send("k", 9, 4); // its window closed: late
    h.send("k", 10, 5); // [10,20) still open
    let (closed_windows, refused) = h.finish();
    assert_eq!(refused, vec![(4, Refused::Late { time: 9, watermark: 11 })]);
    assert_eq!(closed_windows, vec![closed("k", 0, 10, &[2]), closed("k", 10, 20, &[1, 3, 5])]);
}

#[test]
fn event_time_hopping_skips_closed_windows_but_keeps_open_ones() {
    let mut h = Harness::event_time(WindowKind::Hopping { size: 10, hop: 5 }, 0);
    h.send("k", 14, 1); // [5,15) [10,20); watermark 14
    h.advance(0); // closes nothing yet ([5,15) ends at 15 > 14)
    h.send("k", 16, 2); // [10,20) [15,25); watermark 16
    h.advance(0); // closes [5,15)
    h.send("k", 12, 3); // [5,15) closed, [10,20) open: goes only there
    h.send("k", 4, 4); // [0,10) closed: late
    let (closed_windows, refused) = h.finish();
    assert_eq!(refused, vec![(4, Refused::Late { time: 4, watermark: 16 })]);
    assert_eq!(closed_windows, vec![closed("k", 5, 15, &[1]), closed("k", 10, 20, &[1, 2, 3]), closed("k", 15, 25, &[2])]);
}

#[test]
fn sliding_emits_the_last_size_at_every_message() {
    let mut h = Harness::new(WindowKind::Sliding { size: 10 });
    h.send("k", 0, 1);
    h.send("k", 4, 2);
    h.send("k", 10, 3); // (0,10]: 2 and 3 (1 is exactly 10 old: out)
    h.advance(30); // nothing retained any more
    h.send("k", 30, 4);
    let (closed_windows, _) = h.finish();
    assert_eq!(closed_windows, vec![closed("k", 0, 1, &[1]), closed("k", 0, 5, &[1, 2]), closed("k", 1, 11, &[2, 3]), closed("k", 21, 31, &[4])]);
}

#[test]
fn sliding_in_event_time_takes_out_of_order_data_within_lateness() {
    let mut h = Harness::event_time(WindowKind::Sliding { size: 10 }, 5);
    h.send("k", 20, 1);
    h.send("k", 16, 2); // 4 behind, within lateness: its window (6,16] has nothing else in it;
    // message 1's window, emitted already, is not revised
    h.send("k", 22, 3); // (12,22]: 1, 2 and itself, whatever the arrival order
    h.send("k", 14, 4); // watermark 17: late
    let (closed_windows, refused) = h.finish();
    assert_eq!(refused, vec![(4, Refused::Late { time: 14, watermark: 17 })]);
    assert_eq!(closed_windows, vec![closed("k", 7, 17, &[2]), closed("k", 11, 21, &[1]), closed("k", 13, 23, &[1, 2, 3])]);
}

#[test]
fn count_windows_in_event_time_span_their_earliest_and_latest_message() {
    let mut h = Harness::event_time(WindowKind::Count { size: 3 }, 0);
    h.send("k", 50, 1);
    h.send("k", 20, 2); // out of order: never late for count windows
    h.send("k", 70, 3);
    let (closed_windows, refused) = h.finish();
    assert!(refused.is_empty());
    assert_eq!(closed_windows, vec![closed("k", 20, 71, &[1, 2, 3])]);
}

#[test]
fn sliding_forgets_a_key_once_nothing_is_in_reach() {
    let mut h = Harness::new(WindowKind::Sliding { size: 10 });
    h.send("k", 0, 1);
    assert_eq!(h.table.key_count(), 1);
    h.advance(100);
    assert_eq!(h.table.key_count(), 0);
}

#[test]
fn sessions_grow_close_after_the_gap_and_merge_when_bridged() {
    let mut h = Harness::event_time(WindowKind::Session { gap: 10, max_duration: None }, 100);
    h.send("k", 0, 1); // [0,10)
    h.send("k", 5, 2); // [0,15)
    h.send("k", 40, 3); // new session [40,50)
    h.send("k", 22, 4); // new session [22,32)
    h.send("k", 31, 5); // joins [22,32) → [22,41) which now overlaps [40,50): merged → [22,50)
    let (closed_windows, refused) = h.finish();
    assert!(refused.is_empty());
    assert_eq!(closed_windows, vec![closed("k", 0, 15, &[1, 2]), closed("k", 22, 50, &[3, 4, 5])]);
}

#[test]
fn sessions_close_when_the_gap_passes_and_respect_max_duration() {
    let mut h = Harness::new(WindowKind::Session { gap: 10, max_duration: Some(15) });
    h.send("k", 0, 1);
    h.send("k", 8, 2);
    h.send("k", 16, 3); // would last 16 > 15: [0,18) closes, [16,26) starts
    h.advance(26);
    let (closed_windows, _) = h.finish();
    assert_eq!(closed_windows, vec![closed("k", 0, 18, &[1, 2]), closed("k", 16, 26, &[3])]);
}

#[test]
fn count_windows_close_every_n_messages_per_key() {
    let mut h = Harness::new(WindowKind::Count { size: 2 });
    h.send("a", 1, 1);
    h.send("b", 2, 2);
    h.send("a", 3, 3);
    h.advance(1_000_000); // count windows do not time out
    assert_eq!(h.closed, vec![closed("a", 1, 4, &[1, 3])]);
    h.send("a", 1_000_007, 4);
    let (closed_windows, _) = h.finish();
    assert_eq!(closed_windows, vec![closed("a", 1, 4, &[1, 3]), closed("a", 1_000_007, 1_000_008, &[4]), closed("b", 2, 3, &[2])]);
}

#[test]
fn key_limit_rejects_or_closes_the_oldest_key() {
    let settings = TableSettings { kind: WindowKind::Tumbling { size: 100 }, event_time: false, allowed_lateness: 0, max_keys: 2, close_oldest: false };
    let mut h = Harness::with(settings);
    h.send("a", 1, 1);
    h.send("b", 2, 2);
    h.send("c", 3, 3);
    h.send("a", 4, 4); // a known key is fine
    assert_eq!(h.refused, vec![(3, Refused::KeyLimit { max_keys: 2 })]);

    let mut h = Harness::with(TableSettings { close_oldest: true, ..settings });
    h.send("a", 1, 1);
    h.send("b", 2, 2);
    h.send("a", 3, 3);
    h.send("c", 4, 4); // b is the least recently seen: its window closes early
    assert_eq!(h.closed, vec![closed("b", 0, 100, &[2])]);
    let (closed_windows, refused) = h.finish();
    assert!(refused.is_empty());
    assert_eq!(closed_windows.len(), 3);
}

#[test]
fn export_and_import_continue_where_the_table_left_off() {
    let mut h = Harness::event_time(WindowKind::Tumbling { size: 10 }, 0);
    h.send("k", 3, 1);
    let state = h.table.export();
    let mut restored = Harness::event_time(WindowKind::Tumbling { size: 10 }, 0);
    restored.table.import(state);
    restored.contents = h.contents.clone();
    restored.send("k", 5, 2);
    restored.send("k", 11, 3);
    restored.advance(0);
    assert_eq!(restored.closed, vec![closed("k", 0, 10, &[1, 2])]);
}

/// What the windows of a stream should be, computed the obvious way from all times at once
/// (no lateness: nothing is refused, so arrival order does not matter).
fn model(kind: WindowKind, messages: &[(String, u64)]) -> Vec<Closed> {
    let mut windows: BTreeMap<(String, u64, u64), Vec<u32>> = BTreeMap::new();
    let mut by_key: BTreeMap<&str, Vec<(u64, u32)>> = BTreeMap::new();
    for (id, (key, time)) in messages.iter().enumerate() {
        by_key.entry(key).or_default().push((*time, id as u32));
    }
    for (key, mut items) in by_key {
        match kind {
            WindowKind::Tumbling { size } => {
                for (time, id) in items {
                    let start = time - time % size;
                    windows.entry((key.to_owned(), start, start + size)).or_default().push(id);
                }
            }
            WindowKind::Hopping { size, hop } => {
                for (time, id) in items {
                    let mut start = 0;
                    while start <= time {
                        if time < start + size {
                            windows.entry((key.to_owned(), start, start + size)).or_default().push(id);
                        }
                        start += hop;
                    }
                }
            }
            WindowKind::Session { gap, .. } => {
                items.sort_unstable();
                let mut current: Option<(u64, u64, Vec<u32>)> = None;
                for (time, id) in items {
                    match &mut current {
                        Some((_, end, ids)) if time < *end => {
                            *end = (*end).max(time + gap);
                            ids.push(id);
                        }
                        _ => {
                            if let Some((start, end, ids)) = current.take() {
                                windows.insert((key.to_owned(), start, end), ids);
                            }
                            current = Some((time, time + gap, vec![id]));
                        }
                    }
                }
                if let Some((start, end, ids)) = current {
                    windows.insert((key.to_owned(), start, end), ids);
                }
            }
            WindowKind::Sliding { .. } | WindowKind::Count { .. } => unreachable!("not modelled here"),
        }
    }
    let mut out: Vec<Closed> = windows
        .into_iter()
        .map(|((key, start, end), mut ids)| {
            ids.sort_unstable();
            (key, start, end, ids)
        })
        .collect();
    out.sort();
    out
}

fn kinds() -> impl Strategy<Value = WindowKind> {
    prop_oneof![
        (1u64..50).prop_map(|size| WindowKind::Tumbling { size }),
        (1u64..10, 1u64..6).prop_map(|(hop, factor)| WindowKind::Hopping { size: hop * factor, hop }),
        (1u64..30).prop_map(|gap| WindowKind::Session { gap, max_duration: None }),
    ]
}

proptest! {
    /// Random keys and out-of-order event times, with enough lateness that nothing is late:
    /// the table's windows equal the model's, whatever the arrival order and however often
    /// the watermark advances in between.
    #[test]
    fn table_matches_the_model(kind in kinds(), messages in prop::collection::vec(("[abc]", 0u64..200), 0..60), advance_every in 1usize..10) {
        let mut h = Harness::event_time(kind, 1_000);
        for (id, (key, time)) in messages.iter().enumerate() {
            h.send(key, *time, id as u32);
            if id % advance_every == 0 {
                h.advance(0);
            }
        }
        let (closed_windows, refused) = h.finish();
        prop_assert!(refused.is_empty());
        prop_assert_eq!(closed_windows, model(kind, &messages));
    }

    /// With little lateness: a message is refused exactly when the model says all its
    /// windows had closed (ended at or before the newest time seen minus the lateness).
    #[test]
    fn late_exactly_when_its_windows_have_closed(size in 1u64..30, lateness in 0u64..20, times in prop::collection::vec(0u64..200, 1..60)) {
        let mut h = Harness::event_time(WindowKind::Tumbling { size }, lateness);
        let mut newest = 0u64;
        let mut expected_late = Vec::new();
        for (id, time) in times.iter().enumerate() {
            let watermark = newest.saturating_sub(lateness);
            if time - time % size + size <= watermark {
                expected_late.push(id as u32);
            } else {
                newest = newest.max(*time);
            }
            h.send("k", *time, id as u32);
        }
        let (_, refused) = h.finish();
        let late: Vec<u32> = refused.into_iter().map(|(id, _)| id).collect();
        prop_assert_eq!(late, expected_late);
    }
}
