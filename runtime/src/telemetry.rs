//! Logging set-up, and the metric names (defined in `weir_core::metric_names`, shared with
//! the connectors).
//!
//! Metrics go through the `metrics` facade; names are constants, so a dashboard and the code
//! cannot drift apart. Labels: `route`, `module`, `sink`, `source`, `reason`.

use tracing_subscriber::EnvFilter;

pub use weir_core::metric_names::*;

/// Log format chosen on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Install the global subscriber. `RUST_LOG` overrides the default level (`info`; the
/// embedded broker's own log is off unless `RUST_LOG` names `rumqttd`).
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rumqttd=off,rumqttc=warn,wasmtime=warn,cranelift=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    drop(result);
}

/// A module's own counter (`weir_module_<name>`), from the `metrics` host import.
pub fn module_counter(module: &str, name: &str, value: u64) {
    if let Some(name) = module_series(module, name) {
        metrics::counter!(name, "module" => module.to_owned()).increment(value);
    }
}

/// A module's own gauge.
pub fn module_gauge(module: &str, name: &str, value: f64) {
    if let Some(name) = module_series(module, name) {
        metrics::gauge!(name, "module" => module.to_owned()).set(value);
    }
}

/// The longest metric name a module may make (after `weir_module_`), in characters.
pub const MODULE_METRIC_NAME_MAX: usize = 64;
/// The most metrics one module may make: a module that makes a name per message would
/// otherwise grow `/metrics` (and weir's memory) without bound.
pub const MODULE_METRICS_MAX: usize = 64;

/// The full name of a module's metric, or `None` once the module has made
/// [`MODULE_METRICS_MAX`] others (said once in the log).
fn module_series(module: &str, name: &str) -> Option<String> {
    static SERIES: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, std::collections::HashSet<String>>>> =
        std::sync::LazyLock::new(Default::default);
    let name: String = format!("weir_module_{}", sanitize(&name.chars().take(MODULE_METRIC_NAME_MAX).collect::<String>()));
    let mut series = SERIES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let known = series.entry(module.to_owned()).or_default();
    if known.contains(&name) {
        return Some(name);
    }
    if known.len() >= MODULE_METRICS_MAX {
        if known.len() == MODULE_METRICS_MAX {
            known.insert(String::new());
            tracing::warn!(module, metric = %name, "the module made {MODULE_METRICS_MAX} metrics already; this one and any further ones are ignored");
        }
        return None;
    }
    known.insert(name.clone());
    Some(name)
}

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}
