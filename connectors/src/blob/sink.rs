use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use weir_core::connector::Batching;
use weir_core::{BuildContext, Message, Sink, SinkError, SinkKind};

use super::config::BlobConfig;
use super::name;
use crate::lines::{LineFormat, write_lines};

/// Writes each batch as one object; a batch is accepted once the upload succeeded.
pub struct BlobSink {
    store: Arc<dyn ObjectStore>,
    /// Where names go under, in the store.
    prefix: ObjectPath,
    /// For messages: "az://container/prefix".
    url: String,
    template: String,
    format: LineFormat,
    batching: Batching,
    run: u64,
    seq: u64,
}

#[async_trait]
impl SinkKind for BlobSink {
    const TYPE: &'static str = "blob";
    type Config = BlobConfig;

    async fn build(config: BlobConfig, ctx: &BuildContext) -> anyhow::Result<Box<dyn Sink>> {
        Ok(Box::new(BlobSink::new(config, ctx)?))
    }
}

impl BlobSink {
    pub fn new(config: BlobConfig, ctx: &BuildContext) -> anyhow::Result<Self> {
        let (store, prefix) = open_store(&config, ctx)?;
        let batching = Batching {
            max_messages: config.max_messages.max(1),
            max_bytes: config.max_bytes.max(1),
            max_age: Duration::from_secs_f64(config.max_age_secs.max(0.0)),
        };
        Ok(BlobSink {
            store,
            prefix,
            url: config.url.clone(),
            template: config.name,
            format: config.format,
            batching,
            run: weir_core::message::now_ms(),
            seq: 0,
        })
    }
}

/// The store and the prefix inside it that `config.url` names.
fn open_store(config: &BlobConfig, ctx: &BuildContext) -> anyhow::Result<(Arc<dyn ObjectStore>, ObjectPath)> {
    let url = &config.url;
    if url.starts_with("az://") || url.starts_with("azure://") || url.starts_with("abfs") {
        let mut builder = object_store::azure::MicrosoftAzureBuilder::new().with_url(url.clone());
        if let Some(account) = &config.account {
            builder = builder.with_account(account.clone());
        }
        if let Some(key) = &config.access_key {
            builder = builder.with_access_key(key.reveal(&ctx.base_dir)?);
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint.clone()).with_allow_http(endpoint.starts_with("http://"));
        }
        let store = builder.build().map_err(|err| anyhow::anyhow!("blob sink {url}: {err} (set `account` and `access_key`)"))?;
        let prefix = url.split_once("://").and_then(|(_, rest)| rest.split_once('/')).map(|(_, prefix)| prefix).unwrap_or("");
        return Ok((Arc::new(store), ObjectPath::from(prefix)));
    }
    let parsed = match url::Url::parse(url) {
        Ok(parsed) if parsed.scheme() == "file" => {
            let dir = parsed.to_file_path().map_err(|()| anyhow::anyhow!("blob sink: {url} is not a local path"))?;
            return local_directory(&dir);
        }
        Ok(parsed) if parsed.scheme().len() > 1 => parsed,
        // A plain path: a directory relative to the pipeline file.
        _ => return local_directory(&ctx.resolve(std::path::Path::new(url))),
    };
    if let Some(key) = config.options.keys().find(|key| looks_secret(key)) {
        anyhow::bail!(
            "blob sink: `options` may not hold `{key}`: put it in `secret_options` ({key} = {{ env = \"…\" }}), which reads it from the environment or a file"
        );
    }
    let mut options: Vec<(String, String)> = config.options.clone().into_iter().collect();
    for (key, secret) in &config.secret_options {
        options.push((key.clone(), secret.reveal(&ctx.base_dir)?));
    }
    let (store, prefix) = object_store::parse_url_opts(&parsed, options).map_err(|err| anyhow::anyhow!("blob sink {url}: {err}"))?;
    Ok((Arc::from(store), prefix))
}

/// Whether an `object_store` option holds a credential (`aws_secret_access_key`,
/// `azure_storage_account_key`, `google_service_account_key`, a token or password …).
fn looks_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["secret", "key", "token", "password", "credential", "sas"].iter().any(|word| key.contains(word))
        && !key.ends_with("key_id")
        && !key.ends_with("application_credentials")
}

/// A local directory as the store (created if missing).
fn local_directory(dir: &std::path::Path) -> anyhow::Result<(Arc<dyn ObjectStore>, ObjectPath)> {
    std::fs::create_dir_all(dir).map_err(|err| anyhow::anyhow!("blob sink: cannot create {}: {err}", dir.display()))?;
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
    Ok((Arc::new(store), ObjectPath::from("")))
}

#[async_trait]
impl Sink for BlobSink {
    async fn deliver(&mut self, batch: &[Message]) -> Result<(), SinkError> {
        let Some(first) = batch.first() else { return Ok(()) };
        let mut body = Vec::new();
        write_lines(&mut body, batch, self.format).map_err(|err| SinkError::Unavailable(err.into()))?;
        let name = name::render(&self.template, first, self.run, self.seq);
        let path = ObjectPath::from_iter(self.prefix.parts().chain(ObjectPath::from(name.as_str()).parts()));
        match self.store.put(&path, PutPayload::from(body)).await {
            Ok(_) => {
                self.seq += 1;
                tracing::debug!(object = %path, messages = batch.len(), "uploaded");
                Ok(())
            }
            Err(err) => Err(SinkError::Unavailable(anyhow::anyhow!("uploading {path} to {}: {err}", self.url))),
        }
    }

    fn batching(&self) -> Option<Batching> {
        Some(self.batching)
    }
}

#[cfg(test)]
mod secret_options {
    #[test]
    fn credentials_are_told_from_settings() {
        for secret in ["aws_secret_access_key", "azure_storage_account_key", "azure_storage_sas_key", "aws_session_token", "google_service_account_key"] {
            assert!(super::looks_secret(secret), "{secret}");
        }
        for plain in ["aws_region", "aws_endpoint", "aws_access_key_id", "google_application_credentials", "aws_allow_http"] {
            assert!(!super::looks_secret(plain), "{plain}");
        }
    }
}
