//! `weir queue inspect` and `weir queue verify`: depth, age and damage of a pipeline's
//! store-and-forward queues, read without changing them.

use std::path::PathBuf;

use crate::config::LoadedPipeline;
use crate::config::validate;
use crate::queue::report;

#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    /// The pipeline file (its `[store]` says where the queues are).
    pub pipeline: PathBuf,
    /// Only this sink's queue.
    #[arg(long)]
    pub sink: Option<String>,
}

/// Print every queue's report. With `verify`, fail if any queue has damage.
pub fn run(args: &QueueArgs, verify: bool) -> anyhow::Result<bool> {
    let loaded = LoadedPipeline::load(&args.pipeline)?;
    let plan = validate::plan(&loaded, &weir_connectors::registry())?;
    if let Some(sink) = &args.sink
        && !plan.queues.contains_key(sink)
    {
        let names: Vec<&str> = plan.queues.keys().map(String::as_str).collect();
        anyhow::bail!("sink `{sink}` has no queue (sinks with queues: {})", if names.is_empty() { "none".to_owned() } else { names.join(", ") });
    }
    let mut healthy = true;
    for (sink, settings) in plan.queues.iter().filter(|(name, _)| args.sink.as_ref().is_none_or(|s| s == *name)) {
        if !settings.dir.exists() {
            println!("sink `{sink}`: no queue yet ({} does not exist)", settings.dir.display());
            continue;
        }
        let report = report::inspect(sink, &settings.dir, settings.limits())?;
        print!("{report}");
        if verify && report.damaged() {
            healthy = false;
        }
    }
    if verify {
        println!("{}", if healthy { "verify: no damage found" } else { "verify: damage found (weir quarantines it and continues when it next starts)" });
    }
    Ok(healthy)
}
