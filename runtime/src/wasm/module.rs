//! A compiled module: its component, `InstancePre`, kind and limits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, types::ComponentItem};

use super::engine::WasmEngine;
use super::host::InstanceState;

/// What a module does with messages; each kind is one export of the WIT contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum ModuleKind {
    /// Keep or drop each message.
    Filter,
    /// One message in, one out.
    Map,
    /// One message in, zero or more out, to named outputs.
    FlatMap,
    /// Stateful, windowed aggregation (windows run by the host).
    Aggregate,
}

impl ModuleKind {
    pub const ALL: [ModuleKind; 4] = [ModuleKind::Filter, ModuleKind::Map, ModuleKind::FlatMap, ModuleKind::Aggregate];

    /// The interface name in `weir:module`.
    pub fn interface(self) -> &'static str {
        match self {
            ModuleKind::Filter => "filter",
            ModuleKind::Map => "map",
            ModuleKind::FlatMap => "flat-map",
            ModuleKind::Aggregate => "aggregate",
        }
    }
}

impl std::fmt::Display for ModuleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.interface())
    }
}

/// The limits every instance of a module runs under.
#[derive(Debug, Clone, Copy)]
pub struct ModuleLimits {
    /// Linear memory cap per instance, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock deadline per call.
    pub deadline: Duration,
}

impl Default for ModuleLimits {
    fn default() -> Self {
        ModuleLimits { memory_bytes: 64 << 20, deadline: Duration::from_secs(1) }
    }
}

/// The contract version weir speaks; a module's exports must carry a compatible version.
pub const CONTRACT: &str = "weir:module";
pub const CONTRACT_VERSION: &str = "0.1";

/// A module ready to instantiate.
#[derive(Clone)]
pub struct LoadedModule {
    pub name: Arc<str>,
    pub path: PathBuf,
    pub kind: ModuleKind,
    pub limits: ModuleLimits,
    pub config_json: Arc<str>,
    pub(crate) engine: WasmEngine,
    pub(crate) pre: InstancePre<InstanceState>,
    pub(crate) init_export: ComponentExportIndex,
    pub(crate) call_export: ComponentExportIndex,
    pub(crate) aggregate_exports: Option<super::aggregate::AggregateExports>,
}

impl std::fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModule").field("name", &self.name).field("path", &self.path).field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl LoadedModule {
    /// Compile (or load from the cache) and check that the module exports what `kind` needs.
    /// `kind = None` takes the one kind the module exports.
    pub fn load(engine: &WasmEngine, name: &str, path: &Path, kind: Option<ModuleKind>, config_json: String, limits: ModuleLimits) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("module `{name}`: cannot read {}", path.display()))?;
        if wasmparser_is_core_module(&bytes) {
            bail!(
                "module `{name}`: {} is a core wasm module, not a component. Build Rust modules for wasm32-wasip2, \
                 or wrap a core module with `wasm-tools component new`",
                path.display()
            );
        }
        let component = Component::new(&engine.engine, &bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("module `{name}`: {} is not a valid component", path.display()))?;
        let exported = exported_kinds(engine, &component);
        let kind = match (kind, exported.as_slice()) {
            (Some(kind), kinds) if kinds.contains(&kind) => kind,
            (Some(kind), []) => bail!(
                "module `{name}` ({}) does not export `{CONTRACT}/{}@{CONTRACT_VERSION}.x` (it exports no weir interface at all: was it built against sdk-guest/wit?)",
                path.display(),
                kind.interface()
            ),
            (Some(kind), kinds) => bail!(
                "module `{name}` ({}) does not export `{CONTRACT}/{}@{CONTRACT_VERSION}.x`, which kind = \"{kind}\" needs; it exports {}. Set kind = \"{}\" or point at the right file",
                path.display(),
                kind.interface(),
                join(kinds),
                kinds[0]
            ),
            (None, [only]) => *only,
            (None, []) => bail!("module `{name}` ({}) exports no weir interface (filter, map, flat-map or aggregate)", path.display()),
            (None, kinds) => bail!("module `{name}` exports several kinds ({}); say which with kind = \"…\"", join(kinds)),
        };
        let find = |interface: &str, func: &str| -> anyhow::Result<ComponentExportIndex> {
            let instance = export_name(engine, &component, interface)
                .and_then(|full| component.get_export_index(None, &full))
                .with_context(|| format!("module `{name}` does not export `{CONTRACT}/{interface}`"))?;
            component.get_export_index(Some(&instance), func).with_context(|| format!("module `{name}`: `{CONTRACT}/{interface}` has no function `{func}`"))
        };
        let init_export = find("module", "init")?;
        let call_export = match kind {
            ModuleKind::Aggregate => find("aggregate", "accumulate")?,
            other => find(other.interface(), other.interface())?,
        };
        let aggregate_exports = match kind {
            ModuleKind::Aggregate => Some(super::aggregate::AggregateExports {
                open: find("aggregate", "open")?,
                merge: find("aggregate", "merge")?,
                snapshot: find("aggregate", "snapshot")?,
                close: find("aggregate", "close")?,
            }),
            _ => None,
        };
        let pre = engine
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("module `{name}` imports something weir does not provide"))?;
        Ok(LoadedModule {
            name: name.into(),
            path: path.to_owned(),
            kind,
            limits,
            config_json: config_json.into(),
            engine: engine.clone(),
            pre,
            init_export,
            call_export,
            aggregate_exports,
        })
    }
}

fn join(kinds: &[ModuleKind]) -> String {
    kinds.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
}

/// The full export name (with version) of a `weir:module` interface, if exported.
fn export_name(engine: &WasmEngine, component: &Component, interface: &str) -> Option<String> {
    let prefix = format!("{CONTRACT}/{interface}@{CONTRACT_VERSION}.");
    component
        .component_type()
        .exports(&engine.engine)
        .find(|(name, item)| name.starts_with(&prefix) && matches!(item.ty, ComponentItem::ComponentInstance(_)))
        .map(|(name, _)| name.to_owned())
}

fn exported_kinds(engine: &WasmEngine, component: &Component) -> Vec<ModuleKind> {
    ModuleKind::ALL.into_iter().filter(|kind| export_name(engine, component, kind.interface()).is_some()).collect()
}

/// A core module has version 1 in its preamble; a component has a different layer/version.
fn wasmparser_is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[0..4] == b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}
