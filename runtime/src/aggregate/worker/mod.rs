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
//! message that fails alone is dead-lettered ([`recovery`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{error, info};
use weir_core::message::now_ms;
use weir_core::{Ack, AckOutcome, Message, Metadata, ModuleOutput, Property};

mod recovery;

use super::AggregateSpec;
use super::checkpoint::{Checkpoint, WindowState};
use super::origin::{Origin, topic_and_source};
use super::windows::{Refused, Step, TableState, Window, WindowData, WindowId, WindowKind, WindowTable};
use crate::executor::deadletter::DeadLetter;
use crate::executor::dispatch::{Dispatcher, Work};
use crate::queue::record;
use crate::telemetry;
use crate::wasm::abi::OutputMessage;
use crate::wasm::aggregate::{Opening, WindowRef};
use crate::wasm::{Failure, LoadedModule, ModuleInstance};
use recovery::Journaled;

/// The property every window result carries: `module/key/start`, the same each time the
/// window's result is sent, so a reader can drop a repeat that at-least-once delivery lets
/// through.
pub const WINDOW_ID: &str = "weir-window";

pub struct AggregateWorker {
    pub module: LoadedModule,
    pub spec: AggregateSpec,
    pub queue: mpsc::Receiver<Work>,
    pub dispatcher: Arc<Dispatcher>,
    pub batch_size: usize,
    /// Held acknowledgements that force a checkpoint (half the sources' in-flight window,
    /// so sources never stall waiting for one).
    pub max_held: usize,
    /// The runtime whose timer paces the worker's clock ticks.
    pub runtime: tokio::runtime::Handle,
}

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

impl AggregateWorker {
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new().name(format!("weir-aggregate-{}", self.module.name)).spawn(move || self.run())
    }

    fn run(self) {
        let AggregateWorker { module, spec, mut queue, dispatcher, batch_size, max_held, runtime } = self;
        // The module's WASI calls use this runtime's timers and I/O.
        let _entered = runtime.enter();
        let tick = Duration::from_millis(100).min(spec.checkpoint_interval);
        let mut runner = AggregateRunner::new(module, spec, dispatcher, max_held);
        runner.restore();
        let mut batch = Vec::with_capacity(batch_size);
        let accepted = runner.accepted.clone();
        loop {
            let mut stop = false;
            // Wake for work, for the clock, or when a sink accepted a result (to checkpoint it).
            let next = runtime.block_on(async {
                tokio::select! {
                    received = tokio::time::timeout(tick, queue.recv()) => received.ok(),
                    () = accepted.notified() => None,
                }
            });
            match next {
                None => {}
                Some(Some(Work::Message { message, .. })) => batch.push(message),
                Some(Some(Work::Stop) | None) => stop = true,
            }
            while !stop && batch.len() < batch_size {
                match queue.try_recv() {
                    Ok(Work::Message { message, .. }) => batch.push(message),
                    Ok(Work::Stop) => stop = true,
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                runner.process(std::mem::take(&mut batch));
            }
            runner.advance();
            if stop {
                runner.checkpoint();
                break;
            }
            runner.maybe_checkpoint();
        }
        info!(module = %runner.name, windows = runner.table.open_windows().count(), "aggregate worker stopped; open windows saved");
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
        }
    }

    /// Start the instance and continue from the checkpoint, if there is one.
    pub fn restore(&mut self) {
        let path = self.spec.state_path.clone();
        let checkpoint = match Checkpoint::read(&path) {
            Ok(checkpoint) => checkpoint,
            Err(err) => {
                let aside = path.with_extension(format!("damaged-{}", now_ms()));
                let moved = std::fs::rename(&path, &aside).is_ok();
                error!(module = %self.name, error = %format!("{err:#}"), moved_to = %aside.display(), moved, "window state unreadable; starting with empty windows");
                None
            }
        };
        if let Some(checkpoint) = checkpoint {
            let windows = checkpoint.windows.len();
            self.emitted = checkpoint.emitted.iter().cloned().map(|(window, state)| (window.id, (window, state))).collect();
            self.load(checkpoint.clone());
            self.last = Some(checkpoint);
            info!(module = %self.name, windows, unaccepted_results = self.emitted.len(), "continuing open windows from {}", path.display());
        }
        self.start_instance();
        // Results that no sink had accepted before the stop: emit them again.
        if !self.emitted.is_empty()
            && let Some(instance) = self.instance.as_mut()
        {
            let pending: Vec<(Window, WindowState)> = self.emitted.values().cloned().collect();
            let openings: Vec<Opening<'_>> = pending.iter().map(|(w, s)| Opening { window: window_ref(w), snapshot: s.state.as_deref() }).collect();
            let refs: Vec<WindowRef<'_>> = pending.iter().map(|(w, _)| window_ref(w)).collect();
            match instance.open_windows(&openings).and_then(|()| instance.close_windows(&refs)) {
                Ok(outputs) => {
                    for ((window, state), outputs) in pending.iter().zip(outputs) {
                        let origin = Origin::new(&state.topic, state.source.clone());
                        self.emit(window, Some(&origin), outputs);
                    }
                }
                Err(failure) => {
                    error!(module = %self.name, %failure, "could not emit the results left from before the stop; they stay saved for the next start")
                }
            }
        }
        self.changed = true;
    }

    /// The window table and each open window's state as `checkpoint` has them.
    fn load(&mut self, checkpoint: Checkpoint) {
        self.table.import(decode_table(checkpoint.table));
        let mut states: HashMap<WindowId, WindowState> = checkpoint.windows.into_iter().map(|state| (state.id, state)).collect();
        for open in self.table.open_windows_mut() {
            if let Some(state) = states.remove(&open.window.id) {
                open.data = Slot { checkpointed: state.state, dirty: false, origin: Some(Origin::new(&state.topic, state.source)) };
            }
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

    /// Snapshot (so the result survives a crash until it is accepted), close and emit.
    fn close(&mut self, windows: Vec<(Window, Slot)>) -> Result<(), Failure> {
        let dirty: Vec<u64> = windows.iter().filter(|(_, slot)| slot.dirty).map(|(window, _)| window.id).collect();
        let instance = self.live()?;
        let mut states: HashMap<u64, Vec<u8>> =
            if dirty.is_empty() { HashMap::new() } else { dirty.iter().copied().zip(instance.snapshot_windows(&dirty)?).collect() };
        let refs: Vec<WindowRef<'_>> = windows.iter().map(|(window, _)| window_ref(window)).collect();
        let outputs = instance.close_windows(&refs)?;
        for ((window, slot), outputs) in windows.into_iter().zip(outputs) {
            // Closed and sent on before a failure rolled the windows back: not again.
            if !self.emitted_since.insert(window.id) {
                continue;
            }
            let state = states.remove(&window.id).or(slot.checkpointed);
            let (topic, source) = topic_and_source(slot.origin.as_ref());
            self.emitted.insert(window.id, (window.clone(), WindowState { id: window.id, state, topic, source }));
            self.closed.push((window, slot.origin, outputs));
        }
        Ok(())
    }

    /// Send on the results of the windows closed since the last call, after a checkpoint that
    /// records them as closed (with their state, until a sink accepts them). So a crash after
    /// this point never gives their inputs to a fresh window again: those are acknowledged,
    /// and a result not yet accepted is sent again at start, from its saved state, with the
    /// same `weir-window` id.
    fn send_closed(&mut self) {
        if self.closed.is_empty() {
            return;
        }
        self.changed = true;
        self.checkpoint();
        for (window, origin, outputs) in std::mem::take(&mut self.closed) {
            self.emit(&window, origin.as_ref(), outputs);
        }
    }

    /// Route a closed window's results; it leaves the checkpoint once they are accepted.
    fn emit(&mut self, window: &Window, origin: Option<&Origin>, outputs: Vec<OutputMessage>) {
        if outputs.is_empty() {
            self.emitted.remove(&window.id);
            return;
        }
        metrics::counter!(telemetry::MODULE_OUT, "module" => self.name.to_string()).increment(outputs.len() as u64);
        let (tx, wake) = (self.accepted_tx.clone(), self.accepted.clone());
        let id = window.id;
        let ack = Ack::new(move |outcome| {
            if outcome == AckOutcome::Accepted {
                let _ = tx.send(id);
                wake.notify_one();
            }
        });
        for output in outputs {
            let message = self.result_message(window, origin, output, ack.clone());
            self.dispatcher.dispatch_blocking(message);
        }
    }

    fn result_message(&self, window: &Window, origin: Option<&Origin>, output: OutputMessage, ack: Ack) -> Message {
        let (topic, source) = topic_and_source(origin);
        let mut meta = Metadata::new(source, output.topic.unwrap_or(topic));
        meta.origin = Some(ModuleOutput { module: self.name.clone(), output: Arc::from(output.output.as_deref().unwrap_or("out")) });
        meta.content_type = output.content_type;
        meta.properties = output.properties.unwrap_or_default().into_iter().map(|p| Property::new(p.name, p.value)).collect();
        meta.properties.push(Property::new("window_key", window.key.to_string()));
        meta.properties.push(Property::new("window_start", window.start_ms.to_string()));
        meta.properties.push(Property::new("window_end", window.end_ms.to_string()));
        meta.properties.push(Property::new(WINDOW_ID, format!("{}/{}/{}", self.name, window.key, window.start_ms)));
        Message::new(Bytes::from(output.payload), meta, ack)
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

    /// Checkpoint if the interval has passed or too many messages are journaled.
    pub fn maybe_checkpoint(&mut self) {
        // A result a sink accepted leaves the checkpoint at once, so that a restart does not
        // send it again. (Acceptances that come while a checkpoint is written are taken by the
        // next one together.)
        let accepted = self.take_accepted();
        let since = self.last_checkpoint.elapsed();
        let due = self.changed && since >= self.spec.checkpoint_interval;
        if due || accepted || self.journal.len() >= self.max_held {
            self.checkpoint();
        }
    }

    /// Forget the results sinks accepted since the last look; whether there were any.
    fn take_accepted(&mut self) -> bool {
        let mut accepted = false;
        while let Ok(id) = self.accepted_rx.try_recv() {
            accepted |= self.emitted.remove(&id).is_some();
            self.changed = true;
        }
        accepted
    }

    /// Save every window's state; then release the held acknowledgements.
    pub fn checkpoint(&mut self) {
        self.take_accepted();
        if !self.changed && self.journal.is_empty() {
            return;
        }
        let started = Instant::now();
        let dirty: Vec<u64> = self.table.open_windows().filter(|open| open.data.dirty).map(|open| open.window.id).collect();
        if !dirty.is_empty() {
            let snapshot = match self.live() {
                Ok(instance) => instance.snapshot_windows(&dirty),
                Err(failure) => Err(failure),
            };
            match snapshot {
                Ok(states) => {
                    let mut states: HashMap<u64, Vec<u8>> = dirty.into_iter().zip(states).collect();
                    for open in self.table.open_windows_mut() {
                        if let Some(state) = states.remove(&open.window.id) {
                            open.data.checkpointed = Some(state);
                            open.data.dirty = false;
                        }
                    }
                }
                Err(failure) => return self.recover(failure, &[], &[], &mut []),
            }
        }
        let windows = self
            .table
            .open_windows()
            .map(|open| {
                let (topic, source) = topic_and_source(open.data.origin.as_ref());
                WindowState { id: open.window.id, state: open.data.checkpointed.clone(), topic, source }
            })
            .collect();
        let checkpoint = Checkpoint { table: encode_table(self.table.export()), windows, emitted: self.emitted.values().cloned().collect() };
        match checkpoint.write(&self.spec.state_path) {
            Ok(()) => {
                self.last = Some(checkpoint);
                self.journal.clear();
                self.emitted_since.clear();
                self.changed = false;
            }
            Err(err) => {
                error!(module = %self.name, error = %format!("{err:#}"), "cannot save the window state; acknowledgements are held until it can be saved")
            }
        }
        self.last_checkpoint = Instant::now();
        metrics::histogram!(telemetry::AGGREGATE_CHECKPOINT_SECONDS, "module" => self.name.to_string()).record(started.elapsed().as_secs_f64());
        metrics::gauge!(telemetry::AGGREGATE_OPEN_WINDOWS, "module" => self.name.to_string()).set(self.table.open_windows().count() as f64);
        metrics::gauge!(telemetry::AGGREGATE_KEYS, "module" => self.name.to_string()).set(self.table.key_count() as f64);
    }
}

fn window_ref(window: &Window) -> WindowRef<'_> {
    WindowRef { id: window.id, key: &window.key, start_ms: window.start_ms, end_ms: window.end_ms }
}

/// Retained messages (sliding windows) as queue records.
fn encode_table(state: TableState<Item>) -> TableState<Vec<u8>> {
    state.map_retained(|at, item| match item {
        Item::Kept(message) => {
            let mut bytes = Vec::new();
            record::encode(&mut bytes, &message, at, 0);
            Some(bytes)
        }
        // Not retained: only sliding windows keep messages, and they keep copies.
        Item::InBatch(_) => None,
    })
}

fn decode_table(state: TableState<Vec<u8>>) -> TableState<Item> {
    state.map_retained(|_, bytes| record::decode(&Bytes::from(bytes)).ok().map(|record| Item::Kept(record.message)))
}
