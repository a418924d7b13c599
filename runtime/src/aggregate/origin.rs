//! Where a window's results say they come from: the topic and source of its newest message.
//!
//! The worker checks for every message whether they changed. Kept inline (topics up to
//! [`INLINE_TOPIC`] bytes) beside the window in the window table, that check reads nothing
//! else. Holding the newest message's metadata instead meant reading memory that had long
//! left the cache (with 1,000 keys, a window sees a message every 1,000), which cost ~40 ns
//! per message (docs/benchmarks.md, "Aggregates"). It also keeps no more of a message alive.

use std::borrow::Cow;
use std::sync::Arc;

use smallvec::SmallVec;
use weir_core::Metadata;

/// Longer topics are compared and kept on the heap.
const INLINE_TOPIC: usize = 48;

#[derive(Debug, Clone)]
pub struct Origin {
    /// UTF-8: always copied from a `str`.
    topic: SmallVec<[u8; INLINE_TOPIC]>,
    source: Arc<str>,
}

impl Origin {
    pub fn new(topic: &str, source: Arc<str>) -> Self {
        Origin { topic: SmallVec::from_slice(topic.as_bytes()), source }
    }

    pub fn of(meta: &Metadata) -> Self {
        Origin::new(&meta.topic, meta.source.clone())
    }

    /// Now the origin of `meta`: what differs is copied in place (a window over many topics
    /// changes its topic with nearly every message, but not its source).
    #[inline]
    pub fn update(slot: &mut Option<Origin>, meta: &Metadata) {
        let Some(origin) = slot else {
            *slot = Some(Origin::of(meta));
            return;
        };
        if origin.topic.as_slice() != meta.topic.as_bytes() {
            origin.topic.clear();
            origin.topic.extend_from_slice(meta.topic.as_bytes());
        }
        if !Arc::ptr_eq(&origin.source, &meta.source) && origin.source != meta.source {
            origin.source = meta.source.clone();
        }
    }

    pub fn topic(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.topic)
    }
}

/// The topic and source that results and checkpoints carry; empty without an origin.
pub fn topic_and_source(origin: Option<&Origin>) -> (String, Arc<str>) {
    match origin {
        Some(origin) => (origin.topic().into_owned(), origin.source.clone()),
        None => (String::new(), Arc::from("")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(source: &str, topic: &str) -> Metadata {
        Metadata::new(Arc::from(source), topic)
    }

    #[test]
    fn an_origin_follows_topic_and_source_changes_short_and_long() {
        let long = format!("factory/{}/telemetry", "x".repeat(INLINE_TOPIC));
        let mut slot = None;
        assert_eq!(topic_and_source(slot.as_ref()), (String::new(), Arc::from("")));
        let steps = [
            ("local", "factory/m1"),
            ("local", "factory/m1"),
            ("local", "factory/m2"),
            ("other", "factory/m2"),
            ("other", long.as_str()),
            ("other", &long[..long.len() - 1]),
            ("local", "f"),
        ];
        for (source, topic) in steps {
            Origin::update(&mut slot, &meta(source, topic));
            assert_eq!(topic_and_source(slot.as_ref()), (topic.to_owned(), Arc::from(source)));
        }
    }
}
