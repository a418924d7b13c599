//! The aggregate path beside the filter path, at batch 64: what windows cost per message.
//!
//! - `filter`: the threshold filter (parses the JSON body in the module, keeps or drops);
//! - `aggregate/1000 keys`: the averages aggregate over 1,000 machines in a 10 s tumbling
//!   window in processing time: key from `$body.machine` on the host, window assignment,
//!   one accumulate call per batch, and (amortised) the opens, snapshots, closes and
//!   checkpoint files at window boundaries and every second, exactly as the worker does;
//!   and once more with checkpoints turned off, to show their share.
//!
//! Both get fresh messages every batch (nothing decoded yet). Before them it prints the
//! extra per message measured in alternating rounds (the figure the target is about: slow
//! drifts of a shared machine hit both paths alike) and the memory one key costs (host and
//! module, RSS growth over 100,000 keys, and the bytes per key in the checkpoint file).
//! Results and method: docs/benchmarks.md.
//!
//!     scripts/build-filters.sh && cargo bench -p weir --bench aggregate

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use weir::aggregate::AggregateSpec;
use weir::aggregate::worker::AggregateRunner;
use weir::config::window::WindowConfig;
use weir::executor::dispatch::Dispatcher;
use weir::wasm::{BatchResult, EngineSettings, LoadedModule, ModuleInstance, ModuleLimits, WasmEngine};
use weir_core::{Ack, Message, Metadata};

const BATCH: usize = 64;
const KEYS: usize = 1000;

fn module_path(name: &str) -> std::path::PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../filters/target/wasm32-wasip2/release/{name}.wasm"));
    assert!(path.is_file(), "{} is missing: run scripts/build-filters.sh first", path.display());
    path
}

/// Readings of 1,000 machines, round robin; each batch is new messages sharing payloads.
struct Readings {
    payloads: Vec<(Bytes, Arc<Metadata>)>,
    next: usize,
}

impl Readings {
    fn new() -> Self {
        // One name for all, as a source's messages share its name.
        let source: Arc<str> = Arc::from("bench");
        let payloads = (0..KEYS)
            .map(|i| {
                let body =
                    format!(r#"{{"machine":"m{i}","temperature":{}.5,"pressure":1.01,"seq":{i},"ts":1763800000000,"site":"plant-7","line":"A"}}"#, 60 + i % 20);
                (Bytes::from(body), Arc::new(Metadata::new(source.clone(), format!("factory/m{i}/telemetry"))))
            })
            .collect();
        Readings { payloads, next: 0 }
    }

    fn batch(&mut self) -> Vec<Message> {
        (0..BATCH)
            .map(|_| {
                let (payload, meta) = &self.payloads[self.next % KEYS];
                self.next += 1;
                Message::new(payload.clone(), (**meta).clone(), Ack::none())
            })
            .collect()
    }
}

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    statm.split_whitespace().nth(1).and_then(|pages| pages.parse::<u64>().ok()).expect("resident pages") * 4096
}

fn new_runner(module: LoadedModule, dir: &Path, window: &str) -> AggregateRunner {
    let window: WindowConfig = toml::from_str(window).expect("window");
    let spec = AggregateSpec::from_config(&window, dir.join("averages.window-state")).expect("spec");
    let (deadletter, _) = tokio::sync::mpsc::channel(1024);
    let mut runner = AggregateRunner::new(module, spec, Arc::new(Dispatcher::new(Vec::new(), deadletter, usize::MAX)), 2048);
    runner.restore();
    runner
}

/// Open windows for 100,000 keys and see what the process and the checkpoint grew by.
fn memory_per_key(module: LoadedModule) {
    const MANY: usize = 100_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut runner = new_runner(module, dir.path(), "kind = 'tumbling'\nsize = '1h'\nkey = '$body.machine'\nmax_keys = 1000000");
    let payloads: Vec<Bytes> = (0..MANY).map(|i| Bytes::from(format!(r#"{{"machine":"machine-{i:06}","temperature":61.5}}"#))).collect();
    let meta = Metadata::new("bench".into(), "factory/telemetry");
    // Warm up allocator and instance with the first 1,000 keys, then measure the rest.
    let feed = |range: std::ops::Range<usize>, runner: &mut AggregateRunner| {
        for chunk in payloads[range].chunks(BATCH) {
            runner.process(chunk.iter().map(|p| Message::new(p.clone(), meta.clone(), Ack::none())).collect());
        }
        runner.checkpoint();
    };
    feed(0..1000, &mut runner);
    let before = rss();
    feed(1000..MANY, &mut runner);
    let grown = rss().saturating_sub(before);
    let file = std::fs::metadata(dir.path().join("averages.window-state")).map(|m| m.len()).unwrap_or(0);
    println!(
        "memory per key (averages, one open window each, {MANY} keys): {} bytes RSS (host + module + checkpoint copy); checkpoint file {} bytes per key",
        grown / (MANY as u64 - 1000),
        file / MANY as u64
    );
}

fn aggregate(c: &mut Criterion) {
    let engine = WasmEngine::new(&EngineSettings { max_instances: 8, ..EngineSettings::default() }).expect("engine");
    let threshold =
        LoadedModule::load(&engine, "threshold", &module_path("threshold"), None, r#"{"field":"temperature","limit":70.0}"#.into(), ModuleLimits::default())
            .expect("threshold");
    let averages = LoadedModule::load(&engine, "averages", &module_path("averages"), None, r#"{"field":"temperature"}"#.into(), ModuleLimits::default())
        .expect("averages");
    let mut filter = ModuleInstance::start(&threshold).expect("instance");
    memory_per_key(averages.clone());

    let dir = tempfile::tempdir().expect("tempdir");
    let mut checkpointed = new_runner(averages.clone(), dir.path(), "kind = 'tumbling'\nsize = '10s'\nkey = '$body.machine'");
    // The same without the checkpoints, to show what they cost.
    let quiet_dir = tempfile::tempdir().expect("tempdir");
    let mut quiet = new_runner(averages, quiet_dir.path(), "kind = 'tumbling'\nsize = '10s'\nkey = '$body.machine'\ncheckpoint_interval = '1000h'");

    let mut readings = Readings::new();
    side_by_side(&mut filter, &mut quiet, &mut readings);
    let mut group = c.benchmark_group("aggregate");
    group.measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(2)).throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(BenchmarkId::new("filter", BATCH), |b| {
        b.iter_batched(
            || readings.batch(),
            |batch| match filter.call("in", &batch).expect("call") {
                BatchResult::Filter(results) => results,
                _ => unreachable!("a filter"),
            },
            BatchSize::SmallInput,
        )
    });
    for (name, runner) in [("checkpoint every 1s", &mut checkpointed), ("no checkpoint", &mut quiet)] {
        group.bench_function(BenchmarkId::new(format!("aggregate/{KEYS} keys, {name}"), BATCH), |b| {
            b.iter_batched(
                || readings.batch(),
                |batch| {
                    runner.process(batch);
                    runner.advance();
                    runner.maybe_checkpoint();
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// The extra per message measured in alternation: each round times a block of filter
/// batches and then a block of aggregate batches (fresh messages, made outside the timing;
/// blocks, so that each path runs with its own data in the caches as in the criterion
/// runs), so that the machine's slow drifts hit both alike. Prints the medians of the
/// rounds and the median of the per-round differences.
fn side_by_side(filter: &mut ModuleInstance, runner: &mut AggregateRunner, readings: &mut Readings) {
    const ROUNDS: usize = 400;
    const WARM_UP: usize = 40;
    const BLOCK: usize = 16;
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let per_message = |d: Duration| d.as_secs_f64() * 1e9 / (BLOCK * BATCH) as f64;
    let (mut filters, mut aggregates, mut extras) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..WARM_UP + ROUNDS {
        let for_filter: Vec<Vec<Message>> = (0..BLOCK).map(|_| readings.batch()).collect();
        let for_aggregate: Vec<Vec<Message>> = (0..BLOCK).map(|_| readings.batch()).collect();
        let started = Instant::now();
        // Each batch is dropped inside the timing, as `process` drops its own.
        for batch in for_filter {
            std::hint::black_box(filter.call("in", &batch).expect("call"));
        }
        let filtered = per_message(started.elapsed());
        let started = Instant::now();
        for batch in for_aggregate {
            runner.process(batch);
            runner.advance();
            runner.maybe_checkpoint();
        }
        let aggregated = per_message(started.elapsed());
        if round >= WARM_UP {
            filters.push(filtered);
            aggregates.push(aggregated);
            extras.push(aggregated - filtered);
        }
    }
    println!(
        "side by side, {ROUNDS} rounds of {BLOCK} batches each, batch {BATCH}, medians per message: filter {:.0} ns, aggregate (no checkpoints) {:.0} ns, extra {:.0} ns",
        median(&mut filters),
        median(&mut aggregates),
        median(&mut extras)
    );
}

criterion_group!(benches, aggregate);
criterion_main!(benches);
