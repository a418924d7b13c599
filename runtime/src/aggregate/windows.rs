//! The host's window table: which windows each key has open, which windows a message
//! belongs to, and when windows close.
//!
//! Pure bookkeeping: no wasm, no I/O and no clock (times come in as arguments), so it is
//! tested against hand-computed cases and, in `tests.rs`, against a simple model. It says
//! what to do as a list of [`Step`]s, in the order they must happen; the worker carries them
//! out against the module.
//!
//! Semantics (also in `docs/aggregates.md`):
//! - tumbling `size`: `[t - t % size, +size)`;
//! - hopping `size`/`hop`: every `[k·hop, k·hop + size)` containing `t`;
//! - sliding `size`: at every message, a window `(t - size, t]` over that key's messages
//!   seen so far in that span, opened, filled and closed at once;
//! - session `gap`: `[first, last + gap)`; a message within `gap` of a session joins it, one
//!   that bridges two sessions merges them;
//! - count `size`: every `size` messages of a key, bounds = times of the first and last.
//!
//! Event time: the watermark is the newest time seen minus the allowed lateness; a window
//! closes once its end is at or before the watermark, and a message whose windows have all
//! closed is late. Processing time: the watermark is the clock, and nothing is ever late.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub type WindowId = u64;

/// Longer keys are kept on the heap.
const INLINE_KEY: usize = 24;
type KeyBytes = smallvec::SmallVec<[u8; INLINE_KEY]>;

/// How windows are laid out; all times in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Tumbling { size: u64 },
    Hopping { size: u64, hop: u64 },
    Sliding { size: u64 },
    Session { gap: u64, max_duration: Option<u64> },
    Count { size: u64 },
}

/// What the table needs besides the layout.
#[derive(Debug, Clone, Copy)]
pub struct TableSettings {
    pub kind: WindowKind,
    /// Times are event times (with lateness) rather than the processing clock.
    pub event_time: bool,
    pub allowed_lateness: u64,
    pub max_keys: usize,
    /// At `max_keys`: close the least recently seen key's windows instead of refusing.
    pub close_oldest: bool,
}

/// One key's window as the module sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub id: WindowId,
    pub key: Arc<str>,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// One thing to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Step<T, W = ()> {
    /// Start an empty window.
    Open(Window),
    /// Fold `item` into `window`.
    Accumulate { window: WindowId, item: T },
    /// Fold `source` into `target`; `source` is gone afterwards.
    Merge { target: WindowId, source: WindowId },
    /// End the window (with its final bounds) and emit; with what its user kept about it
    /// (boxed: a step is moved for every message, and a close is rare).
    Close(Window, Box<W>),
}

/// What the table's user keeps about each open window, beside it in the table (so that
/// updating it for every message costs no lookup of its own); the table hands it back
/// with the window's [`Step::Close`].
pub trait WindowData: Default {
    /// Window `gone` was merged into this one (session windows that meet).
    fn absorb(&mut self, gone: Self);
}

impl WindowData for () {
    fn absorb(&mut self, _gone: Self) {}
}

/// Why a message was not assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Every window it belongs to has closed.
    Late { time: u64, watermark: u64 },
    /// A new key while `max_keys` keys have open windows.
    KeyLimit { max_keys: usize },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Late { time, watermark } => write!(
                f,
                "late: event time {time} is {} ms behind the watermark {watermark} and its windows have closed (raise window.allowed_lateness to accept it)",
                watermark.saturating_sub(*time)
            ),
            Refused::KeyLimit { max_keys } => {
                write!(f, "key limit: {max_keys} keys already have open windows (raise window.max_keys, or set window.when_keys_full = \"close-oldest\")")
            }
        }
    }
}

/// An open window, how many messages it has taken, and its user's data about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenWindow<W = ()> {
    pub window: Window,
    pub messages: u64,
    /// Not part of the table's checkpoint: its user saves what it needs.
    #[serde(skip)]
    pub data: W,
}

/// A key's open windows and, for sliding windows, the messages still in reach.
#[derive(Debug, Clone)]
pub struct KeyState<T, W> {
    key: Arc<str>,
    pub windows: Vec<OpenWindow<W>>,
    pub retained: VecDeque<(u64, T)>,
    last_seen: u64,
}

/// One key in a checkpoint: its open windows and retained messages (time, message).
pub type SavedKey<T> = (Arc<str>, Vec<OpenWindow>, Vec<(u64, T)>);

/// Everything a checkpoint needs to rebuild the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableState<T> {
    pub next_id: WindowId,
    pub newest_ms: u64,
    pub keys: Vec<SavedKey<T>>,
}

impl<T> TableState<T> {
    /// The same state with every retained message converted (dropped where `convert` gives `None`).
    pub fn map_retained<U>(self, mut convert: impl FnMut(u64, T) -> Option<U>) -> TableState<U> {
        let keys = self
            .keys
            .into_iter()
            .map(|(key, windows, retained)| (key, windows, retained.into_iter().filter_map(|(at, item)| Some((at, convert(at, item)?))).collect()))
            .collect();
        TableState { next_id: self.next_id, newest_ms: self.newest_ms, keys }
    }
}

#[derive(Debug)]
pub struct WindowTable<T, W = ()> {
    settings: TableSettings,
    /// Keys up to [`INLINE_KEY`] bytes sit in the table's own slots, so that looking one up
    /// reads no memory elsewhere (each of 1,000 keys is seen only every 1,000 messages).
    keys: HashMap<KeyBytes, KeyState<T, W>, foldhash::fast::RandomState>,
    next_id: WindowId,
    /// Newest event time seen, or the clock (processing time).
    newest: u64,
    seen: u64,
    /// No window ends and no retained message leaves reach before this: `advance` has
    /// nothing to do until the watermark gets there (it is called after every batch).
    next_due: u64,
}

impl<T: Clone, W: WindowData> WindowTable<T, W> {
    pub fn new(settings: TableSettings) -> Self {
        WindowTable { settings, keys: HashMap::default(), next_id: 1, newest: 0, seen: 0, next_due: u64::MAX }
    }

    pub fn settings(&self) -> &TableSettings {
        &self.settings
    }

    /// Windows ending at or before this have closed.
    pub fn watermark(&self) -> u64 {
        if self.settings.event_time { self.newest.saturating_sub(self.settings.allowed_lateness) } else { self.newest }
    }

    /// Keys with open windows (or retained messages).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Every open window.
    pub fn open_windows(&self) -> impl Iterator<Item = &OpenWindow<W>> {
        self.keys.values().flat_map(|state| state.windows.iter())
    }

    /// Every open window, to change its data.
    pub fn open_windows_mut(&mut self) -> impl Iterator<Item = &mut OpenWindow<W>> {
        self.keys.values_mut().flat_map(|state| state.windows.iter_mut())
    }

    /// Assign one message of `key` at `time` (event time, or the clock): push what to do.
    pub fn assign(&mut self, key: &str, time: u64, item: T, steps: &mut Vec<Step<T, W>>) -> Result<(), Refused> {
        self.assign_touching(key, time, item, steps, |_| {})
    }

    /// [`WindowTable::assign`], calling `touch` with the data of each window the message
    /// goes into.
    pub fn assign_touching(&mut self, key: &str, time: u64, item: T, steps: &mut Vec<Step<T, W>>, mut touch: impl FnMut(&mut W)) -> Result<(), Refused> {
        let time = if self.settings.event_time { time } else { time.max(self.newest) };
        let watermark = self.watermark();
        if let Some(refused) = self.late(key, time, watermark) {
            return Err(refused);
        }
        let seen = self.seen + 1;
        // One lookup for a known key; a new one is admitted first.
        let state = match self.keys.get_mut(key.as_bytes()) {
            Some(state) => state,
            None => {
                if self.keys.len() >= self.settings.max_keys {
                    if !self.settings.close_oldest {
                        return Err(Refused::KeyLimit { max_keys: self.settings.max_keys });
                    }
                    self.close_oldest_key(steps);
                }
                let key: Arc<str> = Arc::from(key);
                self.keys.entry(KeyBytes::from_slice(key.as_bytes())).or_insert(KeyState {
                    key,
                    windows: Vec::new(),
                    retained: VecDeque::new(),
                    last_seen: seen,
                })
            }
        };
        self.seen = seen;
        let mut next_id = self.next_id;
        let mut due = self.next_due;
        state.last_seen = seen;
        // The key is passed in (not captured) so that `state` stays free to change.
        let mut open = |key: &Arc<str>, start: u64, end: u64, steps: &mut Vec<Step<T, W>>| {
            let window = Window { id: next_id, key: key.clone(), start_ms: start, end_ms: end };
            next_id += 1;
            due = due.min(end);
            steps.push(Step::Open(window.clone()));
            OpenWindow { window, messages: 0, data: W::default() }
        };
        match self.settings.kind {
            WindowKind::Tumbling { size } => {
                let start = time - time % size;
                let index = find_or_open(state, start, start + size, steps, &mut open);
                accumulate(state, index, item, steps, &mut touch);
            }
            WindowKind::Hopping { size, hop } => {
                let first = (time + 1).saturating_sub(size).div_ceil(hop) * hop;
                let mut start = first;
                while start <= time {
                    if start + size > watermark {
                        let index = find_or_open(state, start, start + size, steps, &mut open);
                        accumulate(state, index, item.clone(), steps, &mut touch);
                    }
                    start += hop;
                }
            }
            WindowKind::Sliding { size } => {
                let mut window = open(&state.key, (time + 1).saturating_sub(size), time + 1, steps);
                let id = window.window.id;
                for (at, retained) in &state.retained {
                    if *at + size > time && *at <= time {
                        steps.push(Step::Accumulate { window: id, item: retained.clone() });
                    }
                }
                steps.push(Step::Accumulate { window: id, item: item.clone() });
                touch(&mut window.data);
                steps.push(Step::Close(window.window, Box::new(window.data)));
                state.retained.push_back((time, item));
                due = due.min(time + size);
            }
            WindowKind::Session { gap, max_duration } => {
                let mut joined: Vec<usize> =
                    (0..state.windows.len()).filter(|&i| time < state.windows[i].window.end_ms && state.windows[i].window.start_ms < time + gap).collect();
                if let (Some(max), [only]) = (max_duration, joined.as_slice()) {
                    let window = &state.windows[*only].window;
                    let (start, end) = (window.start_ms.min(time), window.end_ms.max(time + gap));
                    if end - gap - start > max {
                        let closed = state.windows.remove(*only);
                        steps.push(Step::Close(closed.window, Box::new(closed.data)));
                        joined.clear();
                    }
                }
                let index = match joined.split_first() {
                    None => {
                        push_window(&mut state.windows, open(&state.key, time, time + gap, steps));
                        state.windows.len() - 1
                    }
                    Some((&target, sources)) => {
                        let target_id = state.windows[target].window.id;
                        for &source in sources.iter().rev() {
                            let gone = state.windows.remove(source);
                            steps.push(Step::Merge { target: target_id, source: gone.window.id });
                            let kept = &mut state.windows[target];
                            kept.window.start_ms = kept.window.start_ms.min(gone.window.start_ms);
                            kept.window.end_ms = kept.window.end_ms.max(gone.window.end_ms);
                            kept.messages += gone.messages;
                            kept.data.absorb(gone.data);
                        }
                        let kept = &mut state.windows[target].window;
                        kept.start_ms = kept.start_ms.min(time);
                        kept.end_ms = kept.end_ms.max(time + gap);
                        target
                    }
                };
                accumulate(state, index, item, steps, &mut touch);
            }
            WindowKind::Count { size } => {
                if state.windows.is_empty() {
                    push_window(&mut state.windows, open(&state.key, time, time + 1, steps));
                }
                let window = &mut state.windows[0].window;
                window.start_ms = window.start_ms.min(time);
                window.end_ms = window.end_ms.max(time + 1);
                accumulate(state, 0, item, steps, &mut touch);
                if state.windows[0].messages >= size {
                    let full = state.windows.remove(0);
                    steps.push(Step::Close(full.window, Box::new(full.data)));
                }
            }
        }
        let idle = (state.windows.is_empty() && state.retained.is_empty()).then(|| state.key.clone());
        self.next_id = next_id;
        self.next_due = due;
        self.newest = self.newest.max(time);
        if let Some(key) = idle {
            self.keys.remove(key.as_bytes());
        }
        Ok(())
    }

    /// Move the clock (processing time) and close every window the watermark has passed.
    pub fn advance(&mut self, now: u64, steps: &mut Vec<Step<T, W>>) {
        if !self.settings.event_time {
            self.newest = self.newest.max(now);
        }
        let watermark = self.watermark();
        if watermark < self.next_due {
            return;
        }
        let reach = match self.settings.kind {
            WindowKind::Sliding { size } => Some(size),
            _ => None,
        };
        let timed = !matches!(self.settings.kind, WindowKind::Count { .. });
        let mut next_due = u64::MAX;
        self.keys.retain(|_, state| {
            for open in state.windows.extract_if(.., |open| timed && open.window.end_ms <= watermark) {
                steps.push(Step::Close(open.window, Box::new(open.data)));
            }
            if timed {
                next_due = state.windows.iter().map(|open| open.window.end_ms).fold(next_due, u64::min);
            }
            if let Some(size) = reach {
                state.retained.retain(|(at, _)| at + size > watermark);
                next_due = state.retained.iter().map(|(at, _)| at + size).fold(next_due, u64::min);
            }
            !state.windows.is_empty() || !state.retained.is_empty()
        });
        self.next_due = next_due;
    }

    /// Close every open window now, whatever the time (used when a key is evicted and in tests).
    pub fn close_all(&mut self, steps: &mut Vec<Step<T, W>>) {
        for (_, state) in self.keys.drain() {
            steps.extend(state.windows.into_iter().map(|open| Step::Close(open.window, Box::new(open.data))));
        }
    }

    /// The table as a checkpoint stores it.
    pub fn export(&self) -> TableState<T> {
        let keys = self
            .keys
            .values()
            .map(|state| {
                let windows = state.windows.iter().map(|open| OpenWindow { window: open.window.clone(), messages: open.messages, data: () }).collect();
                (state.key.clone(), windows, state.retained.iter().cloned().collect())
            })
            .collect();
        TableState { next_id: self.next_id, newest_ms: self.newest, keys }
    }

    /// Rebuild from a checkpoint.
    pub fn import(&mut self, state: TableState<T>) {
        self.next_id = self.next_id.max(state.next_id);
        self.newest = self.newest.max(state.newest_ms);
        for (key, windows, retained) in state.keys {
            self.seen += 1;
            let windows = windows.into_iter().map(|open| OpenWindow { window: open.window, messages: open.messages, data: W::default() }).collect();
            self.keys.insert(KeyBytes::from_slice(key.as_bytes()), KeyState { key, windows, retained: retained.into(), last_seen: self.seen });
        }
        // Recomputed by the next `advance`.
        self.next_due = 0;
    }

    /// Whether a message of `key` at `time` has nowhere to go.
    fn late(&self, key: &str, time: u64, watermark: u64) -> Option<Refused> {
        if !self.settings.event_time {
            return None;
        }
        let late = match self.settings.kind {
            WindowKind::Tumbling { size } => time - time % size + size <= watermark,
            WindowKind::Hopping { size, hop } => (time - time % hop) + size <= watermark,
            WindowKind::Sliding { .. } => time < watermark,
            WindowKind::Session { gap, .. } => {
                let joins_open =
                    self.keys.get(key.as_bytes()).is_some_and(|state| state.windows.iter().any(|w| time < w.window.end_ms && w.window.start_ms < time + gap));
                !joins_open && time + gap <= watermark
            }
            WindowKind::Count { .. } => false,
        };
        late.then_some(Refused::Late { time, watermark })
    }

    fn close_oldest_key(&mut self, steps: &mut Vec<Step<T, W>>) {
        let Some(oldest) = self.keys.iter().min_by_key(|(_, state)| state.last_seen).map(|(key, _)| key.clone()) else { return };
        if let Some(state) = self.keys.remove(&oldest) {
            steps.extend(state.windows.into_iter().map(|open| Step::Close(open.window, Box::new(open.data))));
        }
    }
}

fn find_or_open<T, W>(
    state: &mut KeyState<T, W>,
    start: u64,
    end: u64,
    steps: &mut Vec<Step<T, W>>,
    open: &mut impl FnMut(&Arc<str>, u64, u64, &mut Vec<Step<T, W>>) -> OpenWindow<W>,
) -> usize {
    match state.windows.iter().position(|w| w.window.start_ms == start) {
        Some(index) => index,
        None => {
            push_window(&mut state.windows, open(&state.key, start, end, steps));
            state.windows.len() - 1
        }
    }
}

/// Most keys have one window open at a time: room for one at first (a `Vec` starts with
/// room for four, and an open window with its data is ~160 bytes).
fn push_window<W>(windows: &mut Vec<OpenWindow<W>>, window: OpenWindow<W>) {
    if windows.capacity() == 0 {
        windows.reserve_exact(1);
    }
    windows.push(window);
}

fn accumulate<T, W>(state: &mut KeyState<T, W>, index: usize, item: T, steps: &mut Vec<Step<T, W>>, touch: &mut impl FnMut(&mut W)) {
    let open = &mut state.windows[index];
    open.messages += 1;
    touch(&mut open.data);
    steps.push(Step::Accumulate { window: open.window.id, item });
}
