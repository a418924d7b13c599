//! Runs every case in `tests/route-cases/*.toml` (see the README there): routes parse and
//! match as Azure IoT Edge would, or fail with the expected error.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use bytes::Bytes;
use weir::route::{self, RouteSink};
use weir_core::{Ack, Message, Metadata, ModuleOutput, Property};

fn field<'a>(case: &'a toml::Table, key: &str) -> Option<&'a str> {
    case.get(key).and_then(|v| v.as_str())
}

#[test]
fn every_route_case_holds() {
    let dir = weir_tests::repo_root().join("tests/route-cases");
    let mut failures = Vec::new();
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let file: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let cases = file.get("case").and_then(|c| c.as_array()).cloned().unwrap_or_default();
        for (index, case) in cases.iter().enumerate() {
            count += 1;
            let case = case.as_table().unwrap();
            let name = format!("{}#{}", path.file_name().unwrap().to_string_lossy(), index + 1);
            let text = field(case, "route").unwrap();
            let expect = field(case, "expect").unwrap();
            let mut meta = Metadata::new("local".into(), field(case, "topic").unwrap_or("devices/d1/messages/events"));
            if let Some(properties) = case.get("properties").and_then(|p| p.as_table()) {
                let properties: BTreeMap<_, _> = properties.iter().collect();
                meta.properties = properties.into_iter().map(|(k, v)| Property::new(k.clone(), v.as_str().unwrap())).collect();
            }
            if let Some(origin) = field(case, "from_module") {
                let (module, output) = origin.split_once('/').unwrap_or((origin, "out"));
                meta.origin = Some(ModuleOutput { module: module.into(), output: output.into() });
            }
            let message = Message::new(Bytes::from(field(case, "payload").unwrap_or("").to_owned()), meta, Ack::none());
            let outcome = match route::parse(text) {
                Err(err) => format!("error: {}", err.message),
                Ok(parsed) => {
                    let matched = parsed.accepts(&message);
                    if let (true, Some(want), RouteSink::Topic(template)) = (matched, field(case, "topic_out"), &parsed.sink) {
                        let got = template.render(&message).unwrap_or_else(|e| e);
                        if got != want {
                            failures.push(format!("{name}: topic `{got}`, expected `{want}`"));
                        }
                    }
                    if matched { "matched".to_owned() } else { "not matched".to_owned() }
                }
            };
            let ok = match expect.strip_prefix("error: ") {
                Some(text) => outcome.starts_with("error: ") && outcome.contains(text),
                None => outcome == expect,
            };
            if !ok {
                let why = route::parse(text).map(|r| route::explain::explain(text, &r, &message).0).unwrap_or_default();
                failures.push(format!("{name}: `{text}` gave {outcome}, expected {expect}\n{why}"));
            }
        }
    }
    assert!(count >= 20, "only {count} cases found in {}", dir.display());
    assert!(failures.is_empty(), "{} of {count} cases failed:\n{}", failures.len(), failures.join("\n"));
}
