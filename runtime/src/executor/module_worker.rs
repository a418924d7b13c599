//! A module worker: one OS thread per module, calling it a batch at a time with what reaches
//! its queue. wasm calls are synchronous and CPU-bound, so slow ones stay off the async
//! runtime; short ones may be made inline instead (see [`super::module_slot`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::info;
use weir_core::Message;

use super::dispatch::{Dispatcher, Work};
use super::module_slot::ModuleSlot;

pub struct ModuleWorker {
    pub slot: Arc<ModuleSlot>,
    pub queue: mpsc::Receiver<Work>,
    pub dispatcher: Arc<Dispatcher>,
}

impl ModuleWorker {
    /// Start the thread; call from inside the async runtime, whose timers and I/O the
    /// module's WASI calls use.
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new().name(format!("weir-module-{}", self.slot.module.name)).spawn(move || {
            let _entered = runtime.enter();
            self.run()
        })
    }

    fn run(mut self) {
        // However the thread ends, nothing may wait for it to handle its backlog any more.
        let _close = CloseOnDrop(self.slot.clone());
        self.slot.start();
        let batch_size = self.slot.batch_size;
        let mut batch: Vec<(Arc<str>, Message)> = Vec::with_capacity(batch_size);
        loop {
            let mut stop = false;
            match self.queue.blocking_recv() {
                Some(Work::Message { input, message, .. }) => batch.push((input, message)),
                Some(Work::Stop) | None => stop = true,
            }
            while !stop && batch.len() < batch_size {
                match self.queue.try_recv() {
                    Ok(Work::Message { input, message, .. }) => batch.push((input, message)),
                    Ok(Work::Stop) => stop = true,
                    Err(_) => break,
                }
            }
            // Calls go per run of one input, keeping order.
            while !batch.is_empty() {
                let input = batch[0].0.clone();
                let run = batch.iter().take_while(|(i, _)| *i == input).count();
                let messages: Vec<Message> = batch.drain(..run).map(|(_, m)| m).collect();
                let processed = self.slot.call_queued(&input, messages);
                self.dispatcher.send_on_blocking(processed.outputs, processed.dead);
                // Only now: an inline call may not overtake what these messages became.
                self.slot.handled(run);
                if processed.start_failed {
                    // Do not spin on a module that cannot start.
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            if stop {
                break;
            }
        }
        info!(module = %self.slot.module.name, "module worker stopped");
    }
}

struct CloseOnDrop(Arc<ModuleSlot>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}
