//! One value out of a JSON payload, found without building the rest of the tree.
//!
//! [`Message::number_at`](crate::Message::number_at) used to parse the whole body into a
//! `serde_json::Value` (a map with an owned string for every name, a node for every value)
//! to read one number: that was most of what the threshold filter and the averages
//! aggregate cost per message. Here serde_json's parser walks the payload once: names are
//! compared where they lie, every value off the path is skipped (still checked as JSON,
//! so a payload `from_slice` rejects is rejected here too), and only the value at the end
//! of the path is decoded. With duplicate names the last one counts, as in a `Value`.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

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
    use super::value_at;

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
            }
        }
    }
}
