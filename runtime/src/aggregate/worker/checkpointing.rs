//! Checkpoints: every open window's state (the module's snapshot), the window table and the
//! results not yet accepted, written together; read back at start, where the results no sink
//! had accepted are emitted again. A checkpoint releases the acknowledgements of the messages
//! it counts (the journal's).

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use tracing::{error, info};
use weir_core::message::now_ms;

use super::{AggregateRunner, Item, Slot, window_ref};
use crate::aggregate::checkpoint::{Checkpoint, WindowState};
use crate::aggregate::origin::{Origin, topic_and_source};
use crate::aggregate::windows::{TableState, Window, WindowId};
use crate::queue::record;
use crate::telemetry;
use crate::wasm::aggregate::{Opening, WindowRef};

impl AggregateRunner {
    /// Start the instance and continue from the checkpoint, if there is one.
    pub fn restore(&mut self) {
        let path = self.spec.state_path.clone();
        let checkpoint = match Checkpoint::read(&path) {
            Ok(checkpoint) => checkpoint,
            Err(err) => {
                let aside = path.with_extension(format!("damaged-{}", now_ms()));
                let moved = std::fs::rename(&path, &aside).is_ok();
                error!(module = %self.name, error = %format!("{err:#}"), moved_to = %aside.display(), moved, "window state unreadable; starting with empty windows");
                None
            }
        };
        if let Some(checkpoint) = checkpoint {
            let windows = checkpoint.windows.len();
            self.emitted = checkpoint.emitted.iter().cloned().map(|(window, state)| (window.id, (window, state))).collect();
            self.load(checkpoint.clone());
            self.last = Some(checkpoint);
            info!(module = %self.name, windows, unaccepted_results = self.emitted.len(), "continuing open windows from {}", path.display());
        }
        self.start_instance();
        // Results that no sink had accepted before the stop: emit them again.
        if !self.emitted.is_empty()
            && let Some(instance) = self.instance.as_mut()
        {
            let pending: Vec<(Window, WindowState)> = self.emitted.values().cloned().collect();
            let openings: Vec<Opening<'_>> = pending.iter().map(|(w, s)| Opening { window: window_ref(w), snapshot: s.state.as_deref() }).collect();
            let refs: Vec<WindowRef<'_>> = pending.iter().map(|(w, _)| window_ref(w)).collect();
            match instance.open_windows(&openings).and_then(|()| instance.close_windows(&refs)) {
                Ok(outputs) => {
                    for ((window, state), outputs) in pending.iter().zip(outputs) {
                        let origin = Origin::new(&state.topic, state.source.clone());
                        self.emit(window, Some(&origin), outputs);
                    }
                }
                Err(failure) => {
                    error!(module = %self.name, %failure, "could not emit the results left from before the stop; they stay saved for the next start")
                }
            }
        }
        self.changed = true;
    }

    /// The window table and each open window's state as `checkpoint` has them.
    pub(super) fn load(&mut self, checkpoint: Checkpoint) {
        self.table.import(decode_table(checkpoint.table));
        let mut states: HashMap<WindowId, WindowState> = checkpoint.windows.into_iter().map(|state| (state.id, state)).collect();
        for open in self.table.open_windows_mut() {
            if let Some(state) = states.remove(&open.window.id) {
                open.data = Slot { checkpointed: state.state, dirty: false, origin: Some(Origin::new(&state.topic, state.source)) };
            }
        }
    }

    /// Checkpoint if the interval has passed or too many messages are journaled.
    pub fn maybe_checkpoint(&mut self) {
        // A result a sink accepted leaves the checkpoint at once, so that a restart does not
        // send it again. (Acceptances that come while a checkpoint is written are taken by the
        // next one together.)
        let accepted = self.take_accepted();
        let since = self.last_checkpoint.elapsed();
        let due = self.changed && since >= self.spec.checkpoint_interval;
        if due || accepted || self.journal.len() >= self.max_held {
            self.checkpoint();
        }
    }

    /// Forget the results sinks accepted since the last look; whether there were any.
    fn take_accepted(&mut self) -> bool {
        let mut accepted = false;
        while let Ok(id) = self.accepted_rx.try_recv() {
            accepted |= self.emitted.remove(&id).is_some();
            self.changed = true;
        }
        accepted
    }

    /// Save every window's state; then release the held acknowledgements.
    pub fn checkpoint(&mut self) {
        self.take_accepted();
        if !self.changed && self.journal.is_empty() {
            return;
        }
        let started = Instant::now();
        let dirty: Vec<u64> = self.table.open_windows().filter(|open| open.data.dirty).map(|open| open.window.id).collect();
        if !dirty.is_empty() {
            let snapshot = match self.live() {
                Ok(instance) => instance.snapshot_windows(&dirty),
                Err(failure) => Err(failure),
            };
            match snapshot {
                Ok(states) => {
                    let mut states: HashMap<u64, Vec<u8>> = dirty.into_iter().zip(states).collect();
                    for open in self.table.open_windows_mut() {
                        if let Some(state) = states.remove(&open.window.id) {
                            open.data.checkpointed = Some(state);
                            open.data.dirty = false;
                        }
                    }
                }
                Err(failure) => return self.recover(failure, &[], &[], &mut []),
            }
        }
        let windows = self
            .table
            .open_windows()
            .map(|open| {
                let (topic, source) = topic_and_source(open.data.origin.as_ref());
                WindowState { id: open.window.id, state: open.data.checkpointed.clone(), topic, source }
            })
            .collect();
        let checkpoint = Checkpoint { table: encode_table(self.table.export()), windows, emitted: self.emitted.values().cloned().collect() };
        match checkpoint.write(&self.spec.state_path) {
            Ok(()) => {
                self.last = Some(checkpoint);
                self.journal.clear();
                self.emitted_since.clear();
                self.given_up.clear();
                self.changed = false;
            }
            Err(err) => {
                error!(module = %self.name, error = %format!("{err:#}"), "cannot save the window state; acknowledgements are held until it can be saved")
            }
        }
        self.last_checkpoint = Instant::now();
        metrics::histogram!(telemetry::AGGREGATE_CHECKPOINT_SECONDS, "module" => self.name.to_string()).record(started.elapsed().as_secs_f64());
        metrics::gauge!(telemetry::AGGREGATE_OPEN_WINDOWS, "module" => self.name.to_string()).set(self.table.open_windows().count() as f64);
        metrics::gauge!(telemetry::AGGREGATE_KEYS, "module" => self.name.to_string()).set(self.table.key_count() as f64);
    }
}

/// Retained messages (sliding windows) as queue records.
fn encode_table(state: TableState<Item>) -> TableState<Vec<u8>> {
    state.map_retained(|at, item| match item {
        Item::Kept(message) => {
            let mut bytes = Vec::new();
            record::encode(&mut bytes, &message, at, 0);
            Some(bytes)
        }
        // Not retained: only sliding windows keep messages, and they keep copies.
        Item::InBatch(_) => None,
    })
}

fn decode_table(state: TableState<Vec<u8>>) -> TableState<Item> {
    state.map_retained(|_, bytes| record::decode(&Bytes::from(bytes)).ok().map(|record| Item::Kept(record.message)))
}
