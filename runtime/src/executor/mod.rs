//! Runs a pipeline.
//!
//! - [`dispatch`]: route evaluation and delivery to queues (no central router task);
//! - [`module_slot`]: a module's instance, called inline where its messages arrive while
//!   its calls stay short, else by its worker;
//! - [`module_worker`]: one thread per module, calling it a batch at a time with what is
//!   queued for it (aggregate modules get [`crate::aggregate::worker`] instead);
//! - [`sink_worker`]: delivering to a sink: batches, retries, dead-letters rejections;
//! - [`queued`]: a sink behind a store-and-forward queue: writer thread and forwarder task;
//! - [`deadletter`]: what a dead letter carries;
//! - this file: building all of that from a [`Plan`] and shutting it down in order:
//!   sources stop taking messages and wait for what is in flight, then modules drain front
//!   to back, then sinks flush, the dead-letter sink last.

pub mod deadletter;
pub mod dispatch;
pub mod module_slot;
pub mod module_worker;
pub mod queued;
pub mod sink_worker;

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use weir_connectors::mqtt::{ConnectionConfig, MqttSink, MqttSource};
use weir_core::{BuildContext, Registry, Source, SourceContext};

use crate::aggregate::worker::AggregateWorker;
use crate::config::LoadedPipeline;
use crate::config::validate::{Plan, module_error};
use crate::route::RouteSink;
use crate::wasm::{EngineSettings, LoadedModule, ModuleKind, WasmEngine};
use deadletter::LastResort;
use dispatch::{CompiledRoute, Dispatcher, Target, Work};
use module_slot::ModuleSlot;
use module_worker::ModuleWorker;
use queued::{Forwarder, QueueWriter};
use sink_worker::{SinkDriver, SinkWorker};

use crate::queue::SinkQueue;

/// A running sink, as shutdown needs it.
enum SinkTask {
    Direct(JoinHandle<()>),
    Queued { writer: std::thread::JoinHandle<()>, forwarder: JoinHandle<()>, stop: CancellationToken, queue: Arc<SinkQueue> },
}

/// Engine settings sized for these modules.
pub fn engine_settings(loaded: &LoadedPipeline, plan: &Plan) -> EngineSettings {
    let mut settings = EngineSettings::default();
    if let Some(dir) = &loaded.pipeline.runtime.cache_dir {
        settings.cache_dir = Some(loaded.base_dir.join(dir));
    }
    settings.max_memory_bytes = plan.modules.iter().map(|m| m.limits.memory_bytes).max().unwrap_or(settings.max_memory_bytes).max(1 << 20);
    // One live instance per module plus one being recycled, plus room for `weir check`.
    settings.max_instances = (plan.modules.len() as u32 * 2 + 2).max(4);
    settings
}

/// Compile every module of the plan. Errors point at the module's keys.
pub fn load_modules(engine: &WasmEngine, loaded: &LoadedPipeline, plan: &Plan) -> Result<Vec<LoadedModule>, crate::config::ConfigErrors> {
    let mut modules = Vec::new();
    let mut errors = Vec::new();
    for spec in &plan.modules {
        match LoadedModule::load(engine, &spec.name, &spec.path, spec.kind, spec.config_json.clone(), spec.limits) {
            Ok(module) if module.kind == ModuleKind::Aggregate && spec.window.is_none() => errors.push(module_error(
                loaded,
                &spec.name,
                "path",
                format!(
                    "module `{}` is an aggregate: give it a window table, e.g. [modules.{}.window] kind = \"tumbling\", size = \"10s\", key = \"$body.machine\"",
                    spec.name, spec.name
                ),
            )),
            Ok(module) if module.kind != ModuleKind::Aggregate && spec.window.is_some() => errors.push(module_error(
                loaded,
                &spec.name,
                "window",
                format!("only aggregate modules have windows; module `{}` is a {}", spec.name, module.kind),
            )),
            Ok(module) => modules.push(module),
            Err(err) => {
                let key = if format!("{err:#}").contains("kind") { "kind" } else { "path" };
                errors.push(module_error(loaded, &spec.name, key, format!("{err:#}")));
            }
        }
    }
    if errors.is_empty() { Ok(modules) } else { Err(crate::config::ConfigErrors(errors)) }
}

/// The local broker connection: the configured one, or the embedded broker (started here).
fn local_broker(loaded: &LoadedPipeline) -> anyhow::Result<ConnectionConfig> {
    match &loaded.pipeline.broker {
        Some(connection) => Ok(connection.clone()),
        None => embedded_broker(loaded),
    }
}

#[cfg(feature = "embedded-broker")]
fn embedded_broker(loaded: &LoadedPipeline) -> anyhow::Result<ConnectionConfig> {
    let listen = loaded.pipeline.embedded_broker.clone().unwrap_or_default().listen;
    let addr = crate::broker::start(&listen)?;
    let host = if addr.ip().is_unspecified() { "127.0.0.1".to_owned() } else { addr.ip().to_string() };
    let mut connection = ConnectionConfig::plain(&host, addr.port());
    connection.protocol = weir_connectors::mqtt::Protocol::V311;
    Ok(connection)
}

#[cfg(not(feature = "embedded-broker"))]
fn embedded_broker(loaded: &LoadedPipeline) -> anyhow::Result<ConnectionConfig> {
    anyhow::bail!(
        "{} names no [broker], and this weir was built without the embedded broker (feature `embedded-broker`): \
         set [broker] url to the broker weir should use",
        loaded.path.display()
    )
}

fn pipeline_id(loaded: &LoadedPipeline) -> String {
    loaded.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "pipeline".into())
}

/// Build and run a pipeline until `shutdown` is cancelled, then drain and stop.
///
/// `ready` (if given) turns `true` once every source is connected and subscribed.
pub async fn run(
    loaded: &LoadedPipeline,
    plan: Plan,
    modules: Vec<LoadedModule>,
    registry: &Registry,
    shutdown: CancellationToken,
    ready: Option<watch::Sender<bool>>,
) -> anyhow::Result<()> {
    let pipeline = &loaded.pipeline;
    let settings = &pipeline.runtime;
    let max_message_bytes = usize::try_from(settings.max_message_size.0).unwrap_or(usize::MAX);
    let id = pipeline_id(loaded);
    let abandon = CancellationToken::new();
    let deadletter_topic = pipeline.deadletter_topic();
    let needs_local = !plan.local_subscriptions.is_empty() || plan.writes_local_topics || deadletter_topic.is_some();
    let local = if needs_local { Some(local_broker(loaded)?) } else { None };

    // Readiness as the operator endpoints see it: true once every source is subscribed,
    // false again when shutdown starts.
    let (readiness_tx, readiness_rx) = watch::channel(false);
    let readiness_tx = Arc::new(readiness_tx);
    let readiness_for_shutdown = readiness_tx.clone();
    let endpoints_stop = CancellationToken::new();
    if let Some(listen) = &settings.http_listen {
        crate::endpoints::serve(listen, readiness_rx, endpoints_stop.clone()).await?;
    }

    // Store-and-forward queues first: a queue in use by another process stops us here.
    let mut disk_queues = HashMap::new();
    for (name, queue_settings) in &plan.queues {
        disk_queues.insert(name.clone(), SinkQueue::open(name, queue_settings.clone()).with_context(|| format!("the queue of sink `{name}`"))?);
    }

    // Sink channels and workers.
    let queue_size = settings.batch_size.max(1) * 4;
    let mut sink_queues: HashMap<String, mpsc::Sender<Work>> = HashMap::new();
    let mut sink_workers = Vec::new();
    for (name, table) in &pipeline.sinks {
        let ctx = BuildContext { name: name.as_str().into(), base_dir: loaded.base_dir.clone(), max_message_bytes };
        let sink = registry.build_sink(&table.kind, table.table.clone(), &ctx).await.with_context(|| format!("sink `{name}`"))?;
        let (tx, rx) = mpsc::channel(queue_size);
        sink_queues.insert(name.clone(), tx);
        sink_workers.push((name.clone(), sink, rx));
    }
    let local_topics = match (&local, plan.writes_local_topics) {
        (Some(connection), true) => {
            let sink = MqttSink::connect(connection, &loaded.base_dir, &format!("weir-{id}-out"), "-out", None, None, None)?;
            let (tx, rx) = mpsc::channel(queue_size);
            sink_workers.push(("$local".to_owned(), Box::new(sink) as Box<dyn weir_core::Sink>, rx));
            Some(tx)
        }
        _ => None,
    };
    // `$deadletter` is the queue of the sink `deadletter` names (one instance of it, so an
    // MQTT sink does not open a second connection with the same client id), or else a
    // publisher to a local topic (`deadletter = "/topics/…"`, default weir/deadletter).
    let (deadletter_tx, deadletter_worker) = match (&deadletter_topic, &pipeline.deadletter, &local) {
        (None, Some(name), _) => (sink_queues.get(name).cloned().with_context(|| format!("dead-letter sink `{name}` is not declared"))?, None),
        (Some(topic), _, Some(connection)) => {
            let (tx, rx) = mpsc::channel(queue_size);
            let sink =
                MqttSink::connect(connection, &loaded.base_dir, &format!("weir-{id}-deadletter"), "-deadletter", Some(topic.clone()), Some(false), None)?;
            (tx, Some((Box::new(sink) as Box<dyn weir_core::Sink>, rx)))
        }
        _ => unreachable!("a local broker is started when dead letters go to a local topic"),
    };

    // Module queues, and the shared instances of modules that may be called inline.
    let mut module_queues = HashMap::new();
    let mut module_receivers = HashMap::new();
    let mut module_slots = HashMap::new();
    for module in &modules {
        let spec = plan.modules.iter().find(|m| *m.name == *module.name).context("module plan")?;
        let (tx, rx) = mpsc::channel(spec.batch_size * 4);
        module_queues.insert(module.name.to_string(), tx);
        module_receivers.insert(module.name.to_string(), (rx, spec.batch_size));
        if spec.window.is_none() {
            module_slots
                .insert(module.name.to_string(), Arc::new(ModuleSlot::new(module.clone(), spec.batch_size, spec.own_thread, settings.inline_call_budget.0)));
        }
    }

    // Routes with their targets.
    let mut routes = Vec::new();
    let mut edges: HashMap<Arc<str>, Vec<Arc<str>>> = HashMap::new();
    for route_plan in &plan.routes {
        let target = match &route_plan.route.sink {
            RouteSink::Upstream => {
                let name = pipeline.upstream.clone().context("$upstream used but `upstream` is not set")?;
                Target::Sink { name: name.as_str().into(), queue: sink_queues[&name].clone() }
            }
            RouteSink::Named(name) => Target::Sink { name: name.as_str().into(), queue: sink_queues[name].clone() },
            RouteSink::DeadLetter => Target::DeadLetter,
            RouteSink::Module { id, input } => {
                Target::Module { name: id.as_str().into(), input: input.as_str().into(), queue: module_queues[id].clone(), slot: module_slots.get(id).cloned() }
            }
            RouteSink::Topic(_) => Target::Sink { name: "$local".into(), queue: local_topics.clone().context("local topic sink missing")? },
        };
        if let (crate::route::RouteSource::Module { id, .. }, Target::Module { name, .. }) = (&route_plan.route.source, &target) {
            edges.entry(id.as_str().into()).or_default().push(name.clone());
        }
        routes.push(CompiledRoute {
            name: route_plan.name.as_str().into(),
            route: route_plan.route.clone(),
            target,
            time_to_live_ms: route_plan.time_to_live.map(|d| d.as_millis() as u64),
            priority: route_plan.priority,
            matched: metrics::counter!(crate::telemetry::ROUTE_MATCHED, "route" => route_plan.name.clone()),
        });
    }
    let dispatcher = Arc::new(Dispatcher::new(routes, deadletter_tx.clone(), max_message_bytes));

    // Start sinks, then modules, then sources.
    let last_resort = LastResort::new(&crate::config::validate::store_dir(loaded));
    let mut sink_tasks: Vec<(String, mpsc::Sender<Work>, SinkTask)> = Vec::new();
    for (name, sink, rx) in sink_workers {
        let channel = if name == "$local" { local_topics.clone() } else { sink_queues.get(&name).cloned() };
        let driver = SinkDriver::new(name.as_str().into(), sink, Some(dispatcher.clone()), abandon.clone(), last_resort.clone());
        let task = match disk_queues.remove(&name) {
            Some(queue) => {
                let is_deadletter = pipeline.deadletter.as_ref() == Some(&name);
                let writer = QueueWriter {
                    queue: queue.clone(),
                    channel: rx,
                    dispatcher: (!is_deadletter).then(|| dispatcher.clone()),
                    abandon: abandon.clone(),
                    last_resort: last_resort.clone(),
                };
                let writer = writer.spawn().with_context(|| format!("starting the queue writer of sink `{name}`"))?;
                let stop = CancellationToken::new();
                let forwarder = Forwarder { queue: queue.clone(), driver, batch_size: settings.batch_size, stop: stop.clone() };
                SinkTask::Queued { writer, forwarder: tokio::spawn(forwarder.run()), stop, queue }
            }
            None => SinkTask::Direct(tokio::spawn(SinkWorker { driver, queue: rx, batch_size: settings.batch_size }.run())),
        };
        sink_tasks.push((name, channel.context("sink channel")?, task));
    }
    let deadletter_task = deadletter_worker.map(|(sink, queue)| {
        let driver = SinkDriver::new("$deadletter".into(), sink, None, abandon.clone(), last_resort.clone());
        tokio::spawn(SinkWorker { driver, queue, batch_size: settings.batch_size }.run())
    });

    let mut module_threads = HashMap::new();
    for module in modules {
        let name = module.name.to_string();
        let (rx, batch_size) = module_receivers.remove(&name).context("module queue")?;
        let window = plan.modules.iter().find(|m| m.name == name).and_then(|m| m.window.clone());
        let thread = match window {
            Some(spec) => {
                let max_held = settings.in_flight / 2;
                let runtime = tokio::runtime::Handle::current();
                AggregateWorker { module, spec, queue: rx, dispatcher: dispatcher.clone(), batch_size, max_held, runtime }.spawn()
            }
            None => {
                let slot = module_slots.remove(&name).context("module slot")?;
                ModuleWorker { slot, queue: rx, dispatcher: dispatcher.clone() }.spawn()
            }
        };
        module_threads.insert(name.clone(), thread.with_context(|| format!("starting the worker thread of module `{name}`"))?);
    }

    let source_shutdown = CancellationToken::new();
    let mut source_tasks = Vec::new();
    let mut sources: Vec<(String, Box<dyn Source>)> = Vec::new();
    if let (Some(connection), false) = (&local, plan.local_subscriptions.is_empty()) {
        let mut connection = connection.clone();
        connection.max_incoming_bytes = Some(weir_connectors::mqtt::max_packet_for(max_message_bytes));
        sources.push(("local".to_owned(), Box::new(MqttSource::new(connection, plan.local_subscriptions.clone(), &loaded.base_dir, &format!("weir-{id}-in")))));
    }
    for (name, table) in &pipeline.sources {
        let ctx = BuildContext { name: name.as_str().into(), base_dir: loaded.base_dir.clone(), max_message_bytes };
        sources.push((name.clone(), registry.build_source(&table.kind, table.table.clone(), &ctx).await.with_context(|| format!("source `{name}`"))?));
    }
    let mut readiness = Vec::new();
    let in_flight_bytes = usize::try_from(settings.in_flight_bytes.0).unwrap_or(usize::MAX).clamp(1, Semaphore::MAX_PERMITS);
    for (name, source) in sources {
        let (tx, mut rx) = mpsc::channel(settings.batch_size.max(16));
        let (ready_tx, ready_rx) = watch::channel(false);
        readiness.push((name.clone(), ready_rx));
        let ctx = SourceContext {
            name: name.as_str().into(),
            output: tx,
            shutdown: source_shutdown.clone(),
            in_flight: Arc::new(Semaphore::new(settings.in_flight)),
            in_flight_limit: settings.in_flight,
            in_flight_bytes: Arc::new(Semaphore::new(in_flight_bytes)),
            in_flight_bytes_limit: in_flight_bytes,
            ready: ready_tx,
            drain_timeout: settings.drain_timeout.0,
        };
        let dispatcher = dispatcher.clone();
        let batch_size = settings.batch_size.max(1);
        let forward = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(batch_size);
            while rx.recv_many(&mut batch, batch_size).await > 0 {
                dispatcher.dispatch_batch(&mut batch).await;
            }
        });
        let run = tokio::spawn(async move {
            if let Err(err) = source.run(ctx).await {
                tracing::error!(source = %name, error = %format!("{err:#}"), "source failed");
            }
        });
        source_tasks.push((run, forward));
    }
    tokio::spawn(track_readiness(readiness, readiness_tx, ready, source_shutdown.clone()));
    info!(pipeline = %loaded.path.display(), modules = module_threads.len(), routes = plan.routes.len(), sinks = sink_tasks.len(), "pipeline running");

    shutdown.cancelled().await;
    info!("shutting down: draining in-flight messages");
    source_shutdown.cancel();
    readiness_for_shutdown.send_replace(false);
    // Sources wait up to the drain timeout for what is in flight; what a source handed on but
    // could not dispatch by then (a module queue that stays full) is given up, unacknowledged.
    let sources_deadline = tokio::time::Instant::now() + settings.drain_timeout.0 + std::time::Duration::from_secs(1);
    for (run, mut forward) in source_tasks {
        let _ = run.await;
        if tokio::time::timeout_at(sources_deadline, &mut forward).await.is_err() {
            forward.abort();
            warn!("a source's messages could not all be dispatched within drain_timeout; the rest stay unacknowledged and come back after the restart");
        }
    }
    // Modules finish their queues, front to back, within one drain timeout in all: a module
    // with a long backlog of slow calls must not hold the stop up. What it has not finished
    // was not acknowledged, and its source redelivers it after the restart.
    let order = dispatch::shutdown_order(&module_threads.keys().map(|k| Arc::from(k.as_str())).collect::<Vec<_>>(), &edges);
    let modules_deadline = tokio::time::Instant::now() + settings.drain_timeout.0;
    for name in order {
        if let (Some(queue), Some(thread)) = (module_queues.get(&*name), module_threads.remove(&*name)) {
            let finished = tokio::time::timeout_at(modules_deadline, async {
                let _ = queue.send(Work::Stop).await;
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            });
            if finished.await.is_err() {
                warn!(module = %name, "the module did not finish its queue within drain_timeout; what it holds stays unacknowledged and comes back after the restart");
            }
        }
    }
    let abandon_timer = {
        let abandon = abandon.clone();
        let timeout = settings.drain_timeout.0;
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            abandon.cancel();
        })
    };
    for (name, channel, task) in sink_tasks {
        if channel.send(Work::Stop).await.is_err() {
            warn!(sink = %name, "sink already stopped");
        }
        match task {
            SinkTask::Direct(task) => {
                let _ = task.await;
            }
            SinkTask::Queued { writer, forwarder, stop, queue } => {
                // What reached the queue is safe on disk: stop forwarding once it is written.
                let _ = tokio::task::spawn_blocking(move || writer.join()).await;
                stop.cancel();
                let _ = forwarder.await;
                match queue.close() {
                    Ok(()) => {
                        let stats = queue.stats();
                        if stats.depth > 0 {
                            info!(sink = %name, messages = stats.depth, "messages stay queued for the next start");
                        }
                    }
                    Err(err) => warn!(sink = %name, error = %format!("{err:#}"), "closing the queue failed; the next start checks it"),
                }
            }
        }
    }
    if let Some(task) = deadletter_task {
        let _ = deadletter_tx.send(Work::Stop).await;
        let _ = task.await;
    }
    abandon_timer.abort();
    endpoints_stop.cancel();
    info!("stopped");
    Ok(())
}

/// Readiness as `/readyz` reports it: every source connected and subscribed, now. A source
/// that loses its broker makes weir not ready until it is back. `first` turns `true` the first
/// time weir is ready. Ends at shutdown.
async fn track_readiness(
    sources: Vec<(String, watch::Receiver<bool>)>,
    readiness: Arc<watch::Sender<bool>>,
    mut first: Option<watch::Sender<bool>>,
    stop: CancellationToken,
) {
    let changed = Arc::new(tokio::sync::Notify::new());
    for (_, mut source) in sources.clone() {
        let changed = changed.clone();
        tokio::spawn(async move {
            while source.changed().await.is_ok() {
                changed.notify_one();
            }
        });
    }
    loop {
        let waiting: Vec<&str> = sources.iter().filter(|(_, ready)| !*ready.borrow()).map(|(name, _)| name.as_str()).collect();
        let ready = waiting.is_empty();
        if ready != *readiness.borrow() && !stop.is_cancelled() {
            if ready {
                info!("ready: every source is connected and subscribed");
            } else {
                warn!(sources = ?waiting, "not ready: a source lost its connection; /readyz answers 503 until it is back");
            }
            readiness.send_replace(ready);
            if let Some(first) = first.take_if(|_| ready) {
                first.send_replace(true);
            }
        }
        tokio::select! {
            () = changed.notified() => {}
            () = stop.cancelled() => return,
        }
    }
}
