use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::lines::LineFormat;

/// A JSON Lines file: one line per message with its payload and metadata.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to append to, relative to the pipeline file. Its directory is created.
    pub path: PathBuf,
    /// `jsonl` (payload and metadata per line, the default) or `raw` (payload bytes plus a newline).
    #[serde(default)]
    pub format: LineFormat,
    /// fsync after every batch, so an accepted message survives a power cut. Default true.
    #[serde(default = "yes")]
    pub fsync: bool,
}

fn yes() -> bool {
    true
}
