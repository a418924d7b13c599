//! The example modules through the real wasm host: each kind, the limits, and the same
//! threshold cases for the Rust module and its non-Rust twin.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use weir::wasm::{BatchResult, EngineSettings, FailureReason, LoadedModule, ModuleInstance, ModuleKind, ModuleLimits, WasmEngine};
use weir_core::{Ack, Message, Metadata};
use weir_tests::module;

fn engine() -> WasmEngine {
    // Shared across tests and runs: the Python module takes ~30 s to compile once.
    let cache = weir_tests::repo_root().join("target/weir-test-module-cache");
    WasmEngine::new(&EngineSettings { cache_dir: Some(cache), max_memory_bytes: 64 << 20, max_instances: 8, tick: Duration::from_millis(5) }).unwrap()
}

fn load(engine: &WasmEngine, path: &Path, config: serde_json::Value, limits: ModuleLimits) -> LoadedModule {
    LoadedModule::load(engine, "test", path, None, config.to_string(), limits).unwrap()
}

fn messages(payloads: &[&str]) -> Vec<Message> {
    payloads.iter().map(|p| Message::new(Bytes::copy_from_slice(p.as_bytes()), Metadata::new("test".into(), "t/1"), Ack::none())).collect()
}

/// The threshold contract every implementation must meet, whatever its language.
fn threshold_cases(path: &Path) {
    let engine = engine();
    let module = load(&engine, path, serde_json::json!({ "field": "temperature", "limit": 70.0 }), ModuleLimits::default());
    assert_eq!(module.kind, ModuleKind::Filter);
    let mut instance = ModuleInstance::start(&module).unwrap();
    let batch = messages(&[
        r#"{"temperature": 71.5}"#,
        r#"{"temperature": 70}"#,
        r#"{"temperature": -3}"#,
        r#"{"s": {"t": 1}}"#,
        "not json",
        r#"{"temperature": "hot"}"#,
    ]);
    let BatchResult::Filter(results) = instance.call("in", &batch).unwrap() else { panic!("not a filter result") };
    assert_eq!(results[0], Ok(true));
    assert_eq!(results[1], Ok(false));
    assert_eq!(results[2], Ok(false));
    assert!(results[3].as_ref().unwrap_err().contains("missing"), "{:?}", results[3]);
    assert!(results[4].as_ref().unwrap_err().contains("JSON"), "{:?}", results[4]);
    assert!(results[5].as_ref().unwrap_err().contains("not a number"), "{:?}", results[5]);
    // A nested field and an inclusive limit.
    let module = load(&engine, path, serde_json::json!({ "field": "s.t", "limit": 5, "inclusive": true }), ModuleLimits::default());
    let mut instance = ModuleInstance::start(&module).unwrap();
    let BatchResult::Filter(results) = instance.call("in", &messages(&[r#"{"s": {"t": 5}}"#, r#"{"s": {"t": 4.9}}"#])).unwrap() else { panic!() };
    assert_eq!(results, vec![Ok(true), Ok(false)]);
    // A config that does not fit fails at start, with the reason.
    let module = load(&engine, path, serde_json::json!({ "field": "t" }), ModuleLimits::default());
    let failure = ModuleInstance::start(&module).unwrap_err();
    assert_eq!(failure.reason, FailureReason::Init);
    assert!(failure.detail.contains("limit"), "{failure}");
}

#[test]
fn rust_threshold_filter() {
    threshold_cases(&module("threshold"));
}

#[test]
fn python_threshold_filter_passes_the_same_cases() {
    threshold_cases(&module("python_threshold"));
}

/// A filter reads each message's metadata where the host laid it out (weir-sdk's `raw`
/// view): every field must come through exactly, for every message of a batch.
#[test]
fn a_filter_sees_every_piece_of_metadata() {
    let engine = engine();
    let module = load(&engine, &module("chaos"), serde_json::json!({}), ModuleLimits::default());
    let mut instance = ModuleInstance::start(&module).unwrap();
    let source: std::sync::Arc<str> = "plant".into();
    let full = |i: u32| {
        let mut meta = Metadata::new(source.clone(), format!("factory/m{i}/telemetry"));
        meta.properties = vec![weir_core::Property::new("site", format!("s{i}")), weir_core::Property::new("site", "again")];
        meta.content_type = Some("application/json".into());
        meta.correlation_data = Some(Bytes::from(format!("corr-{i}")));
        meta.response_topic = Some(format!("replies/{i}"));
        meta.expiry_secs = Some(600 + i);
        meta.qos = weir_core::QoS::ExactlyOnce;
        meta.retain = true;
        meta.ingest_time_ms = 1_700_000_000_123 + u64::from(i);
        Message::new(Bytes::from_static(b"describe"), meta, Ack::none())
    };
    let bare = Message::new(Bytes::from_static(b"describe"), Metadata::new("other".into(), ""), Ack::none());
    let batch = vec![full(1), bare, full(2)];
    let BatchResult::Filter(results) = instance.call("in", &batch).unwrap() else { panic!("not a filter result") };
    let expected = |i: u32| {
        format!(
            "topic=factory/m{i}/telemetry properties=[site=s{i},site=again] content-type=Some(\"application/json\") correlation=Some(\"corr-{i}\") \
             response-topic=Some(\"replies/{i}\") expiry=Some({}) qos=2 retain=true ingest={} source=plant",
            600 + i,
            1_700_000_000_123 + u64::from(i)
        )
    };
    let bare_ingest = batch[1].meta().ingest_time_ms;
    assert_eq!(results[0], Err(expected(1)));
    assert_eq!(
        results[1],
        Err(format!(
            "topic= properties=[] content-type=None correlation=None response-topic=None expiry=None qos=0 retain=false ingest={bare_ingest} source=other"
        ))
    );
    assert_eq!(results[2], Err(expected(2)));
}

#[test]
fn map_and_flat_map() {
    let engine = engine();
    let map = load(&engine, &module("json_map"), serde_json::json!({ "rename": { "t": "temp" }, "topic": "alerts/{m}" }), ModuleLimits::default());
    let mut instance = ModuleInstance::start(&map).unwrap();
    let BatchResult::Map(results) = instance.call("in", &messages(&[r#"{"m": "a", "t": 1}"#, "[]"])).unwrap() else { panic!() };
    let first = results[0].as_ref().unwrap();
    assert_eq!(first.payload, br#"{"m":"a","temp":1}"#);
    assert_eq!(first.topic.as_deref(), Some("alerts/a"));
    assert!(results[1].is_err());

    let split = load(&engine, &module("split_array"), serde_json::json!({ "route_by_kind": true }), ModuleLimits::default());
    let mut instance = ModuleInstance::start(&split).unwrap();
    let BatchResult::FlatMap(results) = instance.call("in", &messages(&[r#"[{"kind": "alarm"}, 2]"#, "[]"])).unwrap() else { panic!() };
    let outputs = results[0].as_ref().unwrap();
    assert_eq!(outputs.len(), 2);
    assert_eq!(outputs[0].output.as_deref(), Some("alarm"));
    assert_eq!(outputs[1].output, None);
    assert!(results[1].as_ref().unwrap().is_empty());
}

#[test]
fn trap_deadline_and_memory_cap_are_classified_and_the_module_recovers() {
    let engine = engine();
    let limits = ModuleLimits { memory_bytes: 16 << 20, deadline: Duration::from_millis(200) };
    let chaos = load(&engine, &module("chaos"), serde_json::json!({}), limits);
    for (payload, reason) in [("trap", FailureReason::Trap), ("loop", FailureReason::Deadline), ("hog", FailureReason::MemoryCap)] {
        let mut instance = ModuleInstance::start(&chaos).unwrap();
        let failure = instance.call("in", &messages(&["fine", payload])).unwrap_err();
        assert_eq!(failure.reason, reason, "{failure}");
        // A fresh instance from the same InstancePre works.
        let mut fresh = ModuleInstance::start(&chaos).unwrap();
        assert!(matches!(fresh.call("in", &messages(&["fine"])).unwrap(), BatchResult::Filter(r) if r == vec![Ok(true)]));
    }
}

/// The epoch ticker sleeps while no call runs; a call wakes it, so a runaway call that
/// starts after a quiet spell is still stopped at its deadline.
#[test]
fn a_deadline_still_fires_after_the_epoch_ticker_slept() {
    let engine = engine();
    let limits = ModuleLimits { memory_bytes: 16 << 20, deadline: Duration::from_millis(200) };
    let chaos = load(&engine, &module("chaos"), serde_json::json!({}), limits);
    let mut instance = ModuleInstance::start(&chaos).unwrap();
    let quiet_until = std::time::Instant::now() + Duration::from_secs(10);
    while !engine.ticker_asleep() {
        assert!(std::time::Instant::now() < quiet_until, "the epoch ticker did not go to sleep while no call ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || done_tx.send(instance.call("in", &messages(&["loop"])).map(drop)));
    match done_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Err(failure)) => assert_eq!(failure.reason, FailureReason::Deadline, "{failure}"),
        Ok(Ok(())) => panic!("the looping call returned"),
        Err(_) => panic!("the looping call was not stopped within 10 s of its 200 ms deadline"),
    }
}

#[test]
fn a_core_module_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("core.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let err = LoadedModule::load(&engine(), "core", &path, None, "{}".into(), ModuleLimits::default()).unwrap_err();
    assert!(format!("{err:#}").contains("core wasm module, not a component"), "{err:#}");
}
