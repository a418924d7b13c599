//! Chaos aggregate: a window collects the `id` of each of its messages, and its result lists
//! them, so a test can account for every message (counted once, twice, or not at all). A
//! message with `"trap": true` makes `accumulate` trap (a panic), as a buggy module would; one
//! with `"trap_close": true` makes its window's `emit` trap.
//!
//! Emits `{"key": "m1", "ids": [3, 4, 7], "window_start": …, "window_end": …}` per window
//! that saw a message.

use serde::{Deserialize, Serialize};
use weir::{Aggregate, Message, Output, Result, Window};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// One reading as this module reads it.
#[derive(Debug, Deserialize)]
struct Reading {
    id: u64,
    #[serde(default)]
    trap: bool,
    #[serde(default)]
    trap_close: bool,
}

#[weir::aggregate]
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ids {
    pub ids: Vec<u64>,
    /// A message asked for this window's `emit` to trap.
    #[serde(default)]
    pub trap_close: bool,
}

impl Aggregate for Ids {
    type Config = Config;

    fn accumulate(&mut self, msg: &Message, _config: &Config) -> Result<()> {
        let reading: Reading = msg.json()?;
        if reading.trap {
            panic!("chaos-aggregate: asked to trap on id {}", reading.id);
        }
        self.ids.push(reading.id);
        self.trap_close |= reading.trap_close;
        Ok(())
    }

    fn merge(&mut self, other: Self, _config: &Config) {
        self.ids.extend(other.ids);
        self.trap_close |= other.trap_close;
    }

    fn emit(self, window: &Window, _config: &Config) -> Result<Vec<Output>> {
        if self.trap_close {
            panic!("chaos-aggregate: asked to trap closing window {} of {}", window.start_ms, window.key);
        }
        if self.ids.is_empty() {
            return Ok(Vec::new());
        }
        let result = serde_json::json!({ "key": window.key, "ids": self.ids, "window_start": window.start_ms, "window_end": window.end_ms });
        Ok(vec![Output::json(&result)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_ids_and_merges() {
        let config = Config {};
        let mut ids = Ids::default();
        ids.accumulate(&Message::for_test("t", br#"{"id": 3}"#), &config).unwrap();
        ids.accumulate(&Message::for_test("t", br#"{"id": 4, "trap": false}"#), &config).unwrap();
        ids.merge(Ids { ids: vec![9], trap_close: false }, &config);
        assert_eq!(ids.ids, vec![3, 4, 9]);
        assert!(ids.accumulate(&Message::for_test("t", b"not json"), &config).is_err());
    }
}
