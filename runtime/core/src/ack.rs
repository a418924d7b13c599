//! Acknowledgements: how a source learns that a message has been fully handled.
//!
//! A source attaches an [`Ack`] to each message that needs one (MQTT QoS 1/2). Every copy
//! of the message (one per route, one per module output derived from it) holds a clone.
//! When the last clone is dropped the source's callback runs once with the outcome:
//! [`AckOutcome::Accepted`] if nobody called [`Ack::fail`], else [`AckOutcome::Failed`], in
//! which case the source must not acknowledge and the broker redelivers it later.
//!
//! An `Ack` may also hold a permit of the source's in-flight window, so that a slow sink
//! slows the source instead of growing memory.

use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::OwnedSemaphorePermit;

/// What happened to a message, reported once to its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// Every sink it was routed to accepted it (delivered, durably queued, or dead-lettered),
    /// or it was deliberately dropped by a filter.
    Accepted,
    /// At least one holder could not hand it on (e.g. shutdown before a sink accepted it).
    Failed,
}

type Callback = Box<dyn FnOnce(AckOutcome) + Send>;

struct Inner {
    callback: Mutex<Option<Callback>>,
    failed: AtomicBool,
    /// Places in the source's in-flight windows (messages, bytes), given back on drop.
    _permits: [Option<OwnedSemaphorePermit>; 2],
}

impl Drop for Inner {
    fn drop(&mut self) {
        let outcome = if self.failed.load(Ordering::Acquire) { AckOutcome::Failed } else { AckOutcome::Accepted };
        let callback = self.callback.get_mut().map(Option::take).unwrap_or_else(|poisoned| poisoned.into_inner().take());
        if let Some(callback) = callback {
            callback(outcome);
        }
    }
}

/// A shared acknowledgement handle. Cloning is cheap; the callback runs when the last clone drops.
#[derive(Clone, Default)]
pub struct Ack(Option<Arc<Inner>>);

impl Ack {
    /// No acknowledgement needed (QoS 0, generated messages).
    pub fn none() -> Self {
        Ack(None)
    }

    /// Run `callback` once every clone of this handle is gone.
    pub fn new(callback: impl FnOnce(AckOutcome) + Send + 'static) -> Self {
        Self::with_permit(callback, None)
    }

    /// Like [`Ack::new`], holding a permit of the source's in-flight window until then.
    pub fn with_permit(callback: impl FnOnce(AckOutcome) + Send + 'static, permit: Option<OwnedSemaphorePermit>) -> Self {
        Self::with_permits(callback, [permit, None])
    }

    /// Like [`Ack::new`], holding permits of the source's in-flight windows (messages and
    /// bytes, see [`crate::SourceContext::reserve_bytes`]) until then.
    pub fn with_permits(callback: impl FnOnce(AckOutcome) + Send + 'static, permits: [Option<OwnedSemaphorePermit>; 2]) -> Self {
        Ack(Some(Arc::new(Inner { callback: Mutex::new(Some(Box::new(callback))), failed: AtomicBool::new(false), _permits: permits })))
    }

    /// Mark the message as not handed on: the source will not acknowledge it.
    pub fn fail(&self) {
        if let Some(inner) = &self.0 {
            inner.failed.store(true, Ordering::Release);
        }
    }

    /// Whether anything waits for this acknowledgement.
    pub fn is_tracked(&self) -> bool {
        self.0.is_some()
    }
}

impl fmt::Debug for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("Ack(none)"),
            Some(inner) => write!(f, "Ack(holders={}, failed={})", Arc::strong_count(inner), inner.failed.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn callback_runs_once_when_last_clone_drops() {
        let (tx, rx) = mpsc::channel();
        let ack = Ack::new(move |outcome| tx.send(outcome).expect("receiver alive"));
        let copy = ack.clone();
        drop(ack);
        assert!(rx.try_recv().is_err(), "callback ran while a clone was alive");
        drop(copy);
        assert_eq!(rx.try_recv().expect("callback ran"), AckOutcome::Accepted);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn one_failed_holder_fails_the_message() {
        let (tx, rx) = mpsc::channel();
        let ack = Ack::new(move |outcome| tx.send(outcome).expect("receiver alive"));
        let copy = ack.clone();
        copy.fail();
        drop(copy);
        drop(ack);
        assert_eq!(rx.try_recv().expect("callback ran"), AckOutcome::Failed);
    }
}
