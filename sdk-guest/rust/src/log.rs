//! Logging through the host: lines show up in weir's log with the module's name.

use crate::bindings::weir::module::log::{Level, log as host_log};

pub fn trace(message: &str) {
    host_log(Level::Trace, message);
}
pub fn debug(message: &str) {
    host_log(Level::Debug, message);
}
pub fn info(message: &str) {
    host_log(Level::Info, message);
}
pub fn warn(message: &str) {
    host_log(Level::Warn, message);
}
pub fn error(message: &str) {
    host_log(Level::Error, message);
}
