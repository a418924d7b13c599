//! Incoming QoS 2, once. The broker sends a QoS 2 PUBLISH again (with the same packet id)
//! when our PUBREC did not reach it, typically because the connection was cut between the
//! pipeline accepting the message and the PUBREC leaving. That is the same message, not a new
//! one: the MQTT specification's "method B" is to remember the packet id from the PUBLISH
//! until the broker's PUBREL, and not to pass the message on again meanwhile.
//!
//! The ids are kept in memory: they last across connection cuts, not across a restart of
//! weir (after `kill -9`, a resent PUBLISH is passed on again: at least once).

use std::collections::HashMap;
use std::sync::Mutex;

/// Where a QoS 2 message the broker has not released yet stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Handed to the pipeline, not settled yet.
    InPipeline,
    /// Accepted by the pipeline and PUBREC'd (the PUBREC may have been lost).
    Accepted,
}

/// What to do with an arriving QoS 2 PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// A message not seen before: hand it on.
    New,
    /// Sent again while the first copy is still in the pipeline: drop it, the first copy's
    /// PUBREC answers both.
    InPipeline,
    /// Sent again after the pipeline accepted it: drop it and send the PUBREC again.
    Accepted,
}

/// The packet ids of QoS 2 messages between their PUBLISH and the broker's PUBREL.
#[derive(Default)]
pub struct Unreleased(Mutex<HashMap<u16, Seen>>);

impl Unreleased {
    /// A QoS 2 PUBLISH with this packet id arrived.
    pub fn arrived(&self, pkid: u16) -> Arrival {
        let mut ids = self.lock();
        match ids.get(&pkid) {
            None => {
                ids.insert(pkid, Seen::InPipeline);
                Arrival::New
            }
            Some(Seen::InPipeline) => Arrival::InPipeline,
            Some(Seen::Accepted) => Arrival::Accepted,
        }
    }

    /// The pipeline accepted the message: it is PUBREC'd next.
    pub fn accepted(&self, pkid: u16) {
        if let Some(seen) = self.lock().get_mut(&pkid) {
            *seen = Seen::Accepted;
        }
    }

    /// The pipeline could not take the message: the broker's next copy is handed on again.
    /// So is the broker's PUBREL (the exchange is over; the id may be reused).
    pub fn forget(&self, pkid: u16) {
        self.lock().remove(&pkid);
    }

    /// A new session: the broker sends nothing again.
    pub fn forget_all(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u16, Seen>> {
        // A panic elsewhere while holding the lock leaves a map that is still whole.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::{Arrival, Unreleased};

    #[test]
    fn a_copy_sent_while_the_first_is_in_the_pipeline_is_dropped() {
        let ids = Unreleased::default();
        assert_eq!(ids.arrived(7), Arrival::New);
        assert_eq!(ids.arrived(7), Arrival::InPipeline);
        assert_eq!(ids.arrived(8), Arrival::New, "another id is another message");
    }

    #[test]
    fn a_copy_sent_after_acceptance_is_answered_not_handed_on() {
        let ids = Unreleased::default();
        ids.arrived(7);
        ids.accepted(7);
        assert_eq!(ids.arrived(7), Arrival::Accepted);
    }

    #[test]
    fn after_the_release_the_id_is_a_new_message() {
        let ids = Unreleased::default();
        ids.arrived(7);
        ids.accepted(7);
        ids.forget(7);
        assert_eq!(ids.arrived(7), Arrival::New);
    }

    #[test]
    fn a_failed_message_is_handed_on_when_sent_again() {
        let ids = Unreleased::default();
        ids.arrived(7);
        ids.forget(7);
        assert_eq!(ids.arrived(7), Arrival::New);
        ids.forget_all();
        assert_eq!(ids.arrived(7), Arrival::New);
    }
}
