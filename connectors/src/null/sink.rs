use async_trait::async_trait;
use weir_core::{BuildContext, Message, Sink, SinkError, SinkKind};

use super::config::NullConfig;

/// Accepts every batch at once.
pub struct NullSink;

#[async_trait]
impl SinkKind for NullSink {
    const TYPE: &'static str = "null";
    type Config = NullConfig;

    async fn build(_config: NullConfig, _ctx: &BuildContext) -> anyhow::Result<Box<dyn Sink>> {
        Ok(Box::new(NullSink))
    }
}

#[async_trait]
impl Sink for NullSink {
    async fn deliver(&mut self, _batch: &[Message]) -> Result<(), SinkError> {
        Ok(())
    }
}
