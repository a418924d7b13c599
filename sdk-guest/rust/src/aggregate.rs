//! Aggregates: the accumulator trait and the window bookkeeping every aggregate module shares.
//!
//! The host decides which window each message belongs to; this module keeps one accumulator
//! per open window, serialises it (JSON, via serde) when the host takes a snapshot, and turns
//! a closed window into its outputs.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::weir::module::types as wit;
use crate::message::{Message, Output, Result, raw_messages};
use crate::raw::RawBatch;

/// One key's window, as the host assigned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The value of the pipeline's key expression (empty without one).
    pub key: String,
    /// Milliseconds since the Unix epoch; start inclusive, end exclusive. Count windows:
    /// the times of their first and last message.
    pub start_ms: u64,
    pub end_ms: u64,
}

/// An accumulator: what one window of one key remembers.
///
/// `Default` is the empty window; serde is how its state survives a restart (keep it small:
/// it is written at every checkpoint).
pub trait Aggregate: Default + Serialize + DeserializeOwned {
    /// The module's `config` table from the pipeline; [`NoConfig`] if it has none.
    type Config: DeserializeOwned;
    /// Fold one message in. An `Err` sends that message to `$deadletter` with the reason.
    fn accumulate(&mut self, msg: &Message, config: &Self::Config) -> Result<()>;
    /// Fold another window of the same key in (session windows that meet).
    fn merge(&mut self, other: Self, config: &Self::Config);
    /// The window has ended: what it emits (nothing is fine).
    fn emit(self, window: &Window, config: &Self::Config) -> Result<Vec<Output>>;
}

/// The config of a module that takes none (any table is accepted and ignored).
#[derive(Debug, Default, serde::Deserialize)]
pub struct NoConfig {}

/// Window ids are distinct integers the host hands out: they are their own hash.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }
    fn write_u64(&mut self, id: u64) {
        // Spread sequential ids over the table's control bits (Fibonacci hashing).
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The open windows of one instance (used by `#[weir::aggregate]`).
#[doc(hidden)]
pub struct Windows<A: Aggregate> {
    config: Option<A::Config>,
    open: HashMap<u64, A, BuildHasherDefault<IdHasher>>,
}

impl<A: Aggregate> Default for Windows<A> {
    fn default() -> Self {
        Windows { config: None, open: HashMap::default() }
    }
}

impl<A: Aggregate> Windows<A> {
    pub fn init(&mut self) -> std::result::Result<(), String> {
        self.config = Some(crate::__private::load_config()?);
        Ok(())
    }

    fn config(&mut self) -> std::result::Result<&A::Config, String> {
        if self.config.is_none() {
            self.init()?;
        }
        self.config.as_ref().ok_or_else(|| "no config".to_owned())
    }

    pub fn open(&mut self, id: u64, snapshot: Option<Vec<u8>>) -> std::result::Result<(), String> {
        let state = match snapshot {
            None => A::default(),
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|err| format!("window {id}: the saved state does not fit this module's accumulator: {err}"))?
            }
        };
        self.open.insert(id, state);
        Ok(())
    }

    pub fn accumulate(&mut self, batch: &RawBatch, windows: &[u64]) -> Vec<std::result::Result<(), String>> {
        if let Err(reason) = self.config() {
            return windows.iter().map(|_| Err(reason.clone())).collect();
        }
        let Windows { config, open } = self;
        let Some(config) = config.as_ref() else { return Vec::new() };
        raw_messages(batch)
            .zip(windows)
            .map(|(message, id)| match open.get_mut(id) {
                Some(state) => state.accumulate(&message, config).map_err(crate::Error::into_reason),
                None => Err(format!("window {id} is not open")),
            })
            .collect()
    }

    pub fn merge(&mut self, target: u64, source: u64) -> std::result::Result<(), String> {
        let source = self.open.remove(&source).ok_or_else(|| format!("window {source} is not open"))?;
        let config = self.config.as_ref().ok_or_else(|| "no config".to_owned())?;
        self.open.get_mut(&target).ok_or_else(|| format!("window {target} is not open"))?.merge(source, config);
        Ok(())
    }

    pub fn snapshot(&self, ids: &[u64]) -> std::result::Result<Vec<Vec<u8>>, String> {
        ids.iter()
            .map(|id| {
                let state = self.open.get(id).ok_or_else(|| format!("window {id} is not open"))?;
                serde_json::to_vec(state).map_err(|err| format!("window {id}: cannot serialise the accumulator: {err}"))
            })
            .collect()
    }

    pub fn close(&mut self, windows: Vec<(u64, Window)>) -> std::result::Result<Vec<Vec<wit::OutputMessage>>, String> {
        self.config()?;
        let config = self.config.as_ref().ok_or_else(|| "no config".to_owned())?;
        windows
            .into_iter()
            .map(|(id, window)| {
                let state = self.open.remove(&id).unwrap_or_default();
                let outputs = state.emit(&window, config).map_err(crate::Error::into_reason)?;
                Ok(outputs.into_iter().map(Output::into_wit).collect())
            })
            .collect()
    }
}
