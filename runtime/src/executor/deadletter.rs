//! Dead letters: a message that could not be handled, with why, where and by whom.
//!
//! A dead letter is the original message (payload untouched) with properties added, so
//! every sink format keeps the reason: `weir-dl-reason` (trap, deadline, memory-cap, init,
//! contract, rejected, template, sink-rejected, unrouted-sink), `weir-dl-detail` (the text
//! for a person), `weir-dl-module`, `weir-dl-route`, `weir-dl-sink` when they apply.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use weir_core::{Message, Property};

/// The property that marks a message as a dead letter, and holds why.
pub const REASON: &str = "weir-dl-reason";

/// Where a dead letter goes that the dead-letter sink itself refuses (too large for its
/// queue, rejected by it): a JSON Lines file in the store directory, appended and fsynced
/// before the message counts as handled, so that an acknowledged message never ends up only
/// in a log line. `weir-last-resort` in each line says why the sink refused it.
#[derive(Debug, Clone)]
pub struct LastResort {
    pub path: PathBuf,
    /// One writer at a time (sink tasks and queue writers share it).
    lock: Arc<Mutex<()>>,
}

impl LastResort {
    pub fn new(store_dir: &Path) -> Self {
        LastResort { path: store_dir.join("deadletter-last-resort.jsonl"), lock: Arc::default() }
    }

    /// Keep `letter` (a dead letter) here, `why` the dead-letter sink refused it. If even
    /// that fails, its acknowledgement is withheld: the source sends it again.
    pub fn keep(&self, letter: &Message, why: &str) {
        let mut line = letter.to_json_line();
        line["weir-last-resort"] = serde_json::Value::from(why);
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let written = self.path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
            let mut bytes = serde_json::to_vec(&line)?;
            bytes.push(b'\n');
            file.write_all(&bytes)?;
            file.sync_data()
        });
        metrics::counter!(crate::telemetry::DEAD_LETTERS_LAST_RESORT).increment(1);
        match written {
            Ok(()) => tracing::error!(path = %self.path.display(), %why, "the dead-letter sink refused a dead letter; it is kept in the last-resort file"),
            Err(err) => {
                letter.ack.fail();
                tracing::error!(path = %self.path.display(), %why, %err, "the dead-letter sink refused a dead letter and the last-resort file cannot be written; it stays unacknowledged at its source");
            }
        }
    }
}

/// The longest `weir-dl-detail` kept, in bytes.
pub const MAX_DETAIL: usize = 4096;

/// What went wrong, and where.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub message: Message,
    pub reason: &'static str,
    pub detail: String,
    pub module: Option<String>,
    pub route: Option<String>,
    pub sink: Option<String>,
}

impl DeadLetter {
    pub fn new(message: Message, reason: &'static str, detail: impl Into<String>) -> Self {
        DeadLetter { message, reason, detail: detail.into(), module: None, route: None, sink: None }
    }

    pub fn module(mut self, module: &str) -> Self {
        self.module = Some(module.to_owned());
        self
    }

    pub fn route(mut self, route: &str) -> Self {
        self.route = Some(route.to_owned());
        self
    }

    pub fn sink(mut self, sink: &str) -> Self {
        self.sink = Some(sink.to_owned());
        self
    }

    /// The message to hand to the dead-letter sink. A detail longer than [`MAX_DETAIL`] bytes
    /// is cut there: it must fit in the dead-letter sink's format too (an MQTT property is at
    /// most 64 KiB), or the dead letter itself would be refused.
    pub fn into_message(self) -> Message {
        let DeadLetter { mut message, reason, mut detail, module, route, sink } = self;
        if detail.len() > MAX_DETAIL {
            let cut = (0..=MAX_DETAIL).rev().find(|at| detail.is_char_boundary(*at)).unwrap_or(0);
            let more = detail.len() - cut;
            detail.truncate(cut);
            detail.push_str(&format!("… ({more} bytes more)"));
        }
        let meta = message.meta_mut();
        meta.properties.push(Property::new(REASON, reason));
        meta.properties.push(Property::new("weir-dl-detail", detail));
        for (name, value) in [("weir-dl-module", module), ("weir-dl-route", route), ("weir-dl-sink", sink)] {
            if let Some(value) = value {
                meta.properties.push(Property::new(name, value));
            }
        }
        message
    }
}

#[cfg(test)]
mod tests {
    use weir_core::{Ack, Metadata};

    use super::*;

    #[test]
    fn a_long_detail_is_cut_to_fit_and_says_how_much_is_missing() {
        let message = Message::new(b"x".to_vec(), Metadata::new("test".into(), "t"), Ack::none());
        let letter = DeadLetter::new(message, "rejected", "é".repeat(5000)).into_message();
        let detail = letter.meta().property("weir-dl-detail").expect("detail");
        assert!(detail.len() <= MAX_DETAIL + 32, "{} bytes", detail.len());
        assert!(detail.ends_with("(5904 bytes more)"), "{}", &detail[detail.len() - 40..]);
    }
}
