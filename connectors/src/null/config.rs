use schemars::JsonSchema;
use serde::Deserialize;

/// A sink that discards: no settings.
///
/// ```toml
/// [sinks.discard]
/// type = "null"
/// ```
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NullConfig {}
