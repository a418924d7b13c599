//! Messages that arrive on a publisher's connection. IoT Hub allows one connection per
//! device and sends cloud-to-device messages on it, so a source listens on the sink's
//! connection instead of opening its own.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use weir_core::QoS;

use super::client::Received;

/// What a publisher's connection does with publishes from the broker.
pub struct Inbound {
    pub topics: Vec<String>,
    pub qos: QoS,
    listener: Mutex<Option<mpsc::UnboundedSender<Box<Received>>>>,
    subscribed: watch::Sender<bool>,
}

impl Inbound {
    /// Subscribe to `topics` (once someone listens) and hand what arrives to the listener.
    /// The connection acknowledges nothing itself: the listener does, when it may.
    pub fn new(topics: Vec<String>, qos: QoS) -> Arc<Self> {
        Arc::new(Inbound { topics, qos, listener: Mutex::new(None), subscribed: watch::Sender::new(false) })
    }

    /// Start listening: publishes go to the returned receiver from now on.
    pub fn listen(&self) -> mpsc::UnboundedReceiver<Box<Received>> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut listener) = self.listener.lock() {
            *listener = Some(tx);
        }
        rx
    }

    /// Whether a listener wants the subscriptions (the connection renews them on reconnect).
    pub fn listening(&self) -> bool {
        self.listener.lock().map(|l| l.as_ref().is_some_and(|tx| !tx.is_closed())).unwrap_or(false)
    }

    /// `true` while the broker has granted the subscriptions on the current connection.
    pub fn subscribed(&self) -> watch::Receiver<bool> {
        self.subscribed.subscribe()
    }

    pub(super) fn set_subscribed(&self, subscribed: bool) {
        self.subscribed.send_replace(subscribed);
    }

    /// Hand a publish to the listener; without one it stays unacknowledged (the broker
    /// delivers it again on a later connection).
    pub(super) fn deliver(&self, received: Box<Received>) {
        if let Ok(listener) = self.listener.lock()
            && let Some(tx) = listener.as_ref()
        {
            let _ = tx.send(received);
        }
    }
}
