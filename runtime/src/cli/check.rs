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
    let loaded = LoadedPipeline::load(path)?;
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
    Ok(Checked { loaded, plan, modules, registry })
}
