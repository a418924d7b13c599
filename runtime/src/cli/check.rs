//! `weir check`.

use std::path::Path;

use crate::config::LoadedPipeline;
use crate::config::validate::{self, Plan};
use crate::executor;
use crate::wasm::{LoadedModule, ModuleInstance, WasmEngine};

/// Everything `run` needs, validated.
pub struct Checked {
    pub loaded: LoadedPipeline,
    pub plan: Plan,
    pub modules: Vec<LoadedModule>,
    pub registry: weir_core::Registry,
}

/// Load, validate, compile every module and run its `init` with its config.
pub fn check(path: &Path) -> anyhow::Result<Checked> {
    let loaded = load(path)?;
    let registry = weir_connectors::registry();
    let plan = validate::plan(&loaded, &registry)?;
    let engine = WasmEngine::new(&executor::engine_settings(&loaded, &plan))?;
    let modules = executor::load_modules(&engine, &loaded, &plan)?;
    let mut errors = Vec::new();
    for module in &modules {
        if let Err(failure) = ModuleInstance::start(module) {
            errors.push(validate::module_error(&loaded, &module.name, "config", format!("the module does not start: {failure}")));
        }
    }
    if !errors.is_empty() {
        return Err(crate::config::ConfigErrors(errors).into());
    }
    let pipeline = &loaded.pipeline;
    eprintln!(
        "{}: ok ({} routes, {} modules, {} sources, {} sinks)",
        path.display(),
        plan.routes.len(),
        modules.len(),
        pipeline.sources.len(),
        pipeline.sinks.len()
    );
    if let Some(warning) = embedded_broker_warning(&loaded, &plan) {
        eprintln!("warning: {warning}");
    }
    Ok(Checked { loaded, plan, modules, registry })
}

/// What a pipeline that promises nothing lost (a queue, or aggregate windows that survive a
/// restart) gives up by taking its messages from the embedded broker, if it does.
pub fn embedded_broker_warning(loaded: &LoadedPipeline, plan: &Plan) -> Option<String> {
    let durable = !plan.queues.is_empty() || plan.modules.iter().any(|m| m.window.is_some());
    (loaded.pipeline.broker.is_none() && !plan.local_subscriptions.is_empty() && durable).then(|| {
        "this pipeline takes its messages from weir's embedded broker, which keeps them in memory and acknowledges \
         each publisher before weir has taken the message: a crash, kill -9 or power loss loses what it holds, QoS 1 \
         included, whatever the queues keep. For production run a broker that persists (Mosquitto with \
         `persistence true`) and point [broker] url at it (docs/store-and-forward.md)"
            .to_owned()
    })
}

/// The pipeline in `path`. A file that cannot be read is unusable input (exit 2), not a
/// pipeline with errors (exit 1).
pub fn load(path: &Path) -> anyhow::Result<LoadedPipeline> {
    let text = std::fs::read_to_string(path).map_err(|err| super::Unusable(format!("cannot read the pipeline file {}: {err}", path.display())))?;
    Ok(LoadedPipeline::parse(path, text)?)
}
