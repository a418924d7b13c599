//! `weir queue inspect` and `weir queue verify`: depth, age and damage of a pipeline's
//! store-and-forward queues, read without changing them; `weir queue repair`: what `weir run`
//! does to a damaged queue when it opens it, on demand.

use std::path::PathBuf;

use crate::config::validate;
use anyhow::Context;

use crate::queue::{QueueSettings, SinkQueue, report};

#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    /// The pipeline file (its `[store]` says where the queues are).
    pub pipeline: PathBuf,
    /// Only this sink's queue.
    #[arg(long)]
    pub sink: Option<String>,
}

/// The queues `args` names (every queue of the pipeline, or `--sink`'s) that exist on disk.
fn queues(args: &QueueArgs) -> anyhow::Result<Vec<(String, QueueSettings)>> {
    let loaded = super::check::load(&args.pipeline)?;
    let plan = validate::plan(&loaded, &weir_connectors::registry())?;
    if let Some(sink) = &args.sink
        && !plan.queues.contains_key(sink)
    {
        let names: Vec<&str> = plan.queues.keys().map(String::as_str).collect();
        anyhow::bail!("sink `{sink}` has no queue (sinks with queues: {})", if names.is_empty() { "none".to_owned() } else { names.join(", ") });
    }
    let mut found = Vec::new();
    for (sink, settings) in plan.queues.into_iter().filter(|(name, _)| args.sink.as_ref().is_none_or(|s| s == name)) {
        if settings.dir.exists() {
            found.push((sink, settings));
        } else {
            println!("sink `{sink}`: no queue yet ({} does not exist)", settings.dir.display());
        }
    }
    Ok(found)
}

/// `weir queue repair`: on demand, what `weir run` does to a queue when it opens it. Damaged
/// bytes are copied to the quarantine directory, a torn end is cut off, a damaged segment
/// header is written again, a segment or lane that cannot be read is set aside whole; then
/// the queue is closed cleanly. Prints the report before and after. Refuses a queue in use.
pub fn repair(args: &QueueArgs) -> anyhow::Result<()> {
    for (sink, settings) in queues(args)? {
        let before = report::inspect(&sink, &settings.dir, settings.limits())?;
        print!("{before}");
        let queue = SinkQueue::open_scanning(&sink, settings.clone())?;
        queue.close().with_context(|| format!("closing the repaired queue of sink `{sink}`"))?;
        drop(queue);
        let after = report::inspect(&sink, &settings.dir, settings.limits())?;
        let kept: u64 = after.lanes.iter().map(|lane| lane.depth).sum();
        println!("sink `{sink}`: repaired: {kept} message(s) kept, {} file(s) in {}", after.quarantined.len(), settings.dir.join("quarantine").display());
    }
    Ok(())
}

/// Print every queue's report. With `verify`, fail if any queue has damage.
pub fn run(args: &QueueArgs, verify: bool) -> anyhow::Result<bool> {
    let mut healthy = true;
    for (sink, settings) in queues(args)? {
        let report = report::inspect(&sink, &settings.dir, settings.limits())?;
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
