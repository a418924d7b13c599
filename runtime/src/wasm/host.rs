//! Host services imported by modules, and the per-instance store state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::StoreContextMut;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{HostMonotonicClock, WasiCtx, WasiCtxView, WasiView};

use super::instance::CallClock;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../sdk-guest/wit",
        world: "imports",
    });
}

use bindings::weir::module::{clock, config, log, metrics, types};

/// What each store holds: the module's identity, its config, its limits and its (empty) WASI context.
pub struct InstanceState {
    pub module: Arc<str>,
    pub config_json: Arc<str>,
    pub limits: MemoryCap,
    /// The clock of the call under way, looked at on every epoch tick.
    pub(super) clock: CallClock,
    wasi: WasiCtx,
    table: ResourceTable,
    /// Time 0 of the module's monotonic clock.
    origin: Instant,
}

/// The module's `wasi:clocks/monotonic-clock`: nanoseconds since its instance started.
struct Monotonic(Instant);

impl HostMonotonicClock for Monotonic {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// What `wasi:clocks/monotonic-clock` a module's sleep waits on: its time, but never past the
/// call's deadline.
struct Sleep(tokio::time::Instant);

#[wasmtime_wasi::async_trait]
impl Pollable for Sleep {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.0).await;
    }
}

/// The interface whose subscriptions [`cut_sleeps_at_the_deadline`] replaces, as
/// wasmtime-wasi 48 provides it (guests importing an older 0.2 version are linked to it).
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// A module that sleeps (`std::thread::sleep`, `time.sleep`, `setTimeout` in a loop) waits in
/// a host call, and epoch interruption stops wasm code, not host calls: a 60 s sleep held the
/// instance, and its thread, for 60 s whatever the module's deadline. So a sleep ends at the
/// call's deadline at the latest; the module wakes, and the next epoch tick stops it there
/// (dead-lettered with reason `deadline`).
fn cut_sleeps_at_the_deadline(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap("subscribe-duration", |mut store: StoreContextMut<'_, InstanceState>, (nanos,): (u64,)| {
        let state = store.data_mut();
        let until = Instant::now().checked_add(Duration::from_nanos(nanos));
        state.sleep_until(until)
    })?;
    clock.func_wrap("subscribe-instant", |mut store: StoreContextMut<'_, InstanceState>, (when,): (u64,)| {
        let state = store.data_mut();
        let until = state.origin.checked_add(Duration::from_nanos(when));
        state.sleep_until(until)
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

impl InstanceState {
    /// A pollable that is ready at `until` (`None`: never), or at the call's deadline if that
    /// comes first.
    fn sleep_until(&mut self, until: Option<Instant>) -> wasmtime::Result<(Resource<DynPollable>,)> {
        let deadline = self.clock.deadline_at();
        let until = match (until, deadline) {
            (Some(until), Some(deadline)) => until.min(deadline),
            (until, deadline) => until.or(deadline).unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365)),
        };
        let sleep = self.table.push(Sleep(tokio::time::Instant::from_std(until)))?;
        Ok((subscribe(&mut self.table, sleep)?,))
    }
}

impl InstanceState {
    pub fn new(module: Arc<str>, config_json: Arc<str>, limits: MemoryCap) -> Self {
        // No preopened directories, no environment, no arguments, no network: a module gets
        // nothing from WASI that the pipeline does not grant. Its stderr is weir's, so a
        // panic message lands in the log next to the dead letters it caused.
        let origin = Instant::now();
        let wasi = WasiCtx::builder().inherit_stderr().allow_ip_name_lookup(false).allow_tcp(false).allow_udp(false).monotonic_clock(Monotonic(origin)).build();
        InstanceState { module, config_json, limits, clock: CallClock::default(), wasi, table: ResourceTable::new(), origin }
    }
}

/// The per-instance memory cap. Unlike a plain `StoreLimits` it remembers that the cap was
/// hit, so a failure can be reported as "memory cap" rather than as an anonymous trap.
#[derive(Debug)]
pub struct MemoryCap {
    pub max_bytes: usize,
    pub hit: bool,
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            wasmtime::bail!("memory cap of {} bytes reached (growing from {current} to {desired} bytes)", self.max_bytes);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Add WASI (p2, granting nothing, async like every call) and weir's host services to a linker.
pub fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    cut_sleeps_at_the_deadline(linker)?;
    bindings::Imports::add_to_linker::<_, HasSelf<_>>(linker, |state| state)?;
    Ok(())
}

impl types::Host for InstanceState {}

impl log::Host for InstanceState {
    fn log(&mut self, level: log::Level, message: String) {
        let module = &*self.module;
        let message = one_line(&message);
        match level {
            log::Level::Trace => tracing::trace!(module, "{message}"),
            log::Level::Debug => tracing::debug!(module, "{message}"),
            log::Level::Info => tracing::info!(module, "{message}"),
            log::Level::Warn => tracing::warn!(module, "{message}"),
            log::Level::Error => tracing::error!(module, "{message}"),
        }
    }
}

/// The longest log line a module may write, in bytes; the rest is cut.
pub const MAX_LOG_LINE: usize = 4096;

/// A module's log message as one line of at most [`MAX_LOG_LINE`] bytes: line breaks are
/// escaped, so a module cannot forge log lines of weir's, nor fill the log with one call.
fn one_line(message: &str) -> String {
    let mut line = String::with_capacity(message.len().min(MAX_LOG_LINE) + 32);
    for (at, c) in message.char_indices() {
        if line.len() >= MAX_LOG_LINE {
            line.push_str(&format!("… ({} bytes more)", message.len() - at));
            break;
        }
        match c {
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            c => line.push(c),
        }
    }
    line
}

impl metrics::Host for InstanceState {
    fn counter_add(&mut self, name: String, value: u64) {
        crate::telemetry::module_counter(&self.module, &name, value);
    }

    fn gauge_set(&mut self, name: String, value: f64) {
        crate::telemetry::module_gauge(&self.module, &name, value);
    }
}

impl clock::Host for InstanceState {
    fn now_ms(&mut self) -> u64 {
        weir_core::message::now_ms()
    }
}

impl config::Host for InstanceState {
    fn get(&mut self) -> String {
        self.config_json.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_LOG_LINE, one_line};

    #[test]
    fn a_module_log_line_stays_one_bounded_line() {
        assert_eq!(one_line("a\nb\r\nc"), "a\\nb\\r\\nc");
        let long = one_line(&"x".repeat(MAX_LOG_LINE * 3));
        assert!(long.starts_with(&"x".repeat(MAX_LOG_LINE)) && long.ends_with(&format!("({} bytes more)", MAX_LOG_LINE * 2)), "{}", &long[MAX_LOG_LINE - 10..]);
    }
}
