use std::path::PathBuf;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use weir_core::{BuildContext, Message, Sink, SinkError, SinkKind};

use super::config::FileConfig;
use crate::lines::{LineFormat, write_lines};

/// Appends batches to a file; a batch is accepted once written (and fsynced if configured).
pub struct FileSink {
    path: PathBuf,
    format: LineFormat,
    fsync: bool,
    file: tokio::fs::File,
}

#[async_trait]
impl SinkKind for FileSink {
    const TYPE: &'static str = "file";
    type Config = FileConfig;

    async fn build(config: FileConfig, ctx: &BuildContext) -> anyhow::Result<Box<dyn Sink>> {
        Ok(Box::new(FileSink::open(ctx.resolve(&config.path), config.format, config.fsync).await?))
    }
}

impl FileSink {
    pub async fn open(path: PathBuf, format: LineFormat, fsync: bool) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(|err| anyhow::anyhow!("file sink: cannot create directory {}: {err}", dir.display()))?;
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
            .map_err(|err| anyhow::anyhow!("file sink: cannot open {} for appending: {err}", path.display()))?;
        Ok(FileSink { path, format, fsync, file })
    }
}

#[async_trait]
impl Sink for FileSink {
    async fn deliver(&mut self, batch: &[Message]) -> Result<(), SinkError> {
        let mut buffer = Vec::new();
        write_lines(&mut buffer, batch, self.format).map_err(|err| SinkError::Unavailable(err.into()))?;
        let unavailable = |err: std::io::Error| SinkError::Unavailable(anyhow::anyhow!("writing {}: {err}", self.path.display()));
        self.file.write_all(&buffer).await.map_err(unavailable)?;
        if self.fsync {
            self.file.sync_data().await.map_err(unavailable)?;
        } else {
            self.file.flush().await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn close(&mut self) -> anyhow::Result<()> {
        self.file.sync_all().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::{Ack, Metadata};

    #[tokio::test]
    async fn writes_json_lines_with_metadata() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/out.jsonl");
        let mut sink = FileSink::open(path.clone(), LineFormat::Jsonl, true).await.expect("open");
        let mut meta = Metadata::new("src".into(), "a/b");
        meta.content_type = Some("application/json".into());
        sink.deliver(&[Message::new(&b"{\"t\":1}"[..], meta, Ack::none())]).await.expect("deliver");
        let text = std::fs::read_to_string(&path).expect("read");
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect("json");
        assert_eq!(line["payload"]["t"], 1);
        assert_eq!(line["topic"], "a/b");
        assert_eq!(line["content_type"], "application/json");
    }
}
