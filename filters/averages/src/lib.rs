//! Averages: count, average, minimum and maximum of a numeric field per key per window.
//!
//! Config: `field`, a dotted path into the JSON body (`temperature`, `sensors.t1`). A message
//! without the field, or not JSON, is rejected with the reason and lands in `$deadletter`.
//! Emits one JSON object per window that saw at least one reading:
//! `{"key": "m1", "field": "temperature", "count": 10, "avg": 71.2, "min": 65.0, "max": 80.5,
//!   "window_start": 1700000000000, "window_end": 1700000010000}`.

use serde::{Deserialize, Serialize};
use weir::{Aggregate, Message, Output, Result, Window};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub field: String,
}

#[weir::aggregate]
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    fn add(&mut self, count: u64, sum: f64, min: f64, max: f64) {
        if count == 0 {
            return;
        }
        if self.count == 0 {
            (self.min, self.max) = (min, max);
        } else {
            self.min = self.min.min(min);
            self.max = self.max.max(max);
        }
        self.count += count;
        self.sum += sum;
    }
}

impl Aggregate for Stats {
    type Config = Config;

    fn accumulate(&mut self, msg: &Message, config: &Config) -> Result<()> {
        let value = msg.number_at(&config.field)?;
        self.add(1, value, value, value);
        Ok(())
    }

    fn merge(&mut self, other: Self, _config: &Config) {
        self.add(other.count, other.sum, other.min, other.max);
    }

    fn emit(self, window: &Window, config: &Config) -> Result<Vec<Output>> {
        if self.count == 0 {
            return Ok(Vec::new());
        }
        let summary = serde_json::json!({
            "key": window.key,
            "field": config.field,
            "count": self.count,
            "avg": self.sum / self.count as f64,
            "min": self.min,
            "max": self.max,
            "window_start": window.start_ms,
            "window_end": window.end_ms,
        });
        Ok(vec![Output::json(&summary)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config { field: "temperature".into() }
    }

    fn reading(value: f64) -> String {
        format!(r#"{{"machine": "m1", "temperature": {value}}}"#)
    }

    #[test]
    fn averages_and_extremes() {
        let mut stats = Stats::default();
        for value in [70.0, 80.0, 75.0] {
            stats.accumulate(&Message::for_test("t", &reading(value)), &config()).unwrap();
        }
        assert_eq!(stats, Stats { count: 3, sum: 225.0, min: 70.0, max: 80.0 });
        let window = Window { key: "m1".into(), start_ms: 0, end_ms: 10_000 };
        let out = stats.emit(&window, &config()).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out[0].payload).unwrap();
        assert_eq!(json["avg"], 75.0);
        assert_eq!(json["key"], "m1");
    }

    #[test]
    fn merging_an_empty_window_changes_nothing_and_merging_fills_extremes() {
        let mut a = Stats { count: 2, sum: 10.0, min: 4.0, max: 6.0 };
        a.merge(Stats::default(), &config());
        assert_eq!(a, Stats { count: 2, sum: 10.0, min: 4.0, max: 6.0 });
        let mut empty = Stats::default();
        empty.merge(Stats { count: 1, sum: -3.0, min: -3.0, max: -3.0 }, &config());
        assert_eq!(empty, Stats { count: 1, sum: -3.0, min: -3.0, max: -3.0 });
    }

    #[test]
    fn an_empty_window_emits_nothing_and_bad_readings_are_rejected() {
        assert!(Stats::default().emit(&Window { key: String::new(), start_ms: 0, end_ms: 1 }, &config()).unwrap().is_empty());
        let err = Stats::default().accumulate(&Message::for_test("t", r#"{"pressure": 1}"#), &config()).unwrap_err();
        assert_eq!(err.to_string(), "field `temperature` is missing");
    }
}
