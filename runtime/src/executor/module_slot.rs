//! A module's live instance, shared by its worker thread and the tasks that deliver to it.
//!
//! Crossing to the module's thread costs a wake-up of that thread and, for what it outputs,
//! one of the async thread: on a small box that was a third of weir's CPU time
//! (docs/benchmarks.md). So a module whose calls stay short is called where its messages
//! arrive, on the task that dispatches a source's messages, a batch at a time. Its worker
//! thread still does everything else:
//! - the first calls: a module starts on its thread and is called inline only after
//!   [`PROMOTE_AFTER`] calls in a row took under a quarter of its budget
//!   (`runtime.inline_call_budget`, 1 ms unless set);
//! - any backlog: what was queued for the thread (during probation, while an instance is
//!   restarted, or behind a call set aside) is handled there first; a batch waits for that
//!   before it is called inline, which keeps each producer's messages in order;
//! - (re)starting an instance after a failure;
//! - for good, once calls run past the budget ([`LONG_IN_A_ROW`] in a row, or one stopped
//!   by its deadline), and always with `own_thread = true` or a budget of zero.
//!
//! An inline call that outlives the budget yields at the next epoch tick and is finished on a
//! blocking thread, which sends on what it made; the dispatching task goes on with other
//! messages, and what comes for the module meanwhile queues behind the call. The
//! connections' thread is held for the budget and one tick at most, not up to the module's
//! deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Notify, OwnedMutexGuard};
use tracing::{info, warn};
use weir_core::{Message, ModuleOutput, Property};

use super::deadletter::DeadLetter;
use crate::telemetry;
use crate::wasm::abi::OutputMessage;
use crate::wasm::{BatchResult, Failure, FailureReason, LoadedModule, ModuleInstance, finish};

/// Short calls in a row on the module's thread before it is called inline.
pub const PROMOTE_AFTER: u32 = 16;
/// Calls in a row over the budget that send an inline module back to its thread.
pub const LONG_IN_A_ROW: u32 = 3;

const ON_PROBATION: u8 = 0;
const INLINE: u8 = 1;
const OWN_THREAD: u8 = 2;

/// What [`ModuleSlot::call_inline`] did with a batch.
pub enum Inline {
    /// Called: send the outputs on.
    Done(Processed),
    /// The call outlived the budget: finish it on a blocking thread with
    /// [`ModuleSlot::finish_set_aside`].
    SetAside(SetAside),
    /// Not called: queue the messages for the module's thread.
    Refused(Vec<Message>),
}

/// An inline call that outlived its budget, paused at an epoch tick, holding the instance.
pub struct SetAside {
    call: SetAsideCall,
    started: Instant,
    count: usize,
    /// The module input the call is for (a failed batch is called again on it).
    input: Arc<str>,
}

type SetAsideCall = Pin<Box<dyn Future<Output = (OwnedMutexGuard<Option<ModuleInstance>>, Vec<Message>, Result<BatchResult, Failure>)> + Send>>;

/// Clears [`ModuleSlot::aside`] and counts the set-aside messages handled when dropped.
struct AsideDone<'a> {
    slot: &'a ModuleSlot,
    count: usize,
}

impl Drop for AsideDone<'_> {
    fn drop(&mut self) {
        self.slot.aside.store(false, Ordering::SeqCst);
        self.slot.handled(self.count);
    }
}

/// What a call made of a batch: messages to send on and dead letters.
#[derive(Default)]
pub struct Processed {
    pub outputs: Vec<Message>,
    pub dead: Vec<DeadLetter>,
    /// The instance could not start: the caller should not retry at once.
    pub start_failed: bool,
}

pub struct ModuleSlot {
    pub module: LoadedModule,
    /// Messages per call, at most.
    pub batch_size: usize,
    /// Locked by the module's thread for its calls, and by an inline call (which, when set
    /// aside, takes the lock along to the thread that finishes it).
    instance: Arc<tokio::sync::Mutex<Option<ModuleInstance>>>,
    /// Messages sent to the worker's queue and not yet fully handled (outputs sent on).
    backlog: AtomicUsize,
    /// Told when `backlog` reaches zero.
    drained: Notify,
    /// A call was set aside and is being finished on a blocking thread: what comes for the
    /// module is queued behind it, not waited for.
    aside: AtomicBool,
    mode: AtomicU8,
    /// A call that takes longer is too long for the connections' thread.
    budget: Duration,
    short_calls: AtomicU32,
    long_calls: AtomicU32,
    metrics: ModuleMetrics,
}

impl std::fmt::Debug for ModuleSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleSlot").field("module", &self.module.name).field("mode", &self.mode).field("backlog", &self.backlog).finish_non_exhaustive()
    }
}

/// The module's metric handles, registered once.
struct ModuleMetrics {
    input: metrics::Counter,
    output: metrics::Counter,
    dropped: metrics::Counter,
    call_seconds: metrics::Histogram,
    inline: metrics::Gauge,
    set_aside: metrics::Counter,
}

impl ModuleSlot {
    /// `budget`: see `runtime.inline_call_budget`; zero (or `own_thread`) keeps the module on
    /// its thread.
    pub fn new(module: LoadedModule, batch_size: usize, own_thread: bool, budget: Duration) -> Self {
        let name = module.name.to_string();
        let metrics = ModuleMetrics {
            input: metrics::counter!(telemetry::MODULE_IN, "module" => name.clone()),
            output: metrics::counter!(telemetry::MODULE_OUT, "module" => name.clone()),
            dropped: metrics::counter!(telemetry::MODULE_DROPPED, "module" => name.clone()),
            call_seconds: metrics::histogram!(telemetry::MODULE_CALL_SECONDS, "module" => name.clone()),
            inline: metrics::gauge!(telemetry::MODULE_INLINE, "module" => name.clone()),
            set_aside: metrics::counter!(telemetry::MODULE_SET_ASIDE, "module" => name),
        };
        metrics.inline.set(0.0);
        ModuleSlot {
            module,
            batch_size: batch_size.max(1),
            instance: Arc::new(tokio::sync::Mutex::new(None)),
            backlog: AtomicUsize::new(0),
            drained: Notify::new(),
            aside: AtomicBool::new(false),
            mode: AtomicU8::new(if own_thread || budget.is_zero() { OWN_THREAD } else { ON_PROBATION }),
            budget,
            short_calls: AtomicU32::new(0),
            long_calls: AtomicU32::new(0),
            metrics,
        }
    }

    /// Whether batches for this module should be offered to [`ModuleSlot::call_inline`].
    pub fn runs_inline(&self) -> bool {
        self.mode.load(Ordering::Relaxed) == INLINE
    }

    /// `count` messages are on their way to the worker's queue.
    pub fn queued(&self, count: usize) {
        self.backlog.fetch_add(count, Ordering::SeqCst);
    }

    /// `count` queued messages are handled and what they became is sent on (or they never
    /// reached the queue).
    pub fn handled(&self, count: usize) {
        if self.backlog.fetch_sub(count, Ordering::SeqCst) == count {
            self.drained.notify_waiters();
        }
    }

    /// Call the module on `messages` here, if it runs inline, once what is queued for its
    /// thread is handled. The messages come back, to be queued, if it does not run inline
    /// (any more), or if the thread took new work or must restart the instance. The caller
    /// sends the outputs on.
    ///
    /// A call that outlives the budget is set aside at the next epoch tick, to be finished on
    /// a blocking thread ([`ModuleSlot::finish_set_aside`]): the connections' thread is held
    /// for the budget and one tick, not up to the module's deadline, and the source's other
    /// messages go on. Until it is finished, what comes for the module queues behind it.
    pub async fn call_inline(&self, input: &Arc<str>, messages: Vec<Message>) -> Inline {
        loop {
            if !self.runs_inline() || self.aside.load(Ordering::SeqCst) {
                return Inline::Refused(messages);
            }
            // Nothing queued, the usual case: no waiter to register (that takes a lock).
            if self.backlog.load(Ordering::SeqCst) == 0 {
                break;
            }
            let drained = self.drained.notified();
            let mut drained = std::pin::pin!(drained);
            drained.as_mut().enable();
            if self.backlog.load(Ordering::SeqCst) == 0 {
                break;
            }
            drained.await;
        }
        let Ok(mut instance) = self.instance.clone().try_lock_owned() else {
            return Inline::Refused(messages);
        };
        if instance.is_none() || self.backlog.load(Ordering::SeqCst) != 0 {
            return Inline::Refused(messages);
        }
        let count = messages.len();
        let started = Instant::now();
        let (input, budget) = (input.clone(), self.budget);
        let call_input = input.clone();
        let mut call: SetAsideCall = Box::pin(async move {
            let live = instance.as_mut().expect("checked above");
            let result = live.call_async(&call_input, &messages, Some(budget)).await;
            (instance, messages, result)
        });
        match call.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            // Finding which message of a failed batch fails takes a call per message: on a
            // blocking thread, like a call that runs long, not on the connections' thread.
            Poll::Ready((instance, messages, Err(failure))) if messages.len() > 1 => {
                self.aside.store(true, Ordering::SeqCst);
                self.queued(count);
                Inline::SetAside(SetAside { call: Box::pin(std::future::ready((instance, messages, Err(failure)))), started, count, input })
            }
            Poll::Ready((mut instance, messages, result)) => Inline::Done(self.called(&mut instance, &input, messages, result, started.elapsed(), true)),
            Poll::Pending => {
                self.metrics.set_aside.increment(1);
                self.aside.store(true, Ordering::SeqCst);
                self.queued(count);
                Inline::SetAside(SetAside { call, started, count, input })
            }
        }
    }

    /// Finish a call that [`ModuleSlot::call_inline`] set aside, on this (blocking) thread.
    /// `send_on` gets what it made while the instance is still held, so that nothing the
    /// module makes next can overtake it.
    pub fn finish_set_aside(&self, aside: SetAside, send_on: impl FnOnce(Processed)) {
        let SetAside { call, started, count, input } = aside;
        // However this ends, what queued behind the call is no longer held back by it.
        let _done = AsideDone { slot: self, count };
        let (mut instance, messages, result) = finish(call);
        send_on(self.called(&mut instance, &input, messages, result, started.elapsed(), true));
        drop(instance);
    }

    /// Call the module on `messages` from its thread, starting an instance if there is none.
    pub fn call_queued(&self, input: &str, messages: Vec<Message>) -> Processed {
        let mut instance = self.instance.blocking_lock();
        if instance.is_none() && !self.start_into(&mut instance) {
            let dead = messages
                .into_iter()
                .map(|message| DeadLetter::new(message, "init", "the module instance could not start (see the log)").module(&self.module.name))
                .collect();
            return Processed { outputs: Vec::new(), dead, start_failed: true };
        }
        let Some(live) = instance.as_mut() else {
            unreachable!("an instance was started above");
        };
        let started = Instant::now();
        let result = live.call(input, &messages);
        self.called(&mut instance, input, messages, result, started.elapsed(), false)
    }

    /// Start the first instance (on the worker's thread, before any message).
    pub fn start(&self) {
        self.start_into(&mut self.instance.blocking_lock());
    }

    /// A new instance in `instance`; false (and logged) if it cannot start.
    fn start_into(&self, instance: &mut Option<ModuleInstance>) -> bool {
        match ModuleInstance::start(&self.module) {
            Ok(started) => {
                *instance = Some(started);
                true
            }
            Err(failure) => {
                tracing::error!(module = %self.module.name, %failure, "module instance could not start; its messages go to $deadletter until it can");
                false
            }
        }
    }

    /// The worker is stopping: drop the instance, and never call inline again.
    pub fn close(&self) {
        self.mode.store(OWN_THREAD, Ordering::Relaxed);
        self.metrics.inline.set(0.0);
        self.instance.blocking_lock().take();
        self.drained.notify_waiters();
    }

    /// What a call on `messages` made of them; a failed call drops the instance, and a failed
    /// call on several messages calls them again one at a time (which blocks: never on the
    /// connections' thread, see `call_inline`).
    fn called(
        &self,
        instance: &mut Option<ModuleInstance>,
        input: &str,
        messages: Vec<Message>,
        result: Result<BatchResult, Failure>,
        took: Duration,
        inline: bool,
    ) -> Processed {
        self.metrics.input.increment(messages.len() as u64);
        self.metrics.call_seconds.record(took.as_secs_f64());
        self.judge(took, result.as_ref().err().map(|failure| failure.reason), inline);
        match result {
            Ok(results) => self.outputs(messages, results),
            Err(failure) => {
                *instance = None;
                if messages.len() == 1 {
                    Processed { dead: self.failed(messages, &failure), ..Processed::default() }
                } else {
                    self.isolate(instance, input, messages, &failure)
                }
            }
        }
    }

    /// A call on several messages failed (a trap, its deadline, the memory cap): one of them
    /// may be the cause, and the others innocent. Call each again alone, in order, on a live
    /// instance (a new one after every failure), so that only a message that fails by itself
    /// goes to `$deadletter` and its neighbours go on. A failure that does not come back
    /// (state that built up in the old instance, say) dead-letters nothing.
    fn isolate(&self, instance: &mut Option<ModuleInstance>, input: &str, messages: Vec<Message>, failure: &Failure) -> Processed {
        let name = &*self.module.name;
        warn!(module = name, reason = failure.reason.as_str(), detail = %failure.detail, batch = messages.len(),
            "module call failed; calling the batch's messages one at a time so that only the one that fails goes to $deadletter");
        let mut processed = Processed::default();
        for message in messages {
            if instance.is_none() && !self.start_into(instance) {
                processed.start_failed = true;
                processed.dead.push(DeadLetter::new(message, "init", "the module instance could not start (see the log)").module(name));
                continue;
            }
            let Some(live) = instance.as_mut() else { continue };
            match live.call(input, std::slice::from_ref(&message)) {
                Ok(results) => {
                    let alone = self.outputs(vec![message], results);
                    processed.outputs.extend(alone.outputs);
                    processed.dead.extend(alone.dead);
                }
                Err(failure) => {
                    *instance = None;
                    processed.dead.extend(self.failed(vec![message], &failure));
                }
            }
        }
        processed
    }

    /// Promote a module whose calls stay short; send one whose calls run long back to its
    /// thread. The clock is the wall's, so a short call looks long when the system gave the
    /// CPU to someone else meanwhile (the broker, say; on a box loaded with three relays that
    /// sent a pass-through module back in three runs of nine): it takes [`LONG_IN_A_ROW`]
    /// calls in a row over the budget, or one stopped by its deadline. (One call far over the
    /// budget used to be enough, when it held the connections' thread; set aside, it costs a
    /// hand-off, and its time then includes the wait for a thread, which a loaded machine
    /// stretches.) A call that failed otherwise (a trap, say, whose panic message takes a
    /// while to write) says nothing about how long the module's calls take.
    fn judge(&self, took: Duration, failure: Option<FailureReason>, inline: bool) {
        let name = &*self.module.name;
        let mode = self.mode.load(Ordering::Relaxed);
        let timed_out = failure == Some(FailureReason::Deadline);
        if mode == INLINE && (failure.is_none() || timed_out) {
            if !timed_out && took <= self.budget {
                self.long_calls.store(0, Ordering::Relaxed);
                return;
            }
            let in_a_row = self.long_calls.fetch_add(1, Ordering::Relaxed) + 1;
            if timed_out || in_a_row >= LONG_IN_A_ROW {
                self.mode.store(OWN_THREAD, Ordering::Relaxed);
                self.metrics.inline.set(0.0);
                let on = if inline { "where its messages arrive" } else { "on its own thread" };
                warn!(module = name, took = ?took, in_a_row, budget = ?self.budget, "a module call {on} ran long; the module is called only on its own thread from now on");
            }
        } else if mode == ON_PROBATION {
            if failure.is_some() || took > self.budget / 4 {
                self.short_calls.store(0, Ordering::Relaxed);
            } else if self.short_calls.fetch_add(1, Ordering::Relaxed) + 1 >= PROMOTE_AFTER {
                self.mode.store(INLINE, Ordering::Relaxed);
                self.metrics.inline.set(1.0);
                info!(module = name, "module calls are short: called where its messages arrive, no thread hand-off");
            }
        }
    }

    fn failed(&self, messages: Vec<Message>, failure: &Failure) -> Vec<DeadLetter> {
        let name = &*self.module.name;
        warn!(module = name, reason = failure.reason.as_str(), detail = %failure.detail, messages = messages.len(), "module call failed; message to $deadletter, instance recycled");
        metrics::counter!(telemetry::MODULE_FAILURES, "module" => name.to_owned(), "reason" => failure.reason.as_str()).increment(1);
        messages.into_iter().map(|message| DeadLetter::new(message, failure.reason.as_str(), failure.detail.clone()).module(name)).collect()
    }

    /// The messages a call's results make, in batch order, and the rejected ones.
    fn outputs(&self, messages: Vec<Message>, results: BatchResult) -> Processed {
        let name = &self.module.name;
        let default_origin = ModuleOutput { module: name.clone(), output: Arc::from("out") };
        let origin = |output: Option<&str>| match output {
            None => default_origin.clone(),
            Some(output) => ModuleOutput { module: name.clone(), output: Arc::from(output) },
        };
        let mut dead = Vec::new();
        let mut reject = |message: Message, reason: String| dead.push(DeadLetter::new(message, "rejected", reason).module(name));
        let mut dropped = 0u64;
        let mut outputs = Vec::with_capacity(messages.len());
        match results {
            BatchResult::Filter(results) => {
                for (mut message, result) in messages.into_iter().zip(results) {
                    match result {
                        Ok(true) => {
                            message.meta_mut().origin = Some(origin(None));
                            outputs.push(message);
                        }
                        Ok(false) => dropped += 1,
                        Err(reason) => reject(message, reason),
                    }
                }
            }
            BatchResult::Map(results) => {
                for (message, result) in messages.into_iter().zip(results) {
                    match result {
                        Ok(output) => outputs.push(derive(&message, output, &origin)),
                        Err(reason) => reject(message, reason),
                    }
                }
            }
            BatchResult::FlatMap(results) => {
                for (message, result) in messages.into_iter().zip(results) {
                    match result {
                        Ok(produced) => {
                            if produced.is_empty() {
                                dropped += 1;
                            }
                            outputs.extend(produced.into_iter().map(|output| derive(&message, output, &origin)));
                        }
                        Err(reason) => reject(message, reason),
                    }
                }
            }
        }
        self.metrics.output.increment(outputs.len() as u64);
        self.metrics.dropped.increment(dropped);
        Processed { outputs, dead, start_failed: false }
    }
}

/// A module's output message: new payload, the input's metadata with what the module changed.
fn derive(input: &Message, output: OutputMessage, origin: &dyn Fn(Option<&str>) -> ModuleOutput) -> Message {
    let mut message = input.derive(Bytes::from(output.payload));
    let meta = message.meta_mut();
    meta.origin = Some(origin(output.output.as_deref()));
    if let Some(topic) = output.topic {
        meta.topic = topic;
    }
    if let Some(properties) = output.properties {
        meta.properties = properties.into_iter().map(|p| Property::new(p.name, p.value)).collect();
    }
    if let Some(content_type) = output.content_type {
        meta.content_type = Some(content_type);
    }
    message
}
