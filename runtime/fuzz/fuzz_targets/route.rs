//! The route parser and evaluator on arbitrary input: the first line is the route, the rest
//! the message payload. Nothing may panic: a bad route is an error, a strange payload is
//! undefined, a template that cannot be filled is a reason. And the lazy body fields that
//! `$body.name` reads, and the one-member scan an aggregate's key uses, agree with
//! serde_json's whole tree of the payload.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir::route::{self, RouteSink};
use weir_core::{Ack, Message, Metadata, Property};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (route_text, payload) = text.split_once('\n').unwrap_or((&text, "{\"t\": 1, \"a\": [1, \"x\"]}"));
    let raw = data.iter().position(|b| *b == b'\n').map_or(&data[..0], |at| &data[at + 1..]);
    let lazy = Message::new(Bytes::copy_from_slice(raw), Metadata::new("fuzz".into(), "t"), Ack::none());
    // An aggregate key's one-member scan, on a message nothing has decoded yet.
    let key_scan = Message::new(Bytes::copy_from_slice(raw), Metadata::new("fuzz".into(), "t"), Ack::none());
    let tree: Option<serde_json::Value> = serde_json::from_slice(raw).ok();
    match &tree {
        Some(serde_json::Value::Object(map)) => {
            for (name, value) in map {
                assert_eq!(lazy.body_field(name), Some(value), "field {name}");
                match key_scan.body_plain_string(name) {
                    Some(found) => assert_eq!(Some(found), value.as_str(), "plain string {name}"),
                    None => assert!(value.as_str().is_none_or(|_| raw.contains(&b'\\')), "plain string {name} missed"),
                }
            }
        }
        _ => {
            assert_eq!(lazy.body_field("t"), None, "not an object");
            assert_eq!(key_scan.body_plain_string("t"), None, "not an object");
        }
    }
    let Ok(parsed) = route::parse(route_text) else { return };
    let mut meta = Metadata::new("fuzz".into(), "factory/m1/telemetry");
    meta.properties.push(Property::new("k", "v"));
    let message = Message::new(Bytes::copy_from_slice(payload.as_bytes()), meta, Ack::none());
    let _ = parsed.accepts(&message);
    if let RouteSink::Topic(template) = &parsed.sink {
        let _ = template.render(&message);
    }
    let (_explanation, _matched) = route::explain::explain(route_text, &parsed, &message);
});
