//! One live instance of a module, called a batch at a time.

use std::fmt;
use std::time::{Duration, Instant};

use wasmtime::component::{Func, Instance};
use wasmtime::{Store, UpdateDeadline};
use weir_core::Message;

use super::abi::{BatchBuffers, BatchRef, OutputMessage, Verdicts};
use super::host::{InstanceState, MemoryCap};
use super::module::{LoadedModule, ModuleKind};
use super::ticker::Running;

/// Why a call failed as a whole. Every message of the batch goes to `$deadletter` with it,
/// and the instance is thrown away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// The module trapped (a panic, `unreachable`, an out-of-bounds access …).
    Trap,
    /// The call ran past its wall-clock deadline.
    Deadline,
    /// The module tried to grow its memory past its cap.
    MemoryCap,
    /// `init` returned an error (usually a config that does not fit).
    Init,
    /// The module returned the wrong number of results.
    Contract,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Trap => "trap",
            FailureReason::Deadline => "deadline",
            FailureReason::MemoryCap => "memory-cap",
            FailureReason::Init => "init",
            FailureReason::Contract => "contract",
        }
    }
}

/// A failed call: what kind of failure, and the detail to show a person.
#[derive(Debug, Clone)]
pub struct Failure {
    pub reason: FailureReason,
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.detail)
    }
}

impl std::error::Error for Failure {}

/// What each kind's call returns, as lifted from the module. `start` type-checks the call
/// against these and `call` (and `accumulate`) rely on that check (see `call_typed`): both
/// name them here.
type FilterReturn = Verdicts;
type MapReturn = Vec<Result<OutputMessage, String>>;
type FlatMapReturn = Vec<Result<Vec<OutputMessage>, String>>;
/// `aggregate.accumulate`'s parameters and return (the other aggregate calls are rare and
/// checked per call).
pub(super) type AccumulateParams<'a> = (BatchRef<'a>, &'a [u64]);
pub(super) type AccumulateReturn = Vec<Result<(), String>>;

/// Per-message results of one call, in batch order.
#[derive(Debug)]
pub enum BatchResult {
    Filter(Vec<Result<bool, String>>),
    Map(Vec<Result<OutputMessage, String>>),
    FlatMap(Vec<Result<Vec<OutputMessage>, String>>),
}

impl BatchResult {
    pub fn len(&self) -> usize {
        match self {
            BatchResult::Filter(results) => results.len(),
            BatchResult::Map(results) => results.len(),
            BatchResult::FlatMap(results) => results.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A running instance. Not shared: each module worker owns its instances.
pub struct ModuleInstance {
    pub(super) module: LoadedModule,
    pub(super) store: Store<InstanceState>,
    pub(super) call: Func,
    pub(super) buffers: BatchBuffers,
    /// The other functions of `weir:module/aggregate` (aggregate modules only).
    pub(super) aggregate: Option<super::aggregate::AggregateFuncs>,
}

impl fmt::Debug for ModuleInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModuleInstance").field("module", &self.module.name).finish_non_exhaustive()
    }
}

impl ModuleInstance {
    /// Instantiate and run `init`, on this thread (see [`finish`]).
    pub fn start(module: &LoadedModule) -> Result<Self, Failure> {
        finish(Self::start_async(module))
    }

    async fn start_async(module: &LoadedModule) -> Result<Self, Failure> {
        let state = InstanceState::new(module.name.clone(), module.config_json.clone(), MemoryCap { max_bytes: module.limits.memory_bytes, hit: false });
        let mut store = Store::new(&module.engine.engine, state);
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_callback(|mut store| Ok(store.data_mut().clock.on_tick()));
        let running = arm(&mut store, module, None);
        let instance: Instance = module.pre.instantiate_async(&mut store).await.map_err(|err| classify(&store, err, "instantiating"))?;
        let init = instance
            .get_func(&mut store, module.init_export)
            .ok_or_else(|| Failure { reason: FailureReason::Contract, detail: "`init` is not a function".into() })?;
        let call = instance
            .get_func(&mut store, module.call_export)
            .ok_or_else(|| Failure { reason: FailureReason::Contract, detail: format!("`{}` is not a function", module.kind) })?;
        let init = init.typed::<(), (Result<(), String>,)>(&store).map_err(|err| contract(err, "init"))?;
        // The call's signature is checked once here; `call_typed` relies on it.
        match module.kind {
            ModuleKind::Filter => call.typed::<(&str, BatchRef<'_>), (FilterReturn,)>(&store).map(drop),
            ModuleKind::Map => call.typed::<(&str, BatchRef<'_>), (MapReturn,)>(&store).map(drop),
            ModuleKind::FlatMap => call.typed::<(&str, BatchRef<'_>), (FlatMapReturn,)>(&store).map(drop),
            ModuleKind::Aggregate => call.typed::<AccumulateParams<'_>, (AccumulateReturn,)>(&store).map(drop),
        }
        .map_err(|err| contract(err, module.kind.interface()))?;
        drop(running);
        let _running = arm(&mut store, module, None);
        match init.call_async(&mut store, ()).await {
            Ok((Ok(()),)) => {}
            Ok((Err(message),)) => return Err(Failure { reason: FailureReason::Init, detail: format!("init failed: {message}") }),
            Err(err) => return Err(classify(&store, err, "init")),
        }
        let aggregate = match &module.aggregate_exports {
            Some(exports) => Some(exports.funcs(&instance, &mut store)?),
            None => None,
        };
        Ok(ModuleInstance { module: module.clone(), store, call, buffers: BatchBuffers::default(), aggregate })
    }

    pub fn module(&self) -> &LoadedModule {
        &self.module
    }

    /// Call the module's kind on a batch, on this thread (see [`finish`]). `Err` means the
    /// instance is unusable: drop it.
    pub fn call(&mut self, input: &str, batch: &[Message]) -> Result<BatchResult, Failure> {
        finish(self.call_async(input, batch, None))
    }

    /// Call the module's kind on a batch. Once the call has run for `set_aside_after`, it
    /// yields at the next epoch tick: whoever polls it may then finish it somewhere else
    /// (`executor::module_slot` hands it to a blocking thread). `Err` means the instance is
    /// unusable: drop it.
    pub async fn call_async(&mut self, input: &str, batch: &[Message], set_aside_after: Option<Duration>) -> Result<BatchResult, Failure> {
        let _running = arm(&mut self.store, &self.module, set_aside_after);
        let mut buffers = std::mem::take(&mut self.buffers);
        let refs = buffers.fill(batch);
        let (store, call) = (&mut self.store, self.call);
        let result = match self.module.kind {
            ModuleKind::Filter => call_typed::<FilterReturn>(store, call, input, refs).await.map(|verdicts| BatchResult::Filter(verdicts.0)),
            ModuleKind::Map => call_typed::<MapReturn>(store, call, input, refs).await.map(BatchResult::Map),
            ModuleKind::FlatMap => call_typed::<FlatMapReturn>(store, call, input, refs).await.map(BatchResult::FlatMap),
            ModuleKind::Aggregate => Err(Failure {
                reason: FailureReason::Contract,
                detail: "aggregate modules are called through their windows (wasm::aggregate), not per batch".into(),
            }),
        };
        self.buffers = buffers;
        let result = result?;
        one_result_each("results", result.len(), batch.len())?;
        Ok(result)
    }
}

/// `call` is the instance's kind function and `R` the kind's `*Return` type, which `start`
/// checked.
#[allow(unsafe_code)]
async fn call_typed<R>(store: &mut Store<InstanceState>, call: Func, input: &str, batch: BatchRef<'_>) -> Result<R, Failure>
where
    (R,): wasmtime::component::ComponentNamedList + wasmtime::component::Lift + Send + Sync,
    R: 'static,
{
    // SAFETY: `start` type-checked `call` against exactly these parameter and result
    // types (`call_async` passes the kind's `R`), so skipping the check per call is sound; it
    // was a few percent of a call (docs/benchmarks.md).
    let func = unsafe { wasmtime::component::TypedFunc::<(&str, BatchRef<'_>), (R,)>::new_unchecked(call) };
    match func.call_async(&mut *store, (input, batch)).await {
        Ok((result,)) => Ok(result),
        Err(err) => Err(classify(store, err, "call")),
    }
}

/// Run a module call to its end on this thread: a module's or an aggregate's own thread, or
/// the command line; never on an async worker, where calls are awaited instead. WASI's host
/// calls find Tokio's timers and I/O through the runtime the thread has entered (or
/// wasmtime-wasi's own runtime when it has entered none).
pub fn finish<F: std::future::Future>(call: F) -> F::Output {
    wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| {
        // A call that neither yields nor waits on WASI is done at its first poll, with no
        // executor: Tokio's `block_on` added 116 ns to a 630 ns call (docs/benchmarks.md).
        let mut call = std::pin::pin!(call);
        match call.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
            std::task::Poll::Ready(done) => done,
            std::task::Poll::Pending => wasmtime_wasi::runtime::in_tokio(call),
        }
    })
}

/// Start the clock of a call: the module's deadline, and when to yield. The epoch ticks
/// until the returned guard is dropped.
pub(super) fn arm<'m>(store: &mut Store<InstanceState>, module: &'m LoadedModule, set_aside_after: Option<Duration>) -> Running<'m> {
    store.data_mut().clock = CallClock { started: Instant::now(), deadline: module.limits.deadline, set_aside_after };
    store.set_epoch_deadline(1);
    module.engine.ticker.call_started()
}

/// The clock of the call under way, looked at on every epoch tick (a few milliseconds): a
/// wall-clock deadline that stops the call, and a budget after which it yields once.
#[derive(Debug)]
pub(crate) struct CallClock {
    started: Instant,
    deadline: Duration,
    set_aside_after: Option<Duration>,
}

impl Default for CallClock {
    fn default() -> Self {
        CallClock { started: Instant::now(), deadline: Duration::MAX, set_aside_after: None }
    }
}

impl CallClock {
    /// When the call under way must stop (`None`: no call, or no deadline).
    pub(crate) fn deadline_at(&self) -> Option<Instant> {
        self.started.checked_add(self.deadline)
    }

    fn on_tick(&mut self) -> UpdateDeadline {
        let ran = self.started.elapsed();
        if ran >= self.deadline {
            UpdateDeadline::Interrupt
        } else if self.set_aside_after.is_some_and(|after| ran >= after) {
            self.set_aside_after = None;
            UpdateDeadline::Yield(1)
        } else {
            UpdateDeadline::Continue(1)
        }
    }
}

/// A module must answer once per message (or window) it was given.
pub(super) fn one_result_each(what: &str, got: usize, expected: usize) -> Result<(), Failure> {
    if got == expected {
        Ok(())
    } else {
        Err(Failure { reason: FailureReason::Contract, detail: format!("returned {got} {what} where {expected} were due (one per message or window)") })
    }
}

pub(super) fn contract(err: wasmtime::Error, what: &str) -> Failure {
    Failure { reason: FailureReason::Contract, detail: format!("`{what}` does not have the signature of weir:module@0.1: {err:#}") }
}

pub(super) fn classify(store: &Store<InstanceState>, err: wasmtime::Error, during: &str) -> Failure {
    let reason = if store.data().limits.hit {
        FailureReason::MemoryCap
    } else if matches!(err.downcast_ref::<wasmtime::Trap>(), Some(wasmtime::Trap::Interrupt)) {
        FailureReason::Deadline
    } else {
        FailureReason::Trap
    };
    let trap = err.downcast_ref::<wasmtime::Trap>().copied();
    let err = anyhow::Error::from(err);
    let root = err.root_cause().to_string();
    let root = root.lines().next().unwrap_or("unknown error").trim();
    let detail = match (reason, trap) {
        (FailureReason::Deadline, _) => format!("{during} ran past its deadline and was stopped"),
        (FailureReason::MemoryCap, _) => format!("{during}: {root}"),
        (_, Some(trap)) => format!("{during}: {trap} (a panic in the module prints its message to weir's log)"),
        (_, None) => format!("{during}: {root}"),
    };
    Failure { reason, detail }
}
