//! A JSON object's top-level fields, located in one validating pass that builds nothing
//! but the list of where each name and value is; a value is decoded the first time
//! something asks for it. This is what makes `$body.temperature` cheap: no tree of the
//! whole body is built. [`plain_string_field`] is the same pass keeping only one member (an
//! aggregate's key, read once per message).
//!
//! The scanner accepts exactly what `serde_json::from_slice` accepts (RFC 8259, UTF-8,
//! nesting at most 128 deep, nothing but whitespace after the value); a property test
//! checks it against serde_json.

use std::ops::Range;
use std::sync::OnceLock;

/// serde_json's recursion limit: deeper documents are errors there, so here too.
const MAX_DEPTH: usize = 128;

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
        std::str::from_utf8(payload).ok()?;
        let mut scanner = Scanner { bytes: payload, at: 0 };
        scanner.whitespace();
        let mut record = Record::All(Vec::with_capacity(16));
        scanner.object(1, &mut record)?;
        scanner.whitespace();
        match record {
            Record::All(fields) if scanner.at == payload.len() => Some(BodyFields(fields)),
            _ => None,
        }
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
    let text = std::str::from_utf8(payload).ok()?;
    let mut scanner = Scanner { bytes: payload, at: 0 };
    scanner.whitespace();
    let mut record = Record::One { name, value: None };
    scanner.object(1, &mut record)?;
    scanner.whitespace();
    let Record::One { value: Some(value), .. } = record else { return None };
    let quoted = text.get(value).filter(|_| scanner.at == payload.len())?;
    quoted.strip_prefix('"')?.strip_suffix('"').filter(|inner| !inner.contains('\\'))
}

/// What a scan of an object keeps of its members.
enum Record<'n> {
    /// Nothing (nested objects).
    Nothing,
    /// Every member.
    All(Vec<BodyField>),
    /// Where the value of the last member called `name` is.
    One { name: &'n str, value: Option<Range<usize>> },
}

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    #[inline]
    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek() == Some(byte)).then(|| self.at += 1)
    }

    #[inline]
    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' if depth + 1 >= MAX_DEPTH => None,
            b'{' => self.object(depth + 1, &mut Record::Nothing),
            b'[' => self.array(depth + 1),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// An object whose members' values are at `depth`; what is kept of its members is
    /// `record`'s choice (something at the top level, nothing below).
    fn object(&mut self, depth: usize, record: &mut Record<'_>) -> Option<()> {
        self.eat(b'{')?;
        self.whitespace();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            self.whitespace();
            let name_start = self.at + 1;
            let escaped = self.string()?;
            let name = name_start..self.at - 1;
            self.whitespace();
            self.eat(b':')?;
            self.whitespace();
            let start = self.at;
            self.value(depth)?;
            // The quotes are around `name`: serde_json unescapes it.
            let unescaped = |name: &Range<usize>| serde_json::from_slice::<String>(&self.bytes[name.start - 1..name.end + 1]).ok();
            match record {
                Record::Nothing => {}
                Record::All(fields) => {
                    let name = if escaped { Err(unescaped(&name)?.into_boxed_str()) } else { Ok(name) };
                    fields.push(BodyField { name, value: start..self.at, decoded: OnceLock::new() });
                }
                Record::One { name: wanted, value } => {
                    let matches = if escaped { unescaped(&name)? == *wanted } else { &self.bytes[name] == wanted.as_bytes() };
                    if matches {
                        *value = Some(start..self.at);
                    }
                }
            }
            self.whitespace();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => return self.eat(b'}'),
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        self.eat(b'[')?;
        self.whitespace();
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            self.whitespace();
            self.value(depth)?;
            self.whitespace();
            match self.peek()? {
                b',' => self.at += 1,
                b']' => return self.eat(b']'),
                _ => return None,
            }
        }
    }

    #[inline]
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.bytes[self.at..].starts_with(word).then(|| self.at += word.len())
    }

    /// A string; returns whether it has escapes (its contents are between the quotes, the
    /// last of them just before where the scan stops). Small, so that it comes back in a
    /// register: a returned range went through memory and stalled the caller.
    #[inline]
    fn string(&mut self) -> Option<bool> {
        self.eat(b'"')?;
        let mut escaped = false;
        loop {
            // Ordinary characters in one sweep; what ends it is looked at below.
            self.at += self.bytes.get(self.at..)?.iter().position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)?;
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.at += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    }
                }
                0x00..=0x1f => return None,
                _ => self.at += 1,
            }
        }
    }

    /// `uXXXX` after a backslash; a high surrogate must be followed by `\uXXXX` low one,
    /// as serde_json requires.
    fn unicode_escape(&mut self) -> Option<()> {
        let first = self.hex4()?;
        if (0xDC00..=0xDFFF).contains(&first) {
            return None;
        }
        if (0xD800..=0xDBFF).contains(&first) {
            self.eat(b'\\')?;
            let second = self.hex4()?;
            if !(0xDC00..=0xDFFF).contains(&second) {
                return None;
            }
        }
        Some(())
    }

    fn hex4(&mut self) -> Option<u16> {
        self.eat(b'u')?;
        let digits = self.bytes.get(self.at..self.at + 4)?;
        let text = std::str::from_utf8(digits).ok()?;
        let value = u16::from_str_radix(text, 16).ok()?;
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        self.at += 4;
        Some(value)
    }

    #[inline]
    fn digits(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        self.at - start
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, and finite as an f64 (serde_json
    /// refuses `1e400`).
    #[inline]
    fn number(&mut self) -> Option<()> {
        let start = self.at;
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat(b'.').is_some() && self.digits() == 0 {
            return None;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
            return self.finite(start);
        }
        if self.at - start > 300 { self.finite(start) } else { Some(()) }
    }

    fn finite(&self, start: usize) -> Option<()> {
        let text = std::str::from_utf8(&self.bytes[start..self.at]).ok()?;
        text.parse::<f64>().ok().filter(|n| n.is_finite()).map(drop)
    }
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
        // Every one-byte change of a varied document, and every cut of it.
        let base = br#"{"t":71.5,"s":"a\"b\u00e9","n":null,"l":[1,-2e3,{"k":true}],"o":{"p":false}}"#;
        let alphabet = b"{}[]\":,.-+eE0123456789tfnul\\ \x01x";
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
