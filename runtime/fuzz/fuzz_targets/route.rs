//! The route parser and evaluator on arbitrary input: the first line is the route, the rest
//! the message payload. Nothing may panic: a bad route is an error, a strange payload is
//! undefined, a template that cannot be filled is a reason.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir::route::{self, RouteSink};
use weir_core::{Ack, Message, Metadata, Property};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (route_text, payload) = text.split_once('\n').unwrap_or((&text, "{\"t\": 1, \"a\": [1, \"x\"]}"));
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
