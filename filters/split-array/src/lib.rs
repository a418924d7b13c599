//! Split array: a gateway often batches readings into one JSON array; this flat-map sends
//! each element on as its own message. Elements that are objects with a `kind` field go to
//! the output of that name when `route_by_kind = true`; everything else to "out".
//! Config: `field` (optional: the array is this field of an object body), `route_by_kind`.

use serde::Deserialize;
use serde_json::Value;
use weir::{Error, Message, Output, Result};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default)]
    pub route_by_kind: bool,
}

#[weir::flat_map]
pub fn split(msg: &Message, config: &Config) -> Result<Vec<Output>> {
    let body: Value = msg.json()?;
    let array = match &config.field {
        Some(field) => body.get(field).ok_or_else(|| Error::msg(format!("field `{field}` is missing")))?,
        None => &body,
    };
    let Value::Array(items) = array else {
        return Err(Error::msg("expected a JSON array"));
    };
    items
        .iter()
        .map(|item| {
            let output = Output::json(item)?;
            Ok(match item.get("kind").and_then(Value::as_str) {
                Some(kind) if config.route_by_kind => output.to_output(kind),
                _ => output,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_per_element() {
        let out = split(&Message::for_test("t", "[1, {\"a\": 2}, \"x\"]"), &Config::default()).unwrap();
        let payloads: Vec<_> = out.iter().map(|o| String::from_utf8(o.payload.clone()).unwrap()).collect();
        assert_eq!(payloads, ["1", "{\"a\":2}", "\"x\""]);
    }

    #[test]
    fn routes_by_kind_and_reads_a_field() {
        let config = Config { field: Some("r".into()), route_by_kind: true };
        let out = split(&Message::for_test("t", r#"{"r":[{"kind":"alarm"},{"v":1}]}"#), &config).unwrap();
        assert_eq!(out[0].output.as_deref(), Some("alarm"));
        assert_eq!(out[1].output, None);
        assert!(split(&Message::for_test("t", "{}"), &Config::default()).is_err());
        assert!(split(&Message::for_test("t", "[]"), &Config::default()).unwrap().is_empty());
    }
}
