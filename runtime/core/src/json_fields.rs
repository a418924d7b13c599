//! A JSON object's top-level fields, located in one validating pass that builds nothing
//! but the list of where each name and value is; a value is decoded the first time
//! something asks for it. This is what makes `$body.temperature` cheap: no tree of the
//! whole body is built. [`plain_string_field`] is the same pass keeping only one member (an
//! aggregate's key, read once per message).
//!
//! The scan is `weir_json_scan`'s (shared with the guest SDK), which accepts exactly what
//! `serde_json::from_slice` accepts; the tests below check the index and the one-member
//! read built on it against serde_json.

use std::ops::Range;
use std::sync::OnceLock;

#[derive(Debug)]
pub(crate) struct BodyFields(Vec<BodyField>);

#[derive(Debug)]
struct BodyField {
    /// Where the name is (between its quotes), or the name itself when it had escapes.
    name: Result<Range<usize>, Box<str>>,
    value: Range<usize>,
    decoded: OnceLock<Option<serde_json::Value>>,
}

impl BodyFields {
    /// Index `payload` if it is a valid JSON object.
    pub(crate) fn index(payload: &[u8]) -> Option<BodyFields> {
        let mut fields = Vec::with_capacity(16);
        weir_json_scan::object_members(payload, |name, escaped, value| {
            let name = if escaped { Err(unescaped(payload, name)?.into_boxed_str()) } else { Ok(name) };
            fields.push(BodyField { name, value, decoded: OnceLock::new() });
            Some(())
        })?;
        Some(BodyFields(fields))
    }

    /// The field's decoded value (with duplicate names the last counts, as in a tree).
    pub(crate) fn get<'a>(&'a self, payload: &[u8], name: &str) -> Option<&'a serde_json::Value> {
        let field = self.0.iter().rev().find(|field| match &field.name {
            Ok(range) => &payload[range.clone()] == name.as_bytes(),
            Err(owned) => &**owned == name,
        })?;
        field.decoded.get_or_init(|| serde_json::from_slice(&payload[field.value.clone()]).ok()).as_ref()
    }
}

/// A top-level member of the JSON object `payload` whose value is a string without escapes,
/// borrowed from the payload: one validating pass that builds and decodes nothing else.
/// `None` if the payload is not a valid JSON object, has no such member, or its value is
/// anything else (with duplicate names the last counts, as in a tree).
pub(crate) fn plain_string_field<'p>(payload: &'p [u8], name: &str) -> Option<&'p str> {
    let mut found = None;
    weir_json_scan::object_members(payload, |member, escaped, value| {
        let matches = if escaped { unescaped(payload, member)? == name } else { &payload[member] == name.as_bytes() };
        if matches {
            found = Some(value);
        }
        Some(())
    })?;
    // Valid UTF-8: the scan checked every string.
    let quoted = std::str::from_utf8(&payload[found?]).ok()?;
    quoted.strip_prefix('"')?.strip_suffix('"').filter(|inner| !inner.contains('\\'))
}

/// A member name with escapes, unescaped (`name` is between its quotes).
fn unescaped(payload: &[u8], name: Range<usize>) -> Option<String> {
    serde_json::from_slice::<String>(&payload[name.start - 1..name.end + 1]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agrees(text: &[u8]) {
        let serde = serde_json::from_slice::<serde_json::Value>(text).ok();
        let is_object = serde.as_ref().is_some_and(serde_json::Value::is_object);
        let index = BodyFields::index(text);
        // One plain string field: what the tree says, or nothing when escapes are involved.
        for name in ["a", "s", "t", "x", "y", "dup", "esc\"aped", "k"] {
            let tree = serde.as_ref().filter(|value| value.is_object()).and_then(|value| value.get(name)).and_then(serde_json::Value::as_str);
            match plain_string_field(text, name) {
                Some(found) => assert_eq!(Some(found), tree, "{name} in {:?}", String::from_utf8_lossy(text)),
                None => assert!(tree.is_none() || text.contains(&b'\\'), "{name} in {:?}", String::from_utf8_lossy(text)),
            }
        }
        assert_eq!(index.is_some(), is_object, "validity of {:?}", String::from_utf8_lossy(text));
        if let (Some(index), Some(serde_json::Value::Object(map))) = (index, serde) {
            for (name, value) in &map {
                assert_eq!(index.get(text, name), Some(value), "{name} in {:?}", String::from_utf8_lossy(text));
            }
        }
    }

    #[test]
    fn accepts_and_refuses_what_serde_json_does() {
        let cases: &[&[u8]] = &[
            br#"{"a":1,"b":[true,false,null],"c":{"d":"e"},"f":-0.5e+3}"#,
            b" { \"x\" : \"\\u00e9\\n\" , \"y\":\"\\ud83d\\ude00\" } ",
            br#"{"esc\"aped":1,"dup":1,"dup":2}"#,
            br#"{"s":"plain","dup":"first","dup":"last","x":"a\"b","y":5,"esc\"aped":"v"}"#,
            b"{}",
            b"[1,2]",
            b"42",
            b"{\"a\":01}",
            b"{\"a\":1.}",
            b"{\"a\":.5}",
            b"{\"a\":1e}",
            b"{\"a\":\"\\ud800\"}",
            b"{\"a\":\"\\udc00\"}",
            b"{\"a\":\"\\x\"}",
            b"{\"a\":\"tab\there\"}",
            b"{\"a\":tru}",
            b"{\"a\":1,}",
            b"{\"a\" 1}",
            b"{\"a\":1} x",
            b"{\"a\":\"\xff\"}",
            "{\"caf\u{e9}\":\"\u{20ac} \u{1f600} long enough to be swept\",\"s\":\"\u{e9}t\u{e9}\"}".as_bytes(),
            b"{\"a\":\"\xc0\x80\"}",
            b"{\"a\":\"\xed\xa0\x80\"}",
            b"{\"a\":\"\xe2\x82\"}",
            b"{\"a\":\"\xe2\x82",
            b"{\"a\":\"\xf5\x80\x80\x80\"}",
            b"{\"a\":1\xc3\xa9}",
            b"{\"s\":\"abcdefgh\xe2\x82\xacijklmnop\"}",
            b"{\"a\":[1,]}",
            b"{\"a\":{\"b\":}}",
            b"{\"a\":\"\\u12G4\"}",
            b"{\"a\":-}",
            b"{\"a\":1",
            b"{\"a\":1e400}",
            b"{\"a\":-1e400}",
            b"{\"a\":1e-400}",
            b"{\"a\":12345678901234567890123456789}",
        ];
        for case in cases {
            agrees(case);
        }
        let deep = |n: usize| format!("{{\"a\":{}{}}}", "[".repeat(n), "]".repeat(n));
        for n in 125..=128 {
            agrees(deep(n).as_bytes());
        }
        agrees(format!("{{\"a\":1{}}}", "0".repeat(400)).as_bytes());
    }

    #[test]
    fn agrees_with_serde_json_on_mutated_documents() {
        // Every one-byte change of a varied document (UTF-8 lead and continuation bytes
        // among them), and every cut of it.
        let base = r#"{"t":71.5,"s":"a\"b\u00e9","n":null,"l":[1,-2e3,{"k":true}],"o":{"p":false},"u":"é€"}"#.as_bytes();
        let alphabet = b"{}[]\":,.-+eE0123456789tfnul\\ \x01x\x80\xc3\xe2";
        for at in 0..base.len() {
            agrees(&base[..at]);
            for &byte in alphabet {
                let mut changed = base.to_vec();
                changed[at] = byte;
                agrees(&changed);
            }
        }
    }
}
