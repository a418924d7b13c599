//! The aggregate worker: one OS thread per aggregate module, owning its instance.
//!
//! Per batch: each message's key and time come from the window table's expressions, the
//! table says which windows it belongs to, and the resulting steps become few calls to the
//! module: one `open` for every new window, one `accumulate` for the whole batch, one
//! `snapshot` and one `close` for every window that ends (a merge, for sessions, is made
//! when it comes up, after what precedes it). Late messages and those the table or the
//! module refuse go to `$deadletter` (or the `late` output) with the reason.
//!
//! Durability: a message's acknowledgement is held until a checkpoint holds the state that
//! counts it (the message waits in the journal until then); a closed window stays in the
//! checkpoint until every sink accepted its results. So a crash loses nothing:
//! unacknowledged messages are redelivered, unaccepted results are emitted again at start.
//! The price is possible duplication, described in `docs/aggregates.md`. A failed call (trap,
//! deadline, memory cap) rolls the windows back to the last checkpoint and gives a new
//! instance the journal again, then the failed batch one message at a time, so that only a
//! message that fails alone is dead-lettered ([`recovery`]). Closing windows, and finding the
//! window whose close fails, is [`closing`]; writing and reading checkpoints, [`checkpointing`];
//! the thread that drives a runner, [`thread`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tracing::error;
use weir_core::message::now_ms;
use weir_core::{Message, ModuleOutput, Property};

mod checkpointing;
mod closing;
mod recovery;
mod thread;

pub use thread::AggregateWorker;

use super::AggregateSpec;
use super::checkpoint::{Checkpoint, WindowState};
use super::origin::Origin;
use super::windows::{Refused, Step, Window, WindowData, WindowId, WindowKind, WindowTable};
use crate::executor::deadletter::DeadLetter;
use crate::executor::dispatch::Dispatcher;
use crate::telemetry;
use crate::wasm::abi::OutputMessage;
use crate::wasm::aggregate::{Opening, WindowRef};
use crate::wasm::{Failure, LoadedModule, ModuleInstance};
use recovery::Journaled;

/// The property every window result carries: `module/key/start`, the same each time the
/// window's result is sent, so a reader can drop a repeat that at-least-once delivery lets
/// through.
pub const WINDOW_ID: &str = "weir-window";

/// What the worker keeps about one open window besides the module's state (in the window
/// table, beside the window).
#[derive(Default)]
struct Slot {
    /// The module's state at the last checkpoint (what a replaced instance starts from).
    checkpointed: Option<Vec<u8>>,
    /// Accumulated into since the last checkpoint.
    dirty: bool,
    /// The topic and source of the newest message: they go on the window's results.
    origin: Option<Origin>,
}

/// A message as the window table carries it: its place in the batch being processed, or a
/// copy (sliding windows keep messages for later batches, and checkpoints keep those).
#[derive(Clone)]
enum Item {
    InBatch(usize),
    Kept(Message),
}

impl Item {
    fn message<'a>(&'a self, batch: &'a [Message]) -> &'a Message {
        match self {
            Item::InBatch(index) => &batch[*index],
            Item::Kept(message) => message,
        }
    }

    /// Whether these are the whole batch in order: then the batch itself is the call's input.
    fn are_the_batch(items: &[Item], batch: &[Message]) -> bool {
        items.len() == batch.len() && items.iter().enumerate().all(|(at, item)| matches!(item, Item::InBatch(index) if *index == at))
    }
}

impl WindowData for Slot {
    fn absorb(&mut self, gone: Slot) {
        self.dirty = true;
        if self.origin.is_none() {
            self.origin = gone.origin;
        }
    }
}

/// Calls gathered from the table's steps: opens, then accumulations, then closes.
#[derive(Default)]
struct Calls {
    opens: Vec<Window>,
    items: Vec<Item>,
    windows: Vec<u64>,
    /// The batch index each accumulated message came from (`None`: a retained message).
    batch_indexes: Vec<Option<usize>>,
    closes: Vec<(Window, Slot)>,
}

impl Calls {
    fn is_empty(&self) -> bool {
        self.opens.is_empty() && self.items.is_empty() && self.closes.is_empty()
    }

    /// Empty, keeping the room (the next batch needs about as much).
    fn clear(&mut self) {
        self.opens.clear();
        self.items.clear();
        self.windows.clear();
        self.batch_indexes.clear();
        self.closes.clear();
    }
}

/// An aggregate module's windows and instance, driven by [`AggregateWorker`] (or a benchmark).
pub struct AggregateRunner {
    name: Arc<str>,
    module: LoadedModule,
    spec: AggregateSpec,
    dispatcher: Arc<Dispatcher>,
    max_held: usize,
    instance: Option<ModuleInstance>,
    table: WindowTable<Item, Slot>,
    /// Closed windows whose results are not accepted yet, with their last state.
    emitted: HashMap<WindowId, (Window, WindowState)>,
    accepted_tx: std_mpsc::Sender<WindowId>,
    accepted_rx: std_mpsc::Receiver<WindowId>,
    /// Told when a sink accepted a result, so that the worker records it at once.
    accepted: Arc<tokio::sync::Notify>,
    /// What the table was given since the last checkpoint, in order: given again after a
    /// failed call. Its messages' acknowledgements are released by the next checkpoint.
    journal: Vec<Journaled>,
    /// The last checkpoint written (or read at start): where a failed call rolls back to.
    last: Option<Checkpoint>,
    /// Windows closed (and their results sent on) since the last checkpoint: a replay that
    /// closes them again does not send them again.
    emitted_since: HashSet<WindowId>,
    /// A replay is under way: dead letters and refusals were sent the first time.
    replaying: bool,
    /// Windows closed whose results wait for the checkpoint that records them ([`Self::send_closed`]).
    closed: Vec<(Window, Option<Origin>, Vec<OutputMessage>)>,
    changed: bool,
    last_checkpoint: Instant,
    steps: Vec<Step<Item, Slot>>,
    /// The calls of the batch being processed (kept between batches for their room).
    calls: Calls,
    /// Windows whose close failed alone, with how: a close that meets one (again, in a replay)
    /// dead-letters its state instead ([`closing`]). Until the next checkpoint.
    given_up: HashMap<WindowId, String>,
    /// Close one window per call, to find the one whose close fails.
    close_singly: bool,
    /// The last call that failed was closing windows: which one, if it closed only one.
    close_failed: Option<closing::Closing>,
}

impl AggregateRunner {
    /// Not started yet: call [`AggregateRunner::restore`] first.
    pub fn new(module: LoadedModule, spec: AggregateSpec, dispatcher: Arc<Dispatcher>, max_held: usize) -> Self {
        let (accepted_tx, accepted_rx) = std_mpsc::channel();
        AggregateRunner {
            name: module.name.clone(),
            table: WindowTable::new(spec.table),
            module,
            spec,
            dispatcher,
            max_held: max_held.max(1),
            instance: None,
            emitted: HashMap::new(),
            accepted_tx,
            accepted_rx,
            accepted: Arc::default(),
            journal: Vec::new(),
            last: None,
            emitted_since: HashSet::new(),
            replaying: false,
            closed: Vec::new(),
            changed: false,
            last_checkpoint: Instant::now(),
            steps: Vec::new(),
            calls: Calls::default(),
            given_up: HashMap::new(),
            close_singly: false,
            close_failed: None,
        }
    }

    /// A fresh instance with every open window restored from its last checkpointed state.
    fn start_instance(&mut self) {
        let mut instance = match ModuleInstance::start(&self.module) {
            Ok(instance) => instance,
            Err(failure) => {
                error!(module = %self.name, %failure, "aggregate instance could not start; its messages go to $deadletter until it can");
                self.instance = None;
                return;
            }
        };
        let openings: Vec<Opening<'_>> =
            self.table.open_windows().map(|open| Opening { window: window_ref(&open.window), snapshot: open.data.checkpointed.as_deref() }).collect();
        if !openings.is_empty()
            && let Err(failure) = instance.open_windows(&openings)
        {
            error!(module = %self.name, %failure, "restoring the open windows failed; starting them empty");
            match ModuleInstance::start(&self.module) {
                Ok(fresh) => instance = fresh,
                Err(_) => return,
            }
            let empty: Vec<Opening<'_>> = openings.iter().map(|opening| Opening { snapshot: None, ..*opening }).collect();
            if instance.open_windows(&empty).is_err() {
                return;
            }
        }
        for open in self.table.open_windows_mut() {
            open.data.dirty = false;
        }
        self.instance = Some(instance);
    }

    /// Assign a batch to windows and fold it in (one call for all new windows, one for all
    /// messages, one each for snapshots and closes). A failed call is recovered from without
    /// losing or double-counting a message (see [`recovery`]).
    pub fn process(&mut self, batch: Vec<Message>) {
        metrics::counter!(telemetry::MODULE_IN, "module" => self.name.to_string()).increment(batch.len() as u64);
        if self.instance.is_none() {
            self.start_instance();
        }
        if self.instance.is_none() {
            for message in batch {
                self.dead_letter(message, "init", "the module instance could not start (see the log)".to_owned());
            }
            std::thread::sleep(Duration::from_millis(200));
            return;
        }
        // Times are taken once: a replay gives the table the same ones (processing time too).
        let now = now_ms();
        let mut done = vec![false; batch.len()];
        let mut times = Vec::with_capacity(batch.len());
        for (index, message) in batch.iter().enumerate() {
            times.push(self.spec.time_of(message, now).unwrap_or_else(|reason| {
                done[index] = true;
                self.dead_letter(message.clone(), "window", reason);
                0
            }));
        }
        if let Err(failure) = self.feed(&batch, &times, &mut done) {
            self.recover(failure, &batch, &times, &mut done);
        }
        self.send_closed();
    }

    /// Give `batch` (but what is `done`) to the table at `times`, and make the calls its steps
    /// need. Once every call worked, what was assigned is journaled (and its acknowledgement
    /// held until the next checkpoint). `Err`: the instance failed; nothing is journaled.
    fn feed(&mut self, batch: &[Message], times: &[u64], done: &mut [bool]) -> Result<(), Failure> {
        let mut calls = std::mem::take(&mut self.calls);
        calls.clear();
        let mut assigned = Vec::with_capacity(batch.len());
        for (index, message) in batch.iter().enumerate() {
            if done[index] {
                continue;
            }
            let key = match self.spec.key_of(message) {
                Ok(key) => key,
                Err(reason) => {
                    done[index] = true;
                    self.dead_letter(message.clone(), "window", reason);
                    continue;
                }
            };
            // Only sliding windows keep messages beyond this batch.
            let item = match self.spec.table.kind {
                WindowKind::Sliding { .. } => Item::Kept(message.without_ack()),
                _ => Item::InBatch(index),
            };
            let touch = |slot: &mut Slot| {
                slot.dirty = true;
                Origin::update(&mut slot.origin, message.meta());
            };
            match self.table.assign_touching(&key, times[index], item, &mut self.steps, touch) {
                Ok(()) => {
                    assigned.push(index);
                    self.plan(Some((index, message)), &mut calls, batch, done)?;
                }
                Err(refused) => {
                    done[index] = true;
                    self.refuse(message.clone(), refused);
                }
            }
        }
        self.changed = true;
        self.flush(&mut calls, batch, done)?;
        self.calls = calls;
        self.journal.extend(assigned.into_iter().map(|index| Journaled::Input { message: batch[index].clone(), time: times[index] }));
        Ok(())
    }

    /// Close what the clock or watermark has passed.
    pub fn advance(&mut self) {
        if self.instance.is_none() {
            return;
        }
        let now = now_ms();
        if let Err(failure) = self.try_advance(now) {
            self.recover_advance(failure, now);
        }
        self.send_closed();
    }

    /// Advance the table to `now` and make the calls that closes need; journaled once they worked.
    fn try_advance(&mut self, now: u64) -> Result<(), Failure> {
        self.table.advance(now, &mut self.steps);
        if self.steps.is_empty() {
            return Ok(());
        }
        self.changed = true;
        let mut calls = Calls::default();
        self.plan(None, &mut calls, &[], &mut [])?;
        self.flush(&mut calls, &[], &mut [])?;
        self.journal.push(Journaled::Advance(now));
        Ok(())
    }

    /// Turn the table's steps into calls; a merge is made at once, after what precedes it.
    fn plan(&mut self, current: Option<(usize, &Message)>, calls: &mut Calls, batch: &[Message], done: &mut [bool]) -> Result<(), Failure> {
        let mut steps = std::mem::take(&mut self.steps);
        for step in steps.drain(..) {
            match step {
                Step::Open(window) => calls.opens.push(window),
                Step::Accumulate { window, item } => {
                    // The current message, or (sliding windows) one retained from before.
                    let index = match &item {
                        Item::InBatch(index) => Some(*index),
                        Item::Kept(kept) => current.filter(|(_, current)| std::ptr::eq(current.meta(), kept.meta())).map(|(index, _)| index),
                    };
                    calls.items.push(item);
                    calls.windows.push(window);
                    calls.batch_indexes.push(index);
                }
                Step::Merge { target, source } => {
                    self.flush(calls, batch, done)?;
                    self.live()?.merge_windows(target, source)?;
                }
                Step::Close(window, slot) => calls.closes.push((window, *slot)),
            }
        }
        self.steps = steps;
        Ok(())
    }

    fn live(&mut self) -> Result<&mut ModuleInstance, Failure> {
        self.instance.as_mut().ok_or_else(|| Failure { reason: crate::wasm::FailureReason::Init, detail: "no live instance".into() })
    }

    /// Make the gathered calls (open, accumulate, then snapshot and close) and empty them.
    fn flush(&mut self, calls: &mut Calls, batch: &[Message], done: &mut [bool]) -> Result<(), Failure> {
        if calls.is_empty() {
            return Ok(());
        }
        let mut taken = std::mem::take(calls);
        self.make_calls(&mut taken, batch, done)?;
        taken.clear();
        *calls = taken;
        Ok(())
    }

    fn make_calls(&mut self, calls: &mut Calls, batch: &[Message], done: &mut [bool]) -> Result<(), Failure> {
        let instance = self.live()?;
        if !calls.opens.is_empty() {
            let openings: Vec<Opening<'_>> = calls.opens.iter().map(|w| Opening { window: window_ref(w), snapshot: None }).collect();
            instance.open_windows(&openings)?;
        }
        if !calls.items.is_empty() {
            let results = if Item::are_the_batch(&calls.items, batch) {
                instance.accumulate(batch, &calls.windows)?
            } else {
                let messages: Vec<Message> = calls.items.iter().map(|item| item.message(batch).without_ack()).collect();
                instance.accumulate(&messages, &calls.windows)?
            };
            for (result, origin) in results.into_iter().zip(&calls.batch_indexes) {
                if let (Err(reason), Some(index)) = (result, origin)
                    && !std::mem::replace(&mut done[*index], true)
                {
                    self.dead_letter(batch[*index].clone(), "rejected", reason);
                }
            }
        }
        if !calls.closes.is_empty() {
            self.close(std::mem::take(&mut calls.closes))?;
        }
        Ok(())
    }

    fn refuse(&self, mut message: Message, refused: Refused) {
        if self.replaying {
            return;
        }
        match (&refused, &self.spec.late_output) {
            (Refused::Late { .. }, Some(output)) => {
                metrics::counter!(telemetry::AGGREGATE_LATE, "module" => self.name.to_string()).increment(1);
                let meta = message.meta_mut();
                meta.origin = Some(ModuleOutput { module: self.name.clone(), output: output.clone() });
                meta.properties.push(Property::new("weir-late-reason", refused.to_string()));
                self.dispatcher.dispatch_blocking(message);
            }
            (Refused::Late { .. }, None) => {
                metrics::counter!(telemetry::AGGREGATE_LATE, "module" => self.name.to_string()).increment(1);
                self.dead_letter(message, "late", refused.to_string());
            }
            (Refused::KeyLimit { .. }, _) => self.dead_letter(message, "key-limit", refused.to_string()),
        }
    }

    fn dead_letter(&self, message: Message, reason: &'static str, detail: String) {
        if self.replaying {
            return;
        }
        self.dispatcher.dead_letter_blocking(DeadLetter::new(message, reason, detail).module(&self.name));
    }
}

fn window_ref(window: &Window) -> WindowRef<'_> {
    WindowRef { id: window.id, key: &window.key, start_ms: window.start_ms, end_ms: window.end_ms }
}
