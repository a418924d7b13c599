//! weir-sdk: write weir modules in Rust.
//!
//! ```ignore
//! use weir::{Message, Result};
//!
//! #[derive(serde::Deserialize)]
//! struct Config { field: String, limit: f64 }
//!
//! #[weir::filter]
//! fn over_limit(msg: &Message, config: &Config) -> Result<bool> {
//!     let reading: serde_json::Value = msg.json()?;
//!     Ok(reading[&config.field].as_f64().unwrap_or(f64::MIN) > config.limit)
//! }
//! ```
//!
//! - `#[weir::filter]`: `fn(&Message[, &Config]) -> Result<bool>`: keep (`true`) or drop.
//! - `#[weir::map]`: `fn(&Message[, &Config]) -> Result<Output>`: one in, one out.
//! - `#[weir::flat_map]`: `fn(&Message[, &Config]) -> Result<Vec<Output>>`: zero or more out.
//! - `#[weir::aggregate]` on a type that implements [`Aggregate`] (accumulate, merge, emit):
//!   the host runs the windows (see the pipeline's `window` table) and keeps one value of the
//!   type per open window.
//!
//! The optional second argument is the module's `config` table from the pipeline TOML,
//! deserialised once when the instance starts; a config that does not fit fails at start
//! (and in `weir check`), not at the first message. An `Err` for one message sends that
//! message to `$deadletter` with the error text as the reason; the batch goes on.
//!
//! Modules: [`log`] (logging through the host), [`metrics`], [`clock`], and the message
//! types [`Message`], [`Output`], [`Property`]; for aggregates [`Aggregate`], [`Window`].
//! Behind the macros: `raw` (a filter's call at the canonical ABI level: the batch read where
//! the host put it, verdicts written straight into the list the host reads).

mod bindings {
    wit_bindgen::generate!({
        world: "imports",
        path: "../wit",
        pub_export_macro: false,
        generate_all,
    });
}

mod aggregate;
mod json_path;
pub mod log;
mod message;
#[doc(hidden)]
pub mod raw;

pub use aggregate::{Aggregate, NoConfig, Window};
pub use message::{Error, Message, Output, Property, QoS, Result};
pub use weir_sdk_macros::{aggregate, filter, flat_map, map};

/// Host metrics for this module.
pub mod metrics {
    /// Add to the counter `weir_module_<name>`.
    pub fn counter_add(name: &str, value: u64) {
        crate::bindings::weir::module::metrics::counter_add(name, value);
    }
    /// Set the gauge `weir_module_<name>`.
    pub fn gauge_set(name: &str, value: f64) {
        crate::bindings::weir::module::metrics::gauge_set(name, value);
    }
}

/// The host's wall clock.
pub mod clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms() -> u64 {
        crate::bindings::weir::module::clock::now_ms()
    }
}

/// What the macros expand to; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::aggregate::Windows;
    pub use crate::bindings::weir::module::{clock, config, log, metrics, types};
    pub use crate::message::{messages, raw_messages};

    pub use serde_json;
    pub use wit_bindgen;

    /// Read and deserialise the module's config table (called from `init`).
    pub fn load_config<T: serde::de::DeserializeOwned>() -> Result<T, String> {
        let json = config::get();
        serde_json::from_str(&json).map_err(|err| format!("module config does not fit: {err} (config was {json})"))
    }
}
