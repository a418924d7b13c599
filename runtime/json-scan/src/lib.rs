//! A validating JSON scanner that decodes nothing: it checks that a payload is exactly one
//! JSON object and says where each top-level member's name and value are. Shared by the
//! host (`$body.name` in routes and aggregate keys, `weir-core`'s `json_fields`) and the
//! guest SDK (`Message::number_at`), so that both read the same payloads the same way.
//!
//! It accepts exactly what `serde_json::from_slice` accepts: RFC 8259, UTF-8 (checked inside
//! strings: outside them any byte that is not ASCII is an error anyway), nesting at most 128
//! deep, numbers that are finite as an `f64`, nothing but whitespace after the value. The
//! tests of `weir-core`'s `json_fields` and of the SDK's `json_path` compare it with
//! serde_json, and the route fuzz target does so on fuzzed payloads.
//!
//! Positions go in and out by value so that they stay in registers: each function takes
//! where to start and returns where it stopped (`None`: not JSON). No recursion below the
//! top level: nested containers are tracked in a bit stack.

use std::ops::Range;

/// serde_json's recursion limit: deeper documents are errors there, so here too.
const MAX_DEPTH: usize = 128;

/// Check that `bytes` is exactly one JSON object and call `member` with each of its
/// top-level members in order: where its name is (between the quotes), whether the name
/// has escapes, and where its value is. `member` returning `None` stops the scan.
#[inline(always)]
pub fn object_members(bytes: &[u8], mut member: impl FnMut(Range<usize>, bool, Range<usize>) -> Option<()>) -> Option<()> {
    let mut at = whitespace(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at = whitespace(bytes, at + 1);
    if bytes.get(at) == Some(&b'}') {
        return (whitespace(bytes, at + 1) == bytes.len()).then_some(());
    }
    loop {
        if bytes.get(at) != Some(&b'"') {
            return None;
        }
        let (end, escaped) = string(bytes, at + 1)?;
        let name = at + 1..end - 1;
        at = whitespace(bytes, end);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        let start = whitespace(bytes, at + 1);
        at = value(bytes, start)?;
        member(name, escaped, start..at)?;
        at = whitespace(bytes, at);
        match bytes.get(at) {
            Some(b',') => at = whitespace(bytes, at + 1),
            Some(b'}') => return (whitespace(bytes, at + 1) == bytes.len()).then_some(()),
            _ => return None,
        }
    }
}

#[inline(always)]
fn whitespace(bytes: &[u8], mut at: usize) -> usize {
    // Compact JSON has none: one comparison says so.
    if bytes.get(at).is_some_and(|&byte| byte > b' ') {
        return at;
    }
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(at) {
        at += 1;
    }
    at
}

/// A value of a top-level member.
#[inline(always)]
fn value(bytes: &[u8], at: usize) -> Option<usize> {
    match *bytes.get(at)? {
        b'"' => string(bytes, at + 1).map(|(end, _)| end),
        b'-' | b'0'..=b'9' => number(bytes, at),
        b'{' | b'[' => nested(bytes, at),
        _ => literal(bytes, at),
    }
}

/// An object or array below the top level, scanned without recursion: which of the two
/// each open level is sits in a bit stack.
#[inline(never)]
fn nested(bytes: &[u8], mut at: usize) -> Option<usize> {
    // Bit i: level i (counted from the innermost) is an object.
    let mut objects: u128 = 0;
    let mut open = 0usize;
    loop {
        // `at` is where a value starts.
        let mut ended = match *bytes.get(at)? {
            byte @ (b'{' | b'[') => {
                // serde_json's limit counts the top-level object too.
                if open + 2 >= MAX_DEPTH {
                    return None;
                }
                at = whitespace(bytes, at + 1);
                match (bytes.get(at), byte) {
                    // Empty: a value like any other.
                    (Some(b'}'), b'{') | (Some(b']'), b'[') => {
                        at += 1;
                        true
                    }
                    _ => {
                        open += 1;
                        objects = objects << 1 | u128::from(byte == b'{');
                        if byte == b'{' {
                            at = member_name(bytes, at)?;
                        }
                        false
                    }
                }
            }
            b'"' => {
                at = string(bytes, at + 1)?.0;
                true
            }
            b'-' | b'0'..=b'9' => {
                at = number(bytes, at)?;
                true
            }
            _ => {
                at = literal(bytes, at)?;
                true
            }
        };
        // After a value: the next one in the same container, or the container's end.
        while ended {
            if open == 0 {
                return Some(at);
            }
            at = whitespace(bytes, at);
            let in_object = objects & 1 == 1;
            match (bytes.get(at)?, in_object) {
                (b',', true) => {
                    at = member_name(bytes, whitespace(bytes, at + 1))?;
                    ended = false;
                }
                (b',', false) => {
                    at = whitespace(bytes, at + 1);
                    ended = false;
                }
                (b'}', true) | (b']', false) => {
                    at += 1;
                    open -= 1;
                    objects >>= 1;
                }
                _ => return None,
            }
        }
    }
}

/// `"name" :` inside a nested object; returns where its value starts.
fn member_name(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let (end, _) = string(bytes, at + 1)?;
    let at = whitespace(bytes, end);
    (bytes.get(at) == Some(&b':')).then(|| whitespace(bytes, at + 1))
}

#[inline(always)]
fn literal(bytes: &[u8], at: usize) -> Option<usize> {
    let word: &[u8] = match bytes.get(at)? {
        b't' => b"true",
        b'f' => b"false",
        b'n' => b"null",
        _ => return None,
    };
    bytes[at..].starts_with(word).then_some(at + word.len())
}

/// The rest of a string whose opening quote is just before `at`: where it ends (after the
/// closing quote) and whether it has escapes.
#[inline(always)]
fn string(bytes: &[u8], mut at: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    loop {
        // Ordinary characters eight at a time; what ends the sweep is looked at below.
        while let Some(chunk) = bytes.get(at..at + 8) {
            let special = special_bytes(u64::from_le_bytes(chunk.try_into().ok()?));
            if special != 0 {
                at += special.trailing_zeros() as usize / 8;
                break;
            }
            at += 8;
        }
        match *bytes.get(at)? {
            b'"' => return Some((at + 1, escaped)),
            b'\\' => {
                escaped = true;
                at = escape(bytes, at + 1)?;
            }
            0x00..=0x1f => return None,
            0x80.. => at = utf8_char(bytes, at)?,
            _ => at += 1,
        }
    }
}

/// A UTF-8 encoded character that is not ASCII (outside strings, such bytes are not JSON
/// at all, so this is all the UTF-8 checking a payload needs); returns where it ends.
#[cold]
fn utf8_char(bytes: &[u8], at: usize) -> Option<usize> {
    let width = match bytes[at] {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    std::str::from_utf8(bytes.get(at..at + width)?).ok().map(|_| at + width)
}

/// The high bit of each byte of `word` that is a quote, a backslash, a control character or
/// part of a character that is not ASCII.
/// Bytes above the first such one may be flagged wrongly (a borrow carries over); the first
/// is always right, and only the first is used.
#[inline(always)]
fn special_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    control | (word & HIGH) | zero_byte(word ^ (ONES * u64::from(b'"'))) | zero_byte(word ^ (ONES * u64::from(b'\\')))
}

/// An escape after its backslash; returns where it ends.
fn escape(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(at + 1),
        b'u' => unicode_escape(bytes, at),
        _ => None,
    }
}

/// `uXXXX` after a backslash; a high surrogate must be followed by a `\uXXXX` low one, as
/// serde_json requires.
fn unicode_escape(bytes: &[u8], at: usize) -> Option<usize> {
    let first = hex4(bytes, at)?;
    if (0xDC00..=0xDFFF).contains(&first) {
        return None;
    }
    if !(0xD800..=0xDBFF).contains(&first) {
        return Some(at + 5);
    }
    if bytes.get(at + 5) != Some(&b'\\') {
        return None;
    }
    let second = hex4(bytes, at + 6)?;
    (0xDC00..=0xDFFF).contains(&second).then_some(at + 11)
}

/// The value of `uXXXX` at `at`.
fn hex4(bytes: &[u8], at: usize) -> Option<u16> {
    if bytes.get(at) != Some(&b'u') {
        return None;
    }
    let digits = bytes.get(at + 1..at + 5)?;
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

#[inline(always)]
fn digits(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b'0'..=b'9') = bytes.get(at) {
        at += 1;
    }
    at
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, and finite as an f64 (serde_json
/// refuses `1e400`).
#[inline(always)]
fn number(bytes: &[u8], start: usize) -> Option<usize> {
    let mut at = start + usize::from(bytes[start] == b'-');
    at = match bytes.get(at)? {
        b'0' => at + 1,
        b'1'..=b'9' => digits(bytes, at + 1),
        _ => return None,
    };
    if bytes.get(at) == Some(&b'.') {
        let end = digits(bytes, at + 1);
        if end == at + 1 {
            return None;
        }
        at = end;
    }
    if let Some(b'e' | b'E') = bytes.get(at) {
        at += 1;
        if let Some(b'+' | b'-') = bytes.get(at) {
            at += 1;
        }
        let end = digits(bytes, at);
        if end == at {
            return None;
        }
        return finite(bytes, start, end);
    }
    if at - start > 300 { finite(bytes, start, at) } else { Some(at) }
}

#[cold]
fn finite(bytes: &[u8], start: usize, end: usize) -> Option<usize> {
    let text = std::str::from_utf8(&bytes[start..end]).ok()?;
    text.parse::<f64>().ok().filter(|n| n.is_finite()).map(|_| end)
}
