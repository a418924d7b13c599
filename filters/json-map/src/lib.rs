//! JSON map: reshapes a JSON object.
//!
//! Config (all optional):
//! - `rename = { old = "new" }`: rename top-level fields;
//! - `convert = { field = "celsius_to_fahrenheit" }`: unit conversions
//!   (`celsius_to_fahrenheit`, `fahrenheit_to_celsius`, `bar_to_psi`, `psi_to_bar`, `ms_to_s`);
//! - `add = { key = value }`: fields added to every message (constants from config);
//! - `keep = ["a", "b"]`: keep only these fields (after renaming);
//! - `topic = "alerts/{machine}"`: set the output topic from body fields.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use weir::{Error, Message, Output, Result};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    #[serde(default)]
    pub convert: BTreeMap<String, Conversion>,
    #[serde(default)]
    pub add: Map<String, Value>,
    #[serde(default)]
    pub keep: Option<Vec<String>>,
    #[serde(default)]
    pub topic: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conversion {
    CelsiusToFahrenheit,
    FahrenheitToCelsius,
    BarToPsi,
    PsiToBar,
    MsToS,
}

impl Conversion {
    fn apply(self, x: f64) -> f64 {
        match self {
            Conversion::CelsiusToFahrenheit => x * 9.0 / 5.0 + 32.0,
            Conversion::FahrenheitToCelsius => (x - 32.0) * 5.0 / 9.0,
            Conversion::BarToPsi => x * 14.503_773_8,
            Conversion::PsiToBar => x / 14.503_773_8,
            Conversion::MsToS => x / 1000.0,
        }
    }
}

#[weir::map]
pub fn reshape(msg: &Message, config: &Config) -> Result<Output> {
    let Value::Object(mut body) = msg.json::<Value>()? else {
        return Err(Error::msg("payload is JSON but not an object"));
    };
    for (old, new) in &config.rename {
        if let Some(value) = body.remove(old) {
            body.insert(new.clone(), value);
        }
    }
    for (field, conversion) in &config.convert {
        if let Some(value) = body.get_mut(field) {
            let x = value.as_f64().ok_or_else(|| Error::msg(format!("field `{field}` is not a number: {value}")))?;
            *value = Value::from(conversion.apply(x));
        }
    }
    if let Some(keep) = &config.keep {
        body.retain(|key, _| keep.contains(key));
    }
    for (key, value) in &config.add {
        body.insert(key.clone(), value.clone());
    }
    let topic = config.topic.as_deref().map(|template| fill(template, &body)).transpose()?;
    let mut output = Output::json(&body)?;
    output.topic = topic;
    Ok(output)
}

/// Replace `{field}` in `template` with the body's field values.
fn fill(template: &str, body: &Map<String, Value>) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').ok_or_else(|| Error::msg(format!("unclosed `{{` in topic template `{template}`")))? + start;
        let key = &rest[start + 1..end];
        match body.get(key) {
            Some(Value::String(s)) => out.push_str(s),
            Some(other) => out.push_str(&other.to_string()),
            None => return Err(Error::msg(format!("topic template needs field `{key}`, which the body lacks"))),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(output: &Output) -> Value {
        serde_json::from_slice(&output.payload).unwrap()
    }

    #[test]
    fn renames_converts_adds_and_sets_topic() {
        let config: Config = serde_json::from_value(serde_json::json!({
            "rename": {"temperature": "temp_f"},
            "convert": {"temp_f": "celsius_to_fahrenheit"},
            "add": {"site": "plant-7"},
            "topic": "alerts/{machine}"
        }))
        .unwrap();
        let out = reshape(&Message::for_test("t", r#"{"machine":"m1","temperature":100}"#), &config).unwrap();
        assert_eq!(body(&out), serde_json::json!({"machine":"m1","temp_f":212.0,"site":"plant-7"}));
        assert_eq!(out.topic.as_deref(), Some("alerts/m1"));
        assert_eq!(out.content_type.as_deref(), Some("application/json"));
    }

    #[test]
    fn keep_limits_fields_and_errors_are_reasons() {
        let config = Config { keep: Some(vec!["a".into()]), ..Config::default() };
        let out = reshape(&Message::for_test("t", r#"{"a":1,"b":2}"#), &config).unwrap();
        assert_eq!(body(&out), serde_json::json!({"a":1}));
        assert!(reshape(&Message::for_test("t", "[1]"), &config).is_err());
        let config = Config { topic: Some("x/{missing}".into()), ..Config::default() };
        let err = reshape(&Message::for_test("t", "{}"), &config).unwrap_err();
        assert!(err.to_string().contains("missing"));
    }
}
