//! `weir filter test`: run a module on sample messages, without a broker or a pipeline.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use weir_core::Message;

use crate::config::units::{ByteSize, HumanDuration};
use crate::samples;
use crate::wasm::{BatchResult, EngineSettings, LoadedModule, ModuleInstance, ModuleKind, ModuleLimits, WasmEngine};

#[derive(Debug, clap::Args)]
pub struct FilterTestArgs {
    /// The module (.wasm component).
    pub module: PathBuf,
    /// Sample messages, JSON Lines: one payload per line, or an envelope
    /// {"payload": …, "topic": …, "properties": {…}} (the file sink's format).
    #[arg(long)]
    pub input: PathBuf,
    /// Module config, as key=value (value parsed as JSON when it is JSON, else a string).
    /// Repeatable; dotted keys make nested tables (a.b=1).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// The kind to run it as; default: the one it exports.
    #[arg(long)]
    pub kind: Option<ModuleKind>,
    /// Messages per call.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Memory cap per instance.
    #[arg(long, default_value = "64MiB", value_parser = ByteSize::parse)]
    pub memory: ByteSize,
    /// Deadline per call.
    #[arg(long, default_value = "1s", value_parser = HumanDuration::parse)]
    pub deadline: HumanDuration,
}

/// `key=value` pairs into a JSON object.
pub fn config_json(pairs: &[String]) -> anyhow::Result<serde_json::Value> {
    let mut root = serde_json::Map::new();
    for pair in pairs {
        let (key, value) = pair.split_once('=').with_context(|| format!("--config `{pair}` is not KEY=VALUE"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().filter(|k| !k.is_empty()).with_context(|| format!("--config `{pair}` has an empty key"))?;
        let mut table = &mut root;
        for part in parts {
            let entry = table.entry(part.to_owned()).or_insert_with(|| serde_json::Value::Object(Default::default()));
            table = entry.as_object_mut().with_context(|| format!("--config `{pair}`: `{part}` is already a value, not a table"))?;
        }
        table.insert(last.to_owned(), value);
    }
    Ok(serde_json::Value::Object(root))
}

pub fn run(args: &FilterTestArgs) -> anyhow::Result<()> {
    let config = config_json(&args.config)?;
    let messages = samples::read(&args.input)?;
    if messages.is_empty() {
        bail!("{} holds no messages", args.input.display());
    }
    let limits = ModuleLimits { memory_bytes: args.memory.0 as usize, deadline: args.deadline.0 };
    let settings = EngineSettings { max_memory_bytes: limits.memory_bytes, max_instances: 4, tick: Duration::from_millis(5), ..EngineSettings::default() };
    let engine = WasmEngine::new(&settings)?;
    let name = args.module.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "module".into());
    let module = LoadedModule::load(&engine, &name, &args.module, args.kind, config.to_string(), limits)?;
    let mut instance = Some(ModuleInstance::start(&module).map_err(|failure| anyhow::anyhow!("module `{name}` does not start: {failure}"))?);
    let (mut kept, mut dropped, mut rejected) = (0usize, 0usize, 0usize);
    let mut index = 0usize;
    for batch in messages.chunks(args.batch_size.max(1)) {
        let live = match &mut instance {
            Some(live) => live,
            None => instance.insert(ModuleInstance::start(&module).map_err(|f| anyhow::anyhow!("module `{name}` does not restart: {f}"))?),
        };
        match live.call("input", batch) {
            Ok(results) => {
                report(batch, index, results, &mut kept, &mut dropped, &mut rejected);
            }
            Err(failure) => {
                for offset in 0..batch.len() {
                    println!("#{:<4} DEAD-LETTER  {}", index + offset + 1, failure);
                }
                rejected += batch.len();
                instance = None;
            }
        }
        index += batch.len();
    }
    eprintln!("{} messages: {kept} out, {dropped} dropped, {rejected} to $deadletter ({} {})", messages.len(), module.kind, args.module.display());
    Ok(())
}

fn show(payload: &[u8]) -> String {
    match std::str::from_utf8(payload) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("<{} bytes of binary>", payload.len()),
    }
}

fn report(batch: &[Message], start: usize, results: BatchResult, kept: &mut usize, dropped: &mut usize, rejected: &mut usize) {
    let number = |i: usize| format!("#{:<4}", start + i + 1);
    match results {
        BatchResult::Filter(results) => {
            for (i, (message, result)) in batch.iter().zip(results).enumerate() {
                match result {
                    Ok(true) => {
                        *kept += 1;
                        println!("{} KEPT         {}", number(i), show(&message.payload));
                    }
                    Ok(false) => {
                        *dropped += 1;
                        println!("{} DROPPED      {}  (the filter returned false)", number(i), show(&message.payload));
                    }
                    Err(reason) => {
                        *rejected += 1;
                        println!("{} DEAD-LETTER  {}  (rejected: {reason})", number(i), show(&message.payload));
                    }
                }
            }
        }
        BatchResult::Map(results) => {
            for (i, result) in results.into_iter().enumerate() {
                match result {
                    Ok(output) => {
                        *kept += 1;
                        let topic = output.topic.map(|t| format!("  [topic {t}]")).unwrap_or_default();
                        println!("{} OUT          {}{topic}", number(i), show(&output.payload));
                    }
                    Err(reason) => {
                        *rejected += 1;
                        println!("{} DEAD-LETTER  {}  (rejected: {reason})", number(i), show(&batch[i].payload));
                    }
                }
            }
        }
        BatchResult::FlatMap(results) => {
            for (i, result) in results.into_iter().enumerate() {
                match result {
                    Ok(outputs) if outputs.is_empty() => {
                        *dropped += 1;
                        println!("{} DROPPED      {}  (no outputs)", number(i), show(&batch[i].payload));
                    }
                    Ok(outputs) => {
                        for output in outputs {
                            *kept += 1;
                            let to = output.output.as_deref().unwrap_or("out");
                            println!("{} OUT({to:<6}) {}", number(i), show(&output.payload));
                        }
                    }
                    Err(reason) => {
                        *rejected += 1;
                        println!("{} DEAD-LETTER  {}  (rejected: {reason})", number(i), show(&batch[i].payload));
                    }
                }
            }
        }
    }
}
