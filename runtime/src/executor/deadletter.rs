//! Dead letters: a message that could not be handled, with why, where and by whom.
//!
//! A dead letter is the original message (payload untouched) with properties added, so
//! every sink format keeps the reason: `weir-dl-reason` (trap, deadline, memory-cap, init,
//! contract, rejected, template, sink-rejected, unrouted-sink), `weir-dl-detail` (the text
//! for a person), `weir-dl-module`, `weir-dl-route`, `weir-dl-sink` when they apply.

use weir_core::{Message, Property};

/// The property that marks a message as a dead letter, and holds why.
pub const REASON: &str = "weir-dl-reason";

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

    /// The message to hand to the dead-letter sink.
    pub fn into_message(self) -> Message {
        let DeadLetter { mut message, reason, detail, module, route, sink } = self;
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
