//! Route condition evaluation: a body condition with JSON decoding included, a condition
//! on properties only, 50 routes on one source, and an aggregate's key read from the body.
//! Results and method: docs/benchmarks.md.
//!
//!     cargo bench -p weir --bench route_eval

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use weir::route;
use weir_core::{Ack, Message, Metadata, Property};

/// A 200-byte JSON reading with the device id as a user property.
fn message() -> (Bytes, Metadata) {
    let body = r#"{"machine":"m1","temperature":71.5,"pressure":1.013,"humidity":41.2,"rpm":1480,"status":"running","line":"L2","shift":"B","operator":"op-17","ts":1795306432779,"seq":123456,"fw":"4.2.1","site":"plant-07"}"#;
    assert!((190..=210).contains(&body.len()), "body is {} bytes", body.len());
    let mut meta = Metadata::new("local".into(), "factory/m1/telemetry");
    meta.properties = vec![Property::new("connectionDeviceId", "m1"), Property::new("processingPath", "hot")];
    (Bytes::from_static(body.as_bytes()), meta)
}

fn route_eval(c: &mut Criterion) {
    let (payload, meta) = message();
    let fresh = || Message::new(payload.clone(), meta.clone(), Ack::none());
    let mut group = c.benchmark_group("route_eval");
    group.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));

    let body = route::parse("FROM /topics/factory/+/telemetry WHERE $body.temperature > 50 AND $connectionDeviceId = 'm1' INTO $upstream").expect("route");
    assert!(body.accepts(&fresh()));
    // A fresh message per iteration, so the JSON decode is part of what is measured.
    group.bench_function("body_condition_with_decode", |b| b.iter_batched(fresh, |m| black_box(body.accepts(&m)), BatchSize::SmallInput));

    let properties =
        route::parse("FROM /topics/factory/+/telemetry WHERE processingPath = 'hot' AND $connectionDeviceId = 'm1' INTO $upstream").expect("route");
    let decoded = fresh();
    group.bench_function("property_condition", |b| b.iter(|| black_box(properties.accepts(black_box(&decoded)))));

    // The message building itself (excluded above by iter_batched), for reference.
    group.bench_function("message_clone_for_reference", |b| b.iter(|| black_box(fresh())));

    // 50 routes, each on its own topic filter; one matches.
    let routes: Vec<_> = (0..50)
        .map(|i| {
            let filter = if i == 49 { "factory/+/telemetry".to_owned() } else { format!("site{i}/+/telemetry") };
            route::parse(&format!("FROM /topics/{filter} WHERE $body.temperature > 50 INTO $upstream")).expect("route")
        })
        .collect();
    // As the dispatcher does it: the index names the routes whose source matches, then
    // only their conditions run.
    let index = route::RouteIndex::new(&routes);
    group.bench_function("fifty_routes_one_match", |b| {
        b.iter_batched(fresh, |m| black_box(index.candidates(&m).into_iter().filter(|&i| routes[i].condition_holds(&m)).count()), BatchSize::SmallInput)
    });
    // The same 50 routes checked one by one (what the dispatcher did before the index).
    group.bench_function("fifty_routes_one_match_unindexed", |b| {
        b.iter_batched(fresh, |m| black_box(routes.iter().filter(|r| r.accepts(&m)).count()), BatchSize::SmallInput)
    });
    // 50 routes on the very same source, each with its own condition: the source is matched
    // once for all of them.
    let same_source: Vec<_> =
        (0..50).map(|i| route::parse(&format!("FROM /topics/factory/+/telemetry WHERE $body.temperature > {i} INTO $upstream")).expect("route")).collect();
    let same_index = route::RouteIndex::new(&same_source);
    group.bench_function("fifty_routes_same_source_all_match", |b| {
        b.iter_batched(
            fresh,
            |m| black_box(same_index.candidates(&m).into_iter().filter(|&i| same_source[i].condition_holds(&m)).count()),
            BatchSize::SmallInput,
        )
    });

    // An aggregate's key (`$body.machine`): one validating pass over the aggregate
    // benchmark's body that keeps only that member. The pass caches nothing, so the same
    // message is scanned afresh every time.
    let reading = Message::new(
        Bytes::from_static(br#"{"machine":"m123","temperature":71.5,"pressure":1.01,"seq":123,"ts":1763800000000,"site":"plant-7","line":"A"}"#),
        meta.clone(),
        Ack::none(),
    );
    assert_eq!(reading.body_plain_string("machine"), Some("m123"));
    group.bench_function("aggregate_key_scan", |b| b.iter(|| black_box(black_box(&reading).body_plain_string("machine").map(str::len))));
    group.finish();
}

criterion_group!(benches, route_eval);
criterion_main!(benches);
