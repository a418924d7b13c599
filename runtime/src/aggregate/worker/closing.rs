//! Closing windows: snapshot (so a result survives a crash until a sink accepts it), close,
//! checkpoint, then emit.
//!
//! A close that fails is found out window by window: the step that closed them (a message
//! that ended a count or event-time window, or a clock tick) is taken again after a rollback,
//! closing one window per call ([`AggregateRunner::retry_closes`]); a window whose close fails
//! alone is given up: its state, as the module snapshots it (everything it counted), goes to
//! `$deadletter` with reason `close-failed`, and the step goes on without it. The message
//! that ended the window is counted in it, not blamed.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tracing::error;
use weir_core::{Ack, AckOutcome, Message, Metadata, ModuleOutput, Property};

use super::{AggregateRunner, Slot, WINDOW_ID, window_ref};
use crate::aggregate::checkpoint::WindowState;
use crate::aggregate::origin::{Origin, topic_and_source};
use crate::aggregate::windows::{Window, WindowId};
use crate::telemetry;
use crate::wasm::Failure;
use crate::wasm::abi::OutputMessage;
use crate::wasm::aggregate::WindowRef;

/// Which close failed.
#[derive(Debug, Clone, Copy)]
pub(super) enum Closing {
    /// One of several closed in one call.
    Several,
    /// This window's, closed alone.
    Window(WindowId),
}

impl AggregateRunner {
    /// Close `windows` (but those given up, which go to `$deadletter` with their state).
    /// On failure, [`Self::close_failed`] says which close it was.
    pub(super) fn close(&mut self, windows: Vec<(Window, Slot)>) -> Result<(), Failure> {
        let (given_up, windows): (Vec<_>, Vec<_>) = windows.into_iter().partition(|(window, _)| self.given_up.contains_key(&window.id));
        for (window, slot) in given_up {
            self.dead_letter_window(&window, &slot);
        }
        if self.close_singly && windows.len() > 1 {
            for one in windows {
                self.close(vec![one])?;
            }
            return Ok(());
        }
        let alone = match &windows[..] {
            [] => return Ok(()),
            [(window, _)] => Closing::Window(window.id),
            _ => Closing::Several,
        };
        self.close_together(windows).inspect_err(|_| self.close_failed = Some(alone))
    }

    /// Snapshot the windows that changed, close all in one call, and keep their results for
    /// [`Self::send_closed`].
    fn close_together(&mut self, windows: Vec<(Window, Slot)>) -> Result<(), Failure> {
        let dirty: Vec<u64> = windows.iter().filter(|(_, slot)| slot.dirty).map(|(window, _)| window.id).collect();
        let instance = self.live()?;
        let mut states: HashMap<u64, Vec<u8>> =
            if dirty.is_empty() { HashMap::new() } else { dirty.iter().copied().zip(instance.snapshot_windows(&dirty)?).collect() };
        let refs: Vec<WindowRef<'_>> = windows.iter().map(|(window, _)| window_ref(window)).collect();
        let outputs = instance.close_windows(&refs)?;
        for ((window, slot), outputs) in windows.into_iter().zip(outputs) {
            // Closed and sent on before a failure rolled the windows back: not again.
            if !self.emitted_since.insert(window.id) {
                continue;
            }
            let state = states.remove(&window.id).or(slot.checkpointed);
            let (topic, source) = topic_and_source(slot.origin.as_ref());
            self.emitted.insert(window.id, (window.clone(), WindowState { id: window.id, state, topic, source }));
            self.closed.push((window, slot.origin, outputs));
        }
        Ok(())
    }

    /// `failure` ended a step that closed windows ([`Self::close_failed`] is set): roll back
    /// and take the step (`again`) once more, one close per call, giving up each window whose
    /// close fails alone, until the step goes through (`Ok(true)`). `Ok(false)`: it failed
    /// otherwise than in a close (rolled back: the windows as before the step). `Err`: a
    /// rollback failed.
    pub(super) fn retry_closes(&mut self, failure: &mut Failure, again: &mut dyn FnMut(&mut Self) -> Result<(), Failure>) -> Result<bool, ()> {
        loop {
            let closing = self.close_failed.take();
            if let Some(Closing::Window(window)) = closing {
                error!(module = %self.name, window, %failure, "a window could not be closed; its state goes to $deadletter");
                self.given_up.insert(window, failure.to_string());
            }
            if !self.rollback() {
                return Err(());
            }
            if closing.is_none() {
                return Ok(false);
            }
            self.close_singly = true;
            let result = again(self);
            self.close_singly = false;
            match result {
                Ok(()) => return Ok(true),
                Err(next) => *failure = next,
            }
        }
    }

    /// A window given up: its state (the module's snapshot, else the last checkpoint's) to
    /// `$deadletter`, with its key and bounds, and the topic and source its results would have had.
    fn dead_letter_window(&mut self, window: &Window, slot: &Slot) {
        let snapshot = self.instance.as_mut().and_then(|instance| instance.snapshot_windows(&[window.id]).ok()).and_then(|mut states| states.pop());
        let (topic, source) = topic_and_source(slot.origin.as_ref());
        let mut meta = Metadata::new(source, topic);
        meta.properties.push(Property::new("window_key", window.key.to_string()));
        meta.properties.push(Property::new("window_start", window.start_ms.to_string()));
        meta.properties.push(Property::new("window_end", window.end_ms.to_string()));
        let letter = Message::new(snapshot.or(slot.checkpointed.clone()).unwrap_or_default(), meta, Ack::none());
        let how = self.given_up.get(&window.id).cloned().unwrap_or_default();
        self.dead_letter(letter, "close-failed", format!("closing the window failed, and again when closed alone on a new instance: {how}"));
    }

    /// Send on the results of the windows closed since the last call, after a checkpoint that
    /// records them as closed (with their state, until a sink accepts them). So a crash after
    /// this point never gives their inputs to a fresh window again: those are acknowledged,
    /// and a result not yet accepted is sent again at start, from its saved state, with the
    /// same `weir-window` id.
    pub(super) fn send_closed(&mut self) {
        if self.closed.is_empty() {
            return;
        }
        self.changed = true;
        self.checkpoint();
        for (window, origin, outputs) in std::mem::take(&mut self.closed) {
            self.emit(&window, origin.as_ref(), outputs);
        }
    }

    /// Route a closed window's results; it leaves the checkpoint once they are accepted.
    pub(super) fn emit(&mut self, window: &Window, origin: Option<&Origin>, outputs: Vec<OutputMessage>) {
        if outputs.is_empty() {
            self.emitted.remove(&window.id);
            return;
        }
        metrics::counter!(telemetry::MODULE_OUT, "module" => self.name.to_string()).increment(outputs.len() as u64);
        let (tx, wake) = (self.accepted_tx.clone(), self.accepted.clone());
        let id = window.id;
        let ack = Ack::new(move |outcome| {
            if outcome == AckOutcome::Accepted {
                let _ = tx.send(id);
                wake.notify_one();
            }
        });
        for output in outputs {
            let message = self.result_message(window, origin, output, ack.clone());
            self.dispatcher.dispatch_blocking(message);
        }
    }

    fn result_message(&self, window: &Window, origin: Option<&Origin>, output: OutputMessage, ack: Ack) -> Message {
        let (topic, source) = topic_and_source(origin);
        let mut meta = Metadata::new(source, output.topic.unwrap_or(topic));
        meta.origin = Some(ModuleOutput { module: self.name.clone(), output: Arc::from(output.output.as_deref().unwrap_or("out")) });
        meta.content_type = output.content_type;
        meta.properties = output.properties.unwrap_or_default().into_iter().map(|p| Property::new(p.name, p.value)).collect();
        meta.properties.push(Property::new("window_key", window.key.to_string()));
        meta.properties.push(Property::new("window_start", window.start_ms.to_string()));
        meta.properties.push(Property::new("window_end", window.end_ms.to_string()));
        meta.properties.push(Property::new(WINDOW_ID, format!("{}/{}/{}", self.name, window.key, window.start_ms)));
        Message::new(Bytes::from(output.payload), meta, ack)
    }
}
