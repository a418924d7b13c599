//! A module worker: one OS thread per module, owning its instance, calling it a batch at a
//! time. wasm calls are synchronous and CPU-bound, so they stay off the async runtime.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{error, info, warn};
use weir_core::{Message, ModuleOutput, Property};

use super::deadletter::DeadLetter;
use super::dispatch::{Dispatcher, Work};
use crate::telemetry;
use crate::wasm::abi::OutputMessage;
use crate::wasm::{BatchResult, LoadedModule, ModuleInstance};

pub struct ModuleWorker {
    pub module: LoadedModule,
    pub queue: mpsc::Receiver<Work>,
    pub dispatcher: Arc<Dispatcher>,
    pub batch_size: usize,
}

impl ModuleWorker {
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new().name(format!("weir-module-{}", self.module.name)).spawn(move || self.run())
    }

    fn run(mut self) {
        let name = self.module.name.clone();
        let mut instance = self.start();
        let mut batch: Vec<(Arc<str>, Message)> = Vec::with_capacity(self.batch_size);
        loop {
            let mut stop = false;
            match self.queue.blocking_recv() {
                Some(Work::Message { input, message, .. }) => batch.push((input, message)),
                Some(Work::Stop) | None => stop = true,
            }
            while !stop && batch.len() < self.batch_size {
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
                self.process(&mut instance, &input, messages);
            }
            if stop {
                break;
            }
        }
        info!(module = %name, "module worker stopped");
    }

    fn start(&self) -> Option<ModuleInstance> {
        match ModuleInstance::start(&self.module) {
            Ok(instance) => Some(instance),
            Err(failure) => {
                error!(module = %self.module.name, %failure, "module instance could not start; its messages go to $deadletter until it can");
                None
            }
        }
    }

    fn process(&self, instance: &mut Option<ModuleInstance>, input: &str, messages: Vec<Message>) {
        let name = &*self.module.name;
        if instance.is_none() {
            // Recycle: a fresh instance from the cached InstancePre (cheap with the pooling allocator).
            *instance = self.start();
        }
        let Some(live) = instance.as_mut() else {
            for message in messages {
                self.dispatcher.dead_letter_blocking(DeadLetter::new(message, "init", "the module instance could not start (see the log)").module(name));
            }
            // Do not spin on a module that cannot start.
            std::thread::sleep(Duration::from_millis(200));
            return;
        };
        metrics::counter!(telemetry::MODULE_IN, "module" => name.to_owned()).increment(messages.len() as u64);
        let started = Instant::now();
        let result = live.call(input, &messages);
        metrics::histogram!(telemetry::MODULE_CALL_SECONDS, "module" => name.to_owned()).record(started.elapsed().as_secs_f64());
        match result {
            Ok(results) => self.forward(messages, results),
            Err(failure) => {
                warn!(module = name, reason = failure.reason.as_str(), detail = %failure.detail, batch = messages.len(), "module call failed; batch to $deadletter, instance recycled");
                metrics::counter!(telemetry::MODULE_FAILURES, "module" => name.to_owned(), "reason" => failure.reason.as_str()).increment(1);
                *instance = None;
                for message in messages {
                    self.dispatcher.dead_letter_blocking(DeadLetter::new(message, failure.reason.as_str(), failure.detail.clone()).module(name));
                }
            }
        }
    }

    fn forward(&self, messages: Vec<Message>, results: BatchResult) {
        let name = &self.module.name;
        let default_output: Arc<str> = Arc::from("out");
        let origin = |output: Option<&str>| ModuleOutput { module: name.clone(), output: output.map_or_else(|| default_output.clone(), Arc::from) };
        let reject = |message: Message, reason: String| {
            self.dispatcher.dead_letter_blocking(DeadLetter::new(message, "rejected", reason).module(name));
        };
        let mut out = 0u64;
        let mut dropped = 0u64;
        match results {
            BatchResult::Filter(results) => {
                for (mut message, result) in messages.into_iter().zip(results) {
                    match result {
                        Ok(true) => {
                            message.meta_mut().origin = Some(origin(None));
                            out += 1;
                            self.dispatcher.dispatch_blocking(message);
                        }
                        Ok(false) => dropped += 1,
                        Err(reason) => reject(message, reason),
                    }
                }
            }
            BatchResult::Map(results) => {
                for (message, result) in messages.into_iter().zip(results) {
                    match result {
                        Ok(output) => {
                            out += 1;
                            self.dispatcher.dispatch_blocking(derive(&message, output, &origin));
                        }
                        Err(reason) => reject(message, reason),
                    }
                }
            }
            BatchResult::FlatMap(results) => {
                for (message, result) in messages.into_iter().zip(results) {
                    match result {
                        Ok(outputs) => {
                            if outputs.is_empty() {
                                dropped += 1;
                            }
                            for output in outputs {
                                out += 1;
                                self.dispatcher.dispatch_blocking(derive(&message, output, &origin));
                            }
                        }
                        Err(reason) => reject(message, reason),
                    }
                }
            }
        }
        metrics::counter!(telemetry::MODULE_OUT, "module" => name.to_string()).increment(out);
        metrics::counter!(telemetry::MODULE_DROPPED, "module" => name.to_string()).increment(dropped);
    }
}

/// A module's output message: new payload, the input's metadata with what the module changed.
fn derive(input: &Message, output: OutputMessage, origin: &dyn Fn(Option<&str>) -> ModuleOutput) -> Message {
    let mut message = input.derive(Bytes::from(output.payload));
    let meta = message.meta_mut();
    meta.origin = Some(origin(output.output.as_deref()));
    if let Some(topic) = output.topic {
        meta.topic = topic;
    }
    if let Some(properties) = output.properties {
        meta.properties = properties.into_iter().map(|p| Property::new(p.name, p.value)).collect();
    }
    if let Some(content_type) = output.content_type {
        meta.content_type = Some(content_type);
    }
    message
}
