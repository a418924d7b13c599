//! The wasm host: runs modules written against `sdk-guest/wit/weir.wit`.
//!
//! - [`engine`]: the one [`WasmEngine`] (component model, pooling allocator, epoch
//!   interruption, on-disk cache of compiled modules).
//! - [`ticker`]: the thread that advances the engine's epoch while calls run, and sleeps
//!   while none does.
//! - [`module`]: [`LoadedModule`], a compiled component with its `InstancePre`, the kind
//!   it exports, and its limits.
//! - [`instance`]: [`ModuleInstance`], one live instance: calls a batch under a deadline and
//!   a memory cap, and classifies failures so the caller can dead-letter and recycle. Calls
//!   are async (each on a fiber): awaited where a module is called inline, where a call that
//!   outlives a budget yields once so that it can be finished elsewhere; run to the end on
//!   the calling thread with [`finish`] everywhere else.
//! - [`aggregate`]: the calls of an aggregate module (open, accumulate, merge, snapshot,
//!   close), each taking a list of windows.
//! - [`abi`]: the records that cross the boundary, borrowed on the way in so a payload is
//!   copied once, straight into guest memory.
//! - [`host`]: the host services a module imports (log, metrics, clock, config) and the
//!   WASI context, which grants nothing by default.

pub mod abi;
pub mod aggregate;
pub mod engine;
mod host;
pub mod instance;
pub mod module;
pub mod ticker;

pub use engine::{EngineSettings, WasmEngine};
pub use instance::{BatchResult, Failure, FailureReason, ModuleInstance, finish};
pub use module::{LoadedModule, ModuleKind, ModuleLimits};
