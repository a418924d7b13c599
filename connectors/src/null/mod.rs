//! `type = "null"`: accepts every message and keeps none. For routes whose output is only
//! counted (`weir_sink_messages_total`) and for benchmarks that measure weir without a
//! destination's cost.

mod config;
mod sink;

pub use config::NullConfig;
pub use sink::NullSink;
