//! One value out of a JSON payload, found without building the rest of the tree.
//!
//! [`Message::number_at`](crate::Message::number_at) used to parse the whole body into a
//! `serde_json::Value` (a map with an owned string for every name, a node for every value)
//! to read one number: that was most of what the threshold filter and the averages
//! aggregate cost per message. Two ways here, both checking the whole payload as JSON (a
//! payload `from_slice` rejects is rejected too) and both letting the last of duplicate
//! names count, as in a `Value`:
//! - [`locate`]: the host's own scanner (`weir_json_scan`) says where the value is, and
//!   [`number`] reads it. This is the usual way: with it the threshold filter's whole call
//!   per message takes half the time it took with the next (docs/benchmarks.md).
//! - [`value_at`]: serde_json's parser walks the payload, comparing names where they lie and
//!   skipping every value off the path. Used when `locate` cannot tell (names with escapes,
//!   a payload that is not an object) and to word what is wrong in serde_json's terms.

use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Where the value at `path` is, by the host's validating scan (`weir_json_scan`), which
/// is several times quicker than serde_json's walk below: `Some(Some(range))` found,
/// `Some(None)` the path leads nowhere. `None` when this quick way cannot tell (a payload
/// that is not a JSON object, or member names with escapes): [`value_at`] answers then,
/// with serde_json's words for what is wrong.
pub(crate) fn locate(payload: &[u8], path: &str) -> Option<Option<Range<usize>>> {
    let (name, rest) = match path.split_once('.') {
        Some((name, rest)) => (name, Some(rest)),
        None => (path, None),
    };
    let (mut found, mut escapes) = (None, false);
    weir_json_scan::object_members(payload, |member, escaped, value| {
        escapes |= escaped;
        // With duplicate names the last one counts, as in a tree.
        if &payload[member] == name.as_bytes() {
            found = Some(value);
        }
        Some(())
    })?;
    if escapes {
        return None;
    }
    match (found, rest) {
        (None, _) => Some(None),
        (Some(value), None) => Some(Some(value)),
        // A step into something that is not an object leads nowhere.
        (Some(value), Some(_)) if payload[value.start] != b'{' => Some(None),
        (Some(value), Some(rest)) => {
            let inner = locate(&payload[value.clone()], rest)?;
            Some(inner.map(|range| value.start + range.start..value.start + range.end))
        }
    }
}

/// A JSON number (already checked by the scan) as serde_json reads it into an `f64`:
/// integers through `u64` / `i64` (`-0` is -0.0), the rest parsed as decimals, correctly
/// rounded (serde_json without `float_roundtrip` is sometimes a unit or two in the last
/// place off: long mantissas, large exponents). `None` if `text` is not a
/// number.
pub(crate) fn number(text: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(text).ok()?;
    if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return None;
    }
    if text.bytes().skip(1).all(|b| b.is_ascii_digit()) {
        if let Ok(n) = text.parse::<u64>() {
            return Some(n as f64);
        }
        if let Ok(n) = text.parse::<i64>() {
            // serde_json reads `-0` as the float -0.0.
            return Some(if n == 0 { -0.0 } else { n as f64 });
        }
    }
    text.parse::<f64>().ok()
}

/// The value at `path` (names separated by dots) of the JSON document `payload`; `Ok(None)`
/// if the path leads nowhere (a missing name, or a step into something that is not an object).
pub(crate) fn value_at(payload: &[u8], path: &str) -> Result<Option<serde_json::Value>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(payload);
    let found = Walk { path }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(found)
}

/// The rest of the path to follow from here.
struct Walk<'p> {
    path: &'p str,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = Option<serde_json::Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = Option<serde_json::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (name, rest) = match self.path.split_once('.') {
            Some((name, rest)) => (name, Some(rest)),
            None => (self.path, None),
        };
        let mut found = None;
        while let Some(on_path) = map.next_key_seed(NameIs(name))? {
            if !on_path {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            found = match rest {
                Some(path) => map.next_value_seed(Walk { path })?,
                None => Some(map.next_value()?),
            };
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Whether an object's member name is the one on the path (compared without copying it).
struct NameIs<'p>(&'p str);

impl<'de> DeserializeSeed<'de> for NameIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a member name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<bool, E> {
        Ok(name == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::{locate, number, value_at};

    /// What the whole-tree lookup answers (the behaviour this must keep).
    fn by_tree(payload: &str, path: &str) -> Result<Option<serde_json::Value>, String> {
        let body: serde_json::Value = serde_json::from_str(payload).map_err(|err| err.to_string())?;
        Ok(path.split('.').try_fold(&body, |node, key| node.get(key)).cloned())
    }

    #[test]
    fn agrees_with_the_whole_tree() {
        let payloads = [
            r#"{"temperature": 71.5, "machine": "m1"}"#,
            r#"{"sensors": {"t1": 3, "t2": [1, {"t1": 9}]}, "t1": 4}"#,
            r#"{"a": 1, "a": 2}"#,
            r#"{"a": {"b": 1}, "a": {"c": 2}}"#,
            r#"{"a\u0062": 5, "x": "y\"z"}"#,
            r#"{"a": [1, 2, {"b": 3}], "b": null, "c": true, "d": -1e3}"#,
            r#"[1, 2, 3]"#,
            r#"5"#,
            r#""text""#,
            r#"{}"#,
            r#"{"a": 1"#,
            r#"{"a": 1} x"#,
            r#"{"a": tru}"#,
            r#"{"a": 1,}"#,
            "",
            "  {\"a\" :\n 2 }  ",
        ];
        let paths = ["temperature", "machine", "sensors.t1", "sensors.t2", "t1", "a", "a.b", "a.c", "ab", "b", "c", "d", "x", "", "a.b.c"];
        for payload in payloads {
            for path in paths {
                let expected = by_tree(payload, path);
                let got = value_at(payload.as_bytes(), path).map_err(|err| err.to_string());
                assert_eq!(got, expected, "payload {payload:?}, path {path:?}");
                // The quick way agrees wherever it answers.
                if let Some(found) = locate(payload.as_bytes(), path) {
                    let found = found.map(|range| serde_json::from_slice::<serde_json::Value>(&payload.as_bytes()[range]).expect("a value"));
                    assert_eq!(Ok(found), expected, "located in {payload:?}, path {path:?}");
                }
            }
        }
    }

    #[test]
    fn numbers_read_as_serde_json_reads_them() {
        let numbers = [
            "0",
            "-0",
            "7",
            "-7",
            "71.5",
            "1.01",
            "0.1",
            "-2.5E-3",
            "1e3",
            "1E+300",
            "3.141592653589793238462643383279",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "123456789012345678901234567890",
            "9007199254740993",
            "2.2250738585072014e-308",
            "4.9e-324",
        ];
        for text in numbers {
            let tree: serde_json::Value = serde_json::from_str(text).expect("a number");
            let expected = tree.as_f64().expect("a number");
            let got = number(text.as_bytes()).expect("read");
            assert_eq!(got.to_bits(), expected.to_bits(), "{text}: {got} against serde_json's {expected}");
            let payload = format!(r#"{{"n": {text}}}"#);
            let message = crate::Message::for_test("t", &payload);
            assert_eq!(message.number_at("n").map(f64::to_bits).ok(), Some(expected.to_bits()), "{payload}");
        }
        // And many more, made up: up to 25 digits, a point anywhere, exponents of ±330; the
        // ones above are read to the same bits.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |below: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % below
        };
        for _ in 0..20_000 {
            let digits: String = (0..1 + next(25)).map(|_| char::from(b'0' + next(10) as u8)).collect();
            let digits = digits.trim_start_matches('0');
            let digits = if digits.is_empty() { "0" } else { digits };
            let point = next(digits.len() as u64 + 1) as usize;
            let mut text = if next(2) == 0 { String::new() } else { "-".to_owned() };
            text.push_str(&digits[..point.max(1)]);
            if point.max(1) < digits.len() {
                text.push('.');
                text.push_str(&digits[point.max(1)..]);
            }
            if next(3) == 0 {
                text.push_str(&format!("e{}", next(661) as i64 - 330));
            }
            let Ok(tree) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            let expected = tree.as_f64().expect("a number").to_bits();
            let got = number(text.as_bytes()).expect("read").to_bits();
            // serde_json (without its `float_roundtrip` feature) is sometimes a unit or two in
            // the last place off the correctly rounded value, which is what this reads.
            assert!(got.abs_diff(expected) <= 4, "{text}: {got} against {expected}");
        }
        for not_a_number in [r#""5""#, "true", "null", "[1]", r#"{"a":1}"#] {
            assert_eq!(number(not_a_number.as_bytes()), None, "{not_a_number}");
        }
    }

    #[test]
    fn number_at_words_every_failure_as_before() {
        let reason = |payload: &str, path: &str| crate::Message::for_test("t", payload).number_at(path).map_err(|err| err.to_string());
        assert_eq!(reason(r#"{"a": 1"#, "a"), Err("payload is not the JSON expected: EOF while parsing an object at line 1 column 7".to_owned()));
        assert_eq!(reason(r#"{"a": "x"}"#, "a"), Err(r#"field `a` is not a number: "x""#.to_owned()));
        assert_eq!(reason(r#"{"a": {"b": 2}}"#, "a.c"), Err("field `a.c` is missing".to_owned()));
        assert_eq!(reason(r#"{"a": 3}"#, "a.b"), Err("field `a.b` is missing".to_owned()));
        assert_eq!(reason("[1]", "a"), Err("field `a` is missing".to_owned()));
        assert_eq!(reason(r#"{"a\u0062": 5}"#, "ab"), Ok(5.0));
        assert_eq!(reason(r#"{"a": {"b": 2}, "a": {"b": 4}}"#, "a.b"), Ok(4.0));
    }
}
