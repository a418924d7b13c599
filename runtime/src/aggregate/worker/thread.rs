//! The worker thread of an aggregate module: it waits for messages, the clock's tick, or a
//! sink's acceptance of a result, and drives the [`AggregateRunner`] with them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::info;

use super::AggregateRunner;
use crate::aggregate::AggregateSpec;
use crate::executor::dispatch::{Dispatcher, Work};
use crate::wasm::LoadedModule;

pub struct AggregateWorker {
    pub module: LoadedModule,
    pub spec: AggregateSpec,
    pub queue: mpsc::Receiver<Work>,
    pub dispatcher: Arc<Dispatcher>,
    pub batch_size: usize,
    /// Held acknowledgements that force a checkpoint (half the sources' in-flight window,
    /// so sources never stall waiting for one).
    pub max_held: usize,
    /// The runtime whose timer paces the worker's clock ticks.
    pub runtime: tokio::runtime::Handle,
}

impl AggregateWorker {
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new().name(format!("weir-aggregate-{}", self.module.name)).spawn(move || self.run())
    }

    fn run(self) {
        let AggregateWorker { module, spec, mut queue, dispatcher, batch_size, max_held, runtime } = self;
        // The module's WASI calls use this runtime's timers and I/O.
        let _entered = runtime.enter();
        let tick = Duration::from_millis(100).min(spec.checkpoint_interval);
        let mut runner = AggregateRunner::new(module, spec, dispatcher, max_held);
        runner.restore();
        let mut batch = Vec::with_capacity(batch_size);
        let accepted = runner.accepted.clone();
        loop {
            let mut stop = false;
            // Wake for work, for the clock, or when a sink accepted a result (to checkpoint it).
            let next = runtime.block_on(async {
                tokio::select! {
                    received = tokio::time::timeout(tick, queue.recv()) => received.ok(),
                    () = accepted.notified() => None,
                }
            });
            match next {
                None => {}
                Some(Some(Work::Message { message, .. })) => batch.push(message),
                Some(Some(Work::Stop) | None) => stop = true,
            }
            while !stop && batch.len() < batch_size {
                match queue.try_recv() {
                    Ok(Work::Message { message, .. }) => batch.push(message),
                    Ok(Work::Stop) => stop = true,
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                runner.process(std::mem::take(&mut batch));
            }
            runner.advance();
            if stop {
                runner.checkpoint();
                break;
            }
            runner.maybe_checkpoint();
        }
        info!(module = %runner.name, windows = runner.table.open_windows().count(), "aggregate worker stopped; open windows saved");
    }
}
