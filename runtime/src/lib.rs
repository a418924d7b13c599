//! weir: the host. Reads a pipeline, runs sources, modules, routes and sinks.
//!
//! - [`config`]: the pipeline TOML: types (which are also its JSON Schema), loading with
//!   errors that name file, line, column and key, and validation.
//! - [`route`]: the `FROM … WHERE … INTO` route language: parser, sources, sinks, templates.
//! - [`wasm`]: the wasm host: engine, modules, instances, host services.
//! - [`executor`]: runs a pipeline: source tasks, the router, module workers, sink workers,
//!   dead letters, acknowledgements back to the source, graceful drain.
//! - [`aggregate`]: windows for aggregate modules: assignment, the worker that runs them
//!   against the module, and checkpoints that let open windows survive a restart.
//! - [`queue`]: store-and-forward: the crash-safe on-disk queue in front of a sink.
//! - [`broker`]: the embedded MQTT broker used when a pipeline names none.
//! - [`samples`]: reading sample messages (JSON Lines) for `weir filter test`.
//! - [`telemetry`]: logging set-up and metric names.
//! - [`endpoints`]: `/metrics`, `/healthz`, `/readyz` over HTTP for operators.
//! - [`cli`]: the `weir` command line.

pub mod aggregate;
#[cfg(feature = "embedded-broker")]
pub mod broker;
pub mod cli;
pub mod config;
pub mod endpoints;
pub mod executor;
pub mod queue;
pub mod route;
pub mod samples;
pub mod telemetry;
pub mod wasm;
