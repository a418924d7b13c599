use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use weir_core::Secret;

use crate::lines::LineFormat;

/// Objects in a blob store: one object per batch.
///
/// ```toml
/// [sinks.lake]
/// type = "blob"
/// url = "az://telemetry/plant-7"          # container `telemetry`, names under `plant-7/`
/// account = "mystorageaccount"
/// access_key = { env = "AZURE_STORAGE_KEY" }
/// ```
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlobConfig {
    /// Where objects go: `az://CONTAINER/PREFIX` (Azure Blob Storage), `s3://BUCKET/PREFIX`,
    /// `gs://BUCKET/PREFIX`, `file:///ABSOLUTE/DIR`, or a directory relative to the pipeline.
    pub url: String,
    /// Azure: the storage account name.
    #[serde(default)]
    pub account: Option<String>,
    /// Azure: the account key (from `{ env = "…" }` or `{ file = "…" }`).
    #[serde(default)]
    pub access_key: Option<Secret>,
    /// Azure: another endpoint than `https://ACCOUNT.blob.core.windows.net`, e.g. Azurite's
    /// `http://127.0.0.1:10000/devstoreaccount1` (plain http is allowed when given here).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Further `object_store` options for S3 and GCS (`aws_region`, `aws_endpoint` …).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Options that are secrets (`aws_secret_access_key`, `google_service_account_key` …).
    #[serde(default)]
    pub secret_options: BTreeMap<String, Secret>,
    /// Object name under the prefix. `{yyyy} {MM} {dd} {HH} {mm} {ss}` are the UTC time the
    /// batch's first message arrived; `{source}` its source; `{run}` when this weir started
    /// (ms); `{seq}` the batch's number in this run. Must contain `{seq}` and `{run}` (names
    /// never repeat, across restarts too, so nothing is overwritten). Default "{yyyy}/{MM}/{dd}/{HH}/{source}-{run}-{seq}.jsonl".
    #[serde(default = "BlobConfig::default_name", deserialize_with = "name_template")]
    pub name: String,
    /// `jsonl` (one line per message: payload and metadata) or `raw` (payloads, one per line).
    #[serde(default)]
    pub format: LineFormat,
    /// Messages per object, at most. Default 10000.
    #[serde(default = "BlobConfig::default_max_messages")]
    pub max_messages: usize,
    /// Payload bytes per object, about. Default 8 MiB (as bytes or "8MiB").
    #[serde(default = "BlobConfig::default_max_bytes")]
    pub max_bytes: usize,
    /// How long the first message of a batch waits for more, in seconds. Default 60.
    #[serde(default = "BlobConfig::default_max_age_secs")]
    pub max_age_secs: f64,
}

impl BlobConfig {
    fn default_name() -> String {
        "{yyyy}/{MM}/{dd}/{HH}/{source}-{run}-{seq}.jsonl".to_owned()
    }
    fn default_max_messages() -> usize {
        10_000
    }
    fn default_max_bytes() -> usize {
        8 << 20
    }
    fn default_max_age_secs() -> f64 {
        60.0
    }
}

/// A name template, checked when the pipeline is (`weir check`), not when the first batch goes.
fn name_template<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let template = String::deserialize(deserializer)?;
    super::name::check(&template).map_err(serde::de::Error::custom)?;
    Ok(template)
}
