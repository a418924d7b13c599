//! `type = "file"`: append messages as JSON Lines to a local file.

mod config;
mod sink;

pub use config::FileConfig;
pub use sink::FileSink;
