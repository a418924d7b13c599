//! The calls of `weir:module/aggregate`: open, accumulate, merge, snapshot and close, each
//! over a list of windows so that a window boundary over many keys is one call.

use wasmtime::Store;
use wasmtime::component::{ComponentExportIndex, ComponentType, Func, Instance, Lower, TypedFunc};
use weir_core::Message;

use super::abi::OutputMessage;
use super::host::InstanceState;
use super::instance::{AccumulateParams, AccumulateReturn, Failure, FailureReason, ModuleInstance, classify, contract, finish, one_result_each};

/// `weir:module/aggregate.window`, borrowed.
#[derive(ComponentType, Lower, Clone, Copy, Debug)]
#[component(record)]
pub struct WindowRef<'a> {
    pub id: u64,
    pub key: &'a str,
    #[component(name = "start-ms")]
    pub start_ms: u64,
    #[component(name = "end-ms")]
    pub end_ms: u64,
}

/// `weir:module/aggregate.opening`: a window to start, empty or from a snapshot.
#[derive(ComponentType, Lower, Clone, Copy, Debug)]
#[component(record)]
pub struct Opening<'a> {
    pub window: WindowRef<'a>,
    pub snapshot: Option<&'a [u8]>,
}

/// Where the aggregate functions are in a component.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AggregateExports {
    pub open: ComponentExportIndex,
    pub merge: ComponentExportIndex,
    pub snapshot: ComponentExportIndex,
    pub close: ComponentExportIndex,
}

/// The aggregate functions of one instance (`accumulate` is the instance's `call`).
pub(crate) struct AggregateFuncs {
    open: Func,
    merge: Func,
    snapshot: Func,
    close: Func,
}

impl AggregateExports {
    pub(crate) fn funcs(&self, instance: &Instance, store: &mut Store<InstanceState>) -> Result<AggregateFuncs, Failure> {
        let mut get = |index: ComponentExportIndex, name: &str| {
            instance
                .get_func(&mut *store, index)
                .ok_or_else(|| Failure { reason: FailureReason::Contract, detail: format!("aggregate `{name}` is not a function") })
        };
        Ok(AggregateFuncs {
            open: get(self.open, "open")?,
            merge: get(self.merge, "merge")?,
            snapshot: get(self.snapshot, "snapshot")?,
            close: get(self.close, "close")?,
        })
    }
}

impl ModuleInstance {
    fn aggregate_funcs(&self) -> Result<&AggregateFuncs, Failure> {
        self.aggregate.as_ref().ok_or_else(|| Failure { reason: FailureReason::Contract, detail: format!("module `{}` is not an aggregate", self.module.name) })
    }

    /// Call `func` with `params`; a module `err` is a contract failure of the whole call.
    fn call_aggregate<P, R>(&mut self, func: Func, name: &str, params: P) -> Result<R, Failure>
    where
        P: wasmtime::component::ComponentNamedList + wasmtime::component::Lower,
        (Result<R, String>,): wasmtime::component::ComponentNamedList + wasmtime::component::Lift,
        R: 'static,
    {
        let _running = super::instance::arm(&mut self.store, &self.module, None);
        let typed = func.typed::<P, (Result<R, String>,)>(&self.store).map_err(|err| contract(err, &format!("aggregate.{name}")))?;
        match finish(typed.call_async(&mut self.store, params)) {
            Ok((Ok(result),)) => Ok(result),
            Ok((Err(message),)) => Err(Failure { reason: FailureReason::Contract, detail: format!("{name} returned an error: {message}") }),
            Err(err) => Err(classify(&self.store, err, name)),
        }
    }

    /// Start windows, each empty or from a snapshot.
    pub fn open_windows(&mut self, windows: &[Opening<'_>]) -> Result<(), Failure> {
        let func = self.aggregate_funcs()?.open;
        self.call_aggregate(func, "open", (windows,))
    }

    /// Fold `batch[i]` into window `windows[i]`; one result per message.
    pub fn accumulate(&mut self, batch: &[Message], windows: &[u64]) -> Result<Vec<Result<(), String>>, Failure> {
        self.aggregate_funcs()?;
        let _running = super::instance::arm(&mut self.store, &self.module, None);
        // SAFETY: `aggregate_funcs` above made sure this is an aggregate instance, whose
        // `call` (its `accumulate`) `start` type-checked against exactly these types.
        #[allow(unsafe_code)]
        let func = unsafe { TypedFunc::<AccumulateParams<'_>, (AccumulateReturn,)>::new_unchecked(self.call) };
        let mut buffers = std::mem::take(&mut self.buffers);
        let called = finish(func.call_async(&mut self.store, (buffers.fill(batch), windows)));
        self.buffers = buffers;
        let results = match called {
            Ok((results,)) => results,
            Err(err) => return Err(classify(&self.store, err, "accumulate")),
        };
        one_result_each("accumulate results", results.len(), batch.len())?;
        Ok(results)
    }

    /// Fold window `source` into `target`.
    pub fn merge_windows(&mut self, target: u64, source: u64) -> Result<(), Failure> {
        let func = self.aggregate_funcs()?.merge;
        self.call_aggregate(func, "merge", (target, source))
    }

    /// Each window's state as bytes `open` takes back.
    pub fn snapshot_windows(&mut self, windows: &[u64]) -> Result<Vec<Vec<u8>>, Failure> {
        let func = self.aggregate_funcs()?.snapshot;
        let states: Vec<Vec<u8>> = self.call_aggregate(func, "snapshot", (windows,))?;
        if states.len() != windows.len() {
            return Err(Failure {
                reason: FailureReason::Contract,
                detail: format!("snapshot returned {} states for {} windows", states.len(), windows.len()),
            });
        }
        Ok(states)
    }

    /// End windows; what each emits, in order.
    pub fn close_windows(&mut self, windows: &[WindowRef<'_>]) -> Result<Vec<Vec<OutputMessage>>, Failure> {
        let func = self.aggregate_funcs()?.close;
        let outputs: Vec<Vec<OutputMessage>> = self.call_aggregate(func, "close", (windows,))?;
        one_result_each("close results", outputs.len(), windows.len())?;
        Ok(outputs)
    }
}
