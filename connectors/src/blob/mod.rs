//! `type = "blob"`: batches of messages as objects in Azure Blob Storage, S3, Google Cloud
//! Storage or a local directory (through `object_store`), named from a template with time
//! partitions so downstream analytics can find them.

mod config;
mod name;
mod sink;

pub use config::BlobConfig;
pub use sink::BlobSink;
