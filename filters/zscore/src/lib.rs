//! Rolling z-score anomaly detector: emits a message only when a reading is far from the
//! readings before it in the window.
//!
//! Meant for sliding windows (`window = { kind = "sliding", size = "1m", key = "$body.machine" }`):
//! at every message the host opens a window over the last `size` of that key, accumulating
//! the earlier readings first and the new one last; this module keeps the mean and variance
//! of the earlier ones (Welford's method) and, when the window closes, emits the newest reading
//! if its z-score is beyond `threshold`.
//!
//! Config: `field` (dotted path of the reading), `threshold` (default 3.0), `min_count`
//! (readings needed before judging, default 10).

use serde::{Deserialize, Serialize};
use weir::{Aggregate, Message, Output, Result, Window};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub field: String,
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    #[serde(default = "default_min_count")]
    pub min_count: u64,
}

fn default_threshold() -> f64 {
    3.0
}

fn default_min_count() -> u64 {
    10
}

/// The history (count, mean, sum of squared deviations) and the newest reading.
#[weir::aggregate]
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rolling {
    pub count: u64,
    pub mean: f64,
    pub m2: f64,
    pub newest: Option<f64>,
}

impl Rolling {
    fn push(&mut self, value: f64) {
        self.count += 1;
        let delta = value - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (value - self.mean);
    }

    fn stddev(&self) -> f64 {
        if self.count < 2 { 0.0 } else { (self.m2 / (self.count - 1) as f64).sqrt() }
    }
}

impl Aggregate for Rolling {
    type Config = Config;

    fn accumulate(&mut self, msg: &Message, config: &Config) -> Result<()> {
        let value = msg.number_at(&config.field)?;
        if let Some(previous) = self.newest.replace(value) {
            self.push(previous);
        }
        Ok(())
    }

    /// Chan et al.'s parallel combination of the two histories; the newer reading stays newest.
    fn merge(&mut self, other: Self, _config: &Config) {
        if let Some(newest) = other.newest
            && let Some(previous) = self.newest.replace(newest)
        {
            self.push(previous);
        }
        if other.count == 0 {
            return;
        }
        let count = self.count + other.count;
        let delta = other.mean - self.mean;
        self.mean += delta * other.count as f64 / count as f64;
        self.m2 += other.m2 + delta * delta * (self.count as f64 * other.count as f64) / count as f64;
        self.count = count;
    }

    fn emit(self, window: &Window, config: &Config) -> Result<Vec<Output>> {
        let (Some(value), std) = (self.newest, self.stddev()) else { return Ok(Vec::new()) };
        if self.count < config.min_count || std == 0.0 {
            return Ok(Vec::new());
        }
        let z = (value - self.mean) / std;
        if z.abs() <= config.threshold {
            return Ok(Vec::new());
        }
        let anomaly = serde_json::json!({
            "key": window.key,
            "field": config.field,
            "value": value,
            "mean": self.mean,
            "stddev": std,
            "z": z,
            "time": window.end_ms.saturating_sub(1),
        });
        Ok(vec![Output::json(&anomaly)?.to_output("anomalies")])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config { field: "t".into(), threshold: 3.0, min_count: 5 }
    }

    fn window_over(values: &[f64]) -> Rolling {
        let mut rolling = Rolling::default();
        for value in values {
            rolling.accumulate(&Message::for_test("x", &format!(r#"{{"t": {value}}}"#)), &config()).unwrap();
        }
        rolling
    }

    fn window() -> Window {
        Window { key: "m1".into(), start_ms: 0, end_ms: 1_001 }
    }

    #[test]
    fn a_spike_is_an_anomaly_and_normal_readings_are_not() {
        let normal = [20.0, 21.0, 19.5, 20.5, 20.0, 19.8, 20.2];
        let mut spiked = normal.to_vec();
        spiked.push(35.0);
        let out = window_over(&spiked).emit(&window(), &config()).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].output.as_deref(), Some("anomalies"));
        let json: serde_json::Value = serde_json::from_slice(&out[0].payload).unwrap();
        assert!(json["z"].as_f64().unwrap() > 3.0, "{json}");
        let mut calm = normal.to_vec();
        calm.push(20.3);
        assert!(window_over(&calm).emit(&window(), &config()).unwrap().is_empty());
    }

    #[test]
    fn too_little_history_judges_nothing() {
        assert!(window_over(&[20.0, 20.1, 90.0]).emit(&window(), &config()).unwrap().is_empty());
    }

    #[test]
    fn merge_equals_one_pass() {
        let (first, second) = ([1.0, 2.0, 3.0, 4.0], [10.0, 11.0, 12.0]);
        let mut merged = window_over(&first);
        merged.merge(window_over(&second), &config());
        let all = window_over(&[1.0, 2.0, 3.0, 4.0, 10.0, 11.0, 12.0]);
        assert_eq!(merged.count, all.count);
        assert_eq!(merged.newest, all.newest);
        assert!((merged.mean - all.mean).abs() < 1e-9 && (merged.m2 - all.m2).abs() < 1e-9, "{merged:?} vs {all:?}");
    }
}
