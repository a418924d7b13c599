//! Host services imported by modules, and the per-instance store state.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

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
}

impl InstanceState {
    pub fn new(module: Arc<str>, config_json: Arc<str>, limits: MemoryCap) -> Self {
        // No preopened directories, no environment, no arguments, no network: a module gets
        // nothing from WASI that the pipeline does not grant. Its stderr is weir's, so a
        // panic message lands in the log next to the dead letters it caused.
        let wasi = WasiCtx::builder().inherit_stderr().allow_ip_name_lookup(false).allow_tcp(false).allow_udp(false).build();
        InstanceState { module, config_json, limits, clock: CallClock::default(), wasi, table: ResourceTable::new() }
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
