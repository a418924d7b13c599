//! The one wasmtime engine weir uses, with fixed settings.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use wasmtime::component::Linker;
use wasmtime::{Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::host::{self, InstanceState};
use super::ticker::Ticker;

/// What the engine is sized for. The pool is allocated once, so it is sized from the
/// pipeline: how many instances can be alive and the largest memory any may have.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Where compiled modules are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// The largest linear memory any instance may grow to (the biggest module cap).
    pub max_memory_bytes: usize,
    /// Instances alive at once, including one spare per module for recycling.
    pub max_instances: u32,
    /// Epoch tick: how often a running call's clock is looked at (deadlines, budgets). The
    /// ticker sleeps while no call runs.
    pub tick: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings { cache_dir: default_cache_dir(), max_memory_bytes: 64 << 20, max_instances: 16, tick: Duration::from_millis(5) }
    }
}

/// `$XDG_CACHE_HOME/weir/modules` (or `~/.cache/weir/modules`).
pub fn default_cache_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|dir| dir.join("weir").join("modules"))
}

/// The engine and the linker shared by every module (the epoch ticker runs beside them).
#[derive(Clone)]
pub struct WasmEngine {
    pub(crate) engine: Engine,
    pub(crate) linker: Arc<Linker<InstanceState>>,
    pub(crate) ticker: Arc<Ticker>,
}

impl std::fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmEngine").finish_non_exhaustive()
    }
}

impl WasmEngine {
    /// Whether the epoch ticker sleeps (no call has run for a while, see [`super::ticker`]).
    pub fn ticker_asleep(&self) -> bool {
        self.ticker.is_asleep()
    }

    pub fn new(settings: &EngineSettings) -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::new();
        let instances = settings.max_instances.max(1);
        pool.total_component_instances(instances)
            // Components from some toolchains (Python, JavaScript) hold many core instances,
            // tables and large tables; size for them rather than fail at instantiation.
            .max_core_instances_per_component(64)
            .max_memories_per_component(8)
            .max_tables_per_component(32)
            .total_core_instances(instances * 64)
            .total_memories(instances * 8)
            .total_tables(instances * 32)
            .table_elements(200_000)
            .max_memory_size(settings.max_memory_bytes)
            // Each call runs on a stack of its own (calls are async, see `instance`); an
            // instance makes one call at a time.
            .total_stacks(instances);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            // Guards sized for a small edge box: bounds checks instead of 4 GiB reservations.
            .memory_reservation(settings.max_memory_bytes as u64)
            .memory_guard_size(64 << 10);
        // `WEIR_WASM_PERFMAP=1` writes /tmp/perf-<pid>.map so that `perf report` names the
        // functions of compiled modules (how docs/benchmarks.md profiles the call path).
        if std::env::var_os("WEIR_WASM_PERFMAP").is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if let Some(dir) = &settings.cache_dir {
            std::fs::create_dir_all(dir).with_context(|| format!("creating the module cache directory {}", dir.display()))?;
            let mut cache = CacheConfig::new();
            cache.with_directory(dir);
            config.cache(Some(Cache::new(cache).map_err(anyhow::Error::from).context("opening the module cache")?));
        }
        let engine = Engine::new(&config).map_err(anyhow::Error::from).context("creating the wasm engine")?;
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker).map_err(anyhow::Error::from).context("linking host services")?;
        let ticker = spawn_ticker(&engine, settings.tick);
        Ok(WasmEngine { engine, linker: Arc::new(linker), ticker })
    }
}

/// Advance the engine's epoch every `tick` while calls run (see [`super::ticker`]). The thread
/// holds only a weak reference: it ends when the engine is dropped.
fn spawn_ticker(engine: &Engine, tick: Duration) -> Arc<Ticker> {
    let weak = engine.weak();
    let advance = move || weak.upgrade().map(|engine| engine.increment_epoch()).is_some();
    Ticker::spawn(tick, (super::ticker::SHORTEST_WAIT, super::ticker::LONGEST_WAIT), advance).unwrap_or_else(|err| {
        tracing::error!(%err, "could not start the epoch thread: module deadlines will not fire");
        Arc::default()
    })
}
