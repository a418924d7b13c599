//! Threshold filter: keeps a reading when a numeric field is over a limit.
//!
//! Config: `field` (a dotted path into the JSON body, e.g. `temperature` or `sensors.t1`),
//! `limit` (number), and `inclusive` (keep readings equal to the limit; default false).
//! A payload that is not JSON, or lacks the field, is rejected with the reason, so it
//! lands in `$deadletter` instead of vanishing.

use serde::Deserialize;
use weir::{Message, Result};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub field: String,
    pub limit: f64,
    #[serde(default)]
    pub inclusive: bool,
}

#[weir::filter]
pub fn over_limit(msg: &Message, config: &Config) -> Result<bool> {
    let number = msg.number_at(&config.field)?;
    Ok(if config.inclusive { number >= config.limit } else { number > config.limit })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config { field: "temperature".into(), limit: 70.0, inclusive: false }
    }

    #[test]
    fn keeps_over_and_drops_under() {
        assert!(over_limit(&Message::for_test("t", r#"{"temperature": 71.5}"#), &config()).unwrap());
        assert!(!over_limit(&Message::for_test("t", r#"{"temperature": 70}"#), &config()).unwrap());
    }

    #[test]
    fn nested_fields_and_inclusive() {
        let config = Config { field: "s.t".into(), limit: 5.0, inclusive: true };
        assert!(over_limit(&Message::for_test("t", r#"{"s": {"t": 5}}"#), &config).unwrap());
    }

    #[test]
    fn rejects_non_json_and_missing_fields_with_reasons() {
        let err = over_limit(&Message::for_test("t", "not json"), &config()).unwrap_err();
        assert!(err.to_string().contains("not the JSON expected"), "{err}");
        let err = over_limit(&Message::for_test("t", r#"{"pressure": 1}"#), &config()).unwrap_err();
        assert_eq!(err.to_string(), "field `temperature` is missing");
    }
}
