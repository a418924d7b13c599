//! Everything `weir check` verifies beyond the TOML's shape, producing the [`Plan`] the
//! executor runs. All problems are collected, not just the first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use weir_core::Registry;
use weir_core::connector::ConnectorConfigError;

use super::load::{ConfigError, ConfigErrors, LoadedPipeline};
use super::store::QueueSpec;
use crate::queue::QueueSettings;
use crate::route::{self, Route, RouteSink, RouteSource};
use crate::wasm::{ModuleKind, ModuleLimits};

/// A module as the executor needs it.
#[derive(Debug, Clone)]
pub struct ModulePlan {
    pub name: String,
    pub path: PathBuf,
    pub kind: Option<ModuleKind>,
    pub config_json: String,
    pub limits: ModuleLimits,
    pub batch_size: usize,
    /// Never call this module inline, only on its own thread.
    pub own_thread: bool,
    /// Aggregate modules: the validated `window` table.
    pub window: Option<crate::aggregate::AggregateSpec>,
}

/// A parsed route with its settings.
#[derive(Debug, Clone)]
pub struct RoutePlan {
    pub name: String,
    pub route: Route,
    pub priority: u8,
    pub time_to_live: Option<Duration>,
}

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct Plan {
    pub routes: Vec<RoutePlan>,
    pub modules: Vec<ModulePlan>,
    /// MQTT filters of `FROM /topics/…` routes: what the local broker source subscribes to.
    pub local_subscriptions: Vec<String>,
    /// Whether any route writes to a local topic.
    pub writes_local_topics: bool,
    /// Sinks with a store-and-forward queue, and its settings.
    pub queues: BTreeMap<String, QueueSettings>,
}

/// Check references, routes, connector tables and module files (not module contents: see
/// `crate::cli::check`, which also loads every module).
pub fn plan(loaded: &LoadedPipeline, registry: &Registry) -> Result<Plan, ConfigErrors> {
    let pipeline = &loaded.pipeline;
    let mut errors = Vec::new();

    if pipeline.broker.is_some() && pipeline.embedded_broker.is_some() {
        errors.push(loaded.error(&["embedded_broker"], "set either [broker] (an external broker) or [embedded_broker], not both"));
    }
    for (key, value) in [("upstream", &pipeline.upstream), ("deadletter", &pipeline.deadletter)] {
        if let Some(sink) = value
            && !(key == "deadletter" && pipeline.deadletter_topic().is_some())
            && !pipeline.sinks.contains_key(sink)
        {
            errors.push(loaded.error(&[key], format!("no sink named `{sink}`; declare it as [sinks.{sink}] ({})", known(pipeline.sinks.keys()))));
        }
    }
    let sinks = pipeline.sinks.iter().map(|(name, t)| ("sinks", name, &t.kind, &t.table));
    let sources = pipeline.sources.iter().map(|(name, t)| ("sources", name, &t.kind, &t.table));
    for (kind, name, type_name, table) in sinks.chain(sources) {
        let checked = if kind == "sinks" { registry.check_sink(type_name, table.clone()) } else { registry.check_source(type_name, table.clone()) };
        match checked {
            Ok(()) => {}
            Err(ConnectorConfigError::UnknownType { .. } | ConnectorConfigError::LeftOut { .. }) => {
                errors.push(loaded.error(&[kind, name, "type"], checked.err().map(|e| e.to_string()).unwrap_or_default()));
            }
            Err(ConnectorConfigError::Invalid(err)) => {
                let message = err.message().trim().to_owned();
                // "unknown field `x`", or a connector's own message that starts with the key.
                let first_word = message.split([' ', '`']).next().filter(|word| table.contains_key(*word));
                let field = message.strip_prefix("unknown field `").and_then(|r| r.split('`').next()).or(first_word).map(str::to_owned);
                let path: Vec<&str> = match &field {
                    Some(field) => vec![kind, name, field],
                    None => vec![kind, name],
                };
                errors.push(loaded.error(&path, message));
            }
        }
    }

    let queues = queues(loaded, &mut errors);

    let mut modules = Vec::new();
    for (name, module) in &pipeline.modules {
        let path = loaded.base_dir.join(&module.path);
        if !path.is_file() {
            errors.push(loaded.error(
                &["modules", name, "path"],
                format!(
                    "module file {} does not exist (paths are relative to the pipeline file; example modules are built by scripts/build-filters.sh)",
                    path.display()
                ),
            ));
        }
        let config_json = serde_json::to_string(&module.config).unwrap_or_else(|_| "{}".to_owned());
        let window = module.window.as_ref().and_then(|window| {
            let state_path = store_dir(loaded).join(format!("{name}.window-state"));
            crate::aggregate::AggregateSpec::from_config(window, state_path)
                .map_err(|problems| errors.extend(problems.into_iter().map(|(key, message)| loaded.error(&["modules", name, "window", key], message))))
                .ok()
        });
        let defaults = ModuleLimits::default();
        modules.push(ModulePlan {
            name: name.clone(),
            path,
            kind: module.kind,
            config_json,
            limits: ModuleLimits {
                memory_bytes: module.memory.map(|m| m.0 as usize).unwrap_or(defaults.memory_bytes),
                deadline: module.deadline.map(|d| d.0).unwrap_or(defaults.deadline),
            },
            batch_size: module.batch_size.unwrap_or(pipeline.runtime.batch_size).max(1),
            own_thread: module.own_thread,
            window,
        });
    }

    let mut routes = Vec::new();
    let mut subscriptions = BTreeSet::new();
    let mut writes_local_topics = false;
    for (name, spec) in &pipeline.routes {
        let text = spec.text();
        let mut route = match route::parse(text) {
            Ok(route) => route,
            Err(err) => {
                errors.push(loaded.error_in_string(&["routes", name], err.column, err.message));
                continue;
            }
        };
        if let super::RouteSpec::Detailed(table) = spec {
            route.decode = table.decode;
        }
        let sink_column = text.to_ascii_lowercase().rfind(" into ").map(|i| text[..i + 6].chars().count()).unwrap_or(0);
        match &route.sink {
            RouteSink::Named(sink) if !pipeline.sinks.contains_key(sink) => {
                errors.push(loaded.error_in_string(&["routes", name], sink_column, format!("no sink named `{sink}` ({})", known(pipeline.sinks.keys()))));
            }
            RouteSink::Upstream if pipeline.upstream.is_none() => {
                errors.push(loaded.error_in_string(
                    &["routes", name],
                    sink_column,
                    "$upstream is not set: add `upstream = \"<sink name>\"` at the top of the pipeline",
                ));
            }
            RouteSink::Module { id, .. } if !pipeline.modules.contains_key(id) => {
                errors.push(loaded.error_in_string(&["routes", name], sink_column, format!("no module named `{id}` ({})", known(pipeline.modules.keys()))));
            }
            RouteSink::Topic(_) => writes_local_topics = true,
            _ => {}
        }
        match &route.source {
            RouteSource::Module { id, .. } if !pipeline.modules.contains_key(id) => {
                let column = text.find("/messages").map(|i| text[..i].chars().count()).unwrap_or(0);
                errors.push(loaded.error_in_string(&["routes", name], column, format!("no module named `{id}` ({})", known(pipeline.modules.keys()))));
            }
            RouteSource::Topic(filter) => {
                subscriptions.insert(filter.as_str().to_owned());
            }
            _ => {}
        }
        let time_to_live = match spec {
            super::RouteSpec::Detailed(table) => table.time_to_live.map(Duration::from_secs),
            super::RouteSpec::Plain(_) => None,
        };
        routes.push(RoutePlan { name: name.clone(), route, priority: spec.priority(), time_to_live });
    }

    if errors.is_empty() {
        Ok(Plan { routes, modules, local_subscriptions: minimal_subscriptions(&subscriptions), writes_local_topics, queues })
    } else {
        errors.sort_by_key(|e| (e.line, e.column));
        Err(ConfigErrors(errors))
    }
}

/// The queue settings of every sink that has a queue.
fn queues(loaded: &LoadedPipeline, errors: &mut Vec<ConfigError>) -> BTreeMap<String, QueueSettings> {
    let pipeline = &loaded.pipeline;
    let store = &pipeline.store;
    let store_dir = store_dir(loaded);
    let mut queues = BTreeMap::new();
    for (name, table) in &pipeline.sinks {
        let spec = match table.queue.clone().map(|value| value.try_into::<QueueSpec>()) {
            None if pipeline.upstream.as_ref() == Some(name) => QueueSpec::Enabled(true),
            None => QueueSpec::Enabled(false),
            Some(Ok(spec)) => spec,
            Some(Err(err)) => {
                let message = err.message().trim().to_owned();
                let field = message.strip_prefix("unknown field `").and_then(|r| r.split('`').next()).map(str::to_owned);
                let mut path = vec!["sinks", name.as_str(), "queue"];
                path.extend(field.as_deref());
                errors.push(loaded.error(&path, message));
                continue;
            }
        };
        let overrides = match spec {
            QueueSpec::Enabled(false) => continue,
            QueueSpec::Enabled(true) => Default::default(),
            QueueSpec::Settings(overrides) => overrides,
        };
        let max_bytes = overrides.max_size.unwrap_or(store.max_size).0;
        if max_bytes < 1 << 20 {
            errors.push(loaded.error(&["sinks", name, "queue", "max_size"], "a queue needs at least 1MiB"));
        }
        queues.insert(
            name.clone(),
            QueueSettings {
                dir: store_dir.join(name),
                max_bytes,
                when_full: overrides.when_full.unwrap_or(store.when_full),
                fsync: overrides.fsync.unwrap_or(store.fsync),
                time_to_live: overrides.time_to_live.unwrap_or(store.time_to_live).0,
            },
        );
    }
    queues
}

/// `[store] dir`: sink queues and aggregate window state live here.
pub fn store_dir(loaded: &LoadedPipeline) -> PathBuf {
    let default_dir = format!("{}.queue", loaded.path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default().trim_end_matches(".toml"));
    loaded.base_dir.join(loaded.pipeline.store.dir.clone().unwrap_or_else(|| default_dir.into()))
}

fn known<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if names.is_empty() { "none are declared".to_owned() } else { format!("declared: {}", names.join(", ")) }
}

/// An error about a module, pointing at the key it concerns.
pub fn module_error(loaded: &LoadedPipeline, module: &str, key: &str, message: impl Into<String>) -> ConfigError {
    loaded.error(&["modules", module, key], message)
}

/// The filters no other filter covers: with overlapping subscriptions a broker sends a
/// message once per match, and weir would route it twice.
pub(crate) fn minimal_subscriptions(filters: &BTreeSet<String>) -> Vec<String> {
    let parsed: Vec<crate::route::TopicFilter> = filters.iter().map(|f| crate::route::TopicFilter::new(f)).collect();
    parsed
        .iter()
        .enumerate()
        .filter(|(i, filter)| !parsed.iter().enumerate().any(|(j, other)| *i != j && other.covers(filter)))
        .map(|(_, filter)| filter.as_str().to_owned())
        .collect()
}
