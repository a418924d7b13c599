//! The module call path: what a pass-through WASM filter costs per message over a native
//! Rust closure, by batch size and payload size. Results and method: docs/benchmarks.md.
//!
//!     scripts/build-filters.sh && cargo bench -p weir --bench module_call

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use weir::wasm::{BatchResult, EngineSettings, LoadedModule, ModuleInstance, ModuleLimits, WasmEngine};
use weir_core::{Ack, Message, Metadata, Property};

/// Messages as a source makes them: every message shares its source's name.
fn batch(size: usize, payload: usize) -> Vec<Message> {
    let source: std::sync::Arc<str> = "bench".into();
    (0..size)
        .map(|i| {
            let mut meta = Metadata::new(source.clone(), format!("factory/m{}/telemetry", i % 8));
            meta.properties.push(Property::new("site", "plant-7"));
            meta.content_type = Some("application/json".into());
            Message::new(Bytes::from(vec![b'x'; payload]), meta, Ack::none())
        })
        .collect()
}

fn module_call(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../filters/target/wasm32-wasip2/release/pass_through.wasm");
    assert!(path.is_file(), "{} is missing: run scripts/build-filters.sh first", path.display());
    let engine = WasmEngine::new(&EngineSettings { max_instances: 4, ..EngineSettings::default() }).expect("engine");
    let module = LoadedModule::load(&engine, "pass", &path, None, "{}".into(), ModuleLimits::default()).expect("module");
    // As on a module's own thread: inside the async runtime, whose timers WASI uses.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let _entered = runtime.enter();
    let mut instance = ModuleInstance::start(&module).expect("instance");

    let mut group = c.benchmark_group("module_call");
    group.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    for payload in [100usize, 1024] {
        for size in [1usize, 16, 64, 256] {
            let messages = batch(size, payload);
            group.throughput(Throughput::Elements(size as u64));
            group.bench_with_input(BenchmarkId::new(format!("wasm/{payload}B"), size), &messages, |b, messages| {
                b.iter(|| match instance.call("in", black_box(messages)).expect("call") {
                    BatchResult::Filter(results) => black_box(results),
                    _ => unreachable!("a filter"),
                })
            });
            // As a module called inline: awaited on an async task, no thread of its own.
            group.bench_with_input(BenchmarkId::new(format!("wasm-awaited/{payload}B"), size), &messages, |b, messages| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let started = Instant::now();
                        for _ in 0..iters {
                            black_box(instance.call_async("in", black_box(messages), None).await.expect("call"));
                        }
                        started.elapsed()
                    })
                })
            });
            // The same decision made by a native closure: the baseline the WASM path is compared with.
            let keep = |message: &Message| -> Result<bool, String> { Ok(black_box(message.payload.len()) > 0) };
            group.bench_with_input(BenchmarkId::new(format!("native/{payload}B"), size), &messages, |b, messages| {
                b.iter(|| black_box(messages.iter().map(keep).collect::<Vec<_>>()))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, module_call);
criterion_main!(benches);
