//! The `weir` command line.
//!
//! - `weir run PIPELINE.toml`: run a pipeline until Ctrl-C / SIGTERM, then drain;
//! - `weir check PIPELINE.toml`: validate everything without running;
//! - `weir filter test MODULE.wasm --input samples.jsonl`: try a module on sample input;
//! - `weir route explain ROUTE --message FILE`: why a route takes a message or not;
//! - `weir queue inspect|verify PIPELINE.toml`: depth, age and damage of the sink queues;
//! - `weir schema`: the JSON Schema of the pipeline format;
//! - `weir simulate`: publish simulated machine telemetry to a broker (the demo's machines).
//!
//! Exit codes ([`Exit`]): 0 done, or yes; 1 no (a route that does not take the message, a
//! pipeline with errors, a damaged queue), or a failure while running; 2 the input is unusable
//! (arguments, a route that does not parse, a file that cannot be read).

pub mod check;
mod filter_test;
mod queue;
mod route_explain;
mod run;
mod schema;
mod simulate;

pub use simulate::{SimulateArgs, run as simulate};

/// Simulator arguments for `port`, as `weir simulate --port … --machines … --rate … --count …`.
pub fn simulate_args(port: u16, machines: u32, rate: f64, count: u64) -> SimulateArgs {
    SimulateArgs { host: "127.0.0.1".into(), port, machines, rate, count: Some(count), topic: "factory/{machine}/telemetry".into() }
}

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::telemetry::{self, LogFormat};

/// weir: a WebAssembly-extensible edge stream processor.
///
/// weir runs beside an MQTT broker: it takes messages from broker topics, passes them
/// through filter, map and aggregate modules written in any language that compiles to
/// WebAssembly, and routes what comes out (with Azure IoT Edge's FROM … WHERE … INTO
/// routes) to cloud connectors or back to local topics.
///
/// Start with `weir run pipelines/demo.toml`, then read README.md.
///
/// Exit codes: 0 done, or yes (the pipeline is valid, the route takes the message, the queue
/// is whole); 1 no (the pipeline has errors, the route does not take the message, the queue is
/// damaged) or a failure while running; 2 the input cannot be used (wrong arguments, a route
/// that does not parse, a file that cannot be read).
#[derive(Debug, Parser)]
#[command(name = "weir", version, propagate_version = true)]
pub struct Cli {
    /// Log format: human (default) or json. Levels come from RUST_LOG (default info).
    #[arg(long, global = true, value_enum, default_value = "human", env = "WEIR_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline until interrupted (Ctrl-C or SIGTERM drain in-flight messages first).
    Run {
        /// The pipeline file.
        pipeline: PathBuf,
    },
    /// Validate a pipeline: syntax, unknown keys, routes, references, connector settings, and
    /// that every module loads, exports what its kind needs and accepts its config (exit 0
    /// if it is valid, 1 if it has errors, 2 if the file cannot be read).
    Check {
        /// The pipeline file.
        pipeline: PathBuf,
    },
    /// Work with a module on its own.
    #[command(subcommand)]
    Filter(FilterCommand),
    /// Work with routes on their own.
    #[command(subcommand)]
    Route(RouteCommand),
    /// Look at a pipeline's store-and-forward queues.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Print the JSON Schema of the pipeline format (for editors).
    Schema,
    /// Publish simulated machine telemetry to an MQTT broker (used by the demo).
    Simulate(simulate::SimulateArgs),
}

#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// Show the parse of a route, the value of every sub-expression for a message, and why
    /// the route takes it or not (exit 0 if it does, 1 if it does not, 2 if the route does
    /// not parse or the message cannot be read).
    Explain(route_explain::RouteExplainArgs),
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Depth, bytes, segments and age of the oldest message, per sink and priority.
    Inspect(queue::QueueArgs),
    /// Read every record and check its checksum; exit 1 if anything is damaged.
    Verify(queue::QueueArgs),
    /// What `weir run` does to a damaged queue at start, now (weir must not be running):
    /// quarantine damaged bytes, cut a torn end, set aside what cannot be read; with a report.
    Repair(queue::QueueArgs),
}

#[derive(Debug, Subcommand)]
pub enum FilterCommand {
    /// Run a module on sample messages and print what comes out, what was dropped and why.
    Test(filter_test::FilterTestArgs),
}

/// The async runtime for connectors and routing (and module calls that stay short; slower
/// modules run on threads of their own). On an edge box the broker shares the cores, so it
/// takes one worker thread fewer than there are cores (at least one): on two cores, one
/// worker republished 8–33 % more QoS 0 messages per second than two (docs/benchmarks.md).
/// `TOKIO_WORKER_THREADS=N` sets the count.
fn async_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        builder.worker_threads(cores.saturating_sub(1).max(1));
    }
    builder.enable_all().build().map_err(|err| anyhow::anyhow!("cannot start the async runtime: {err}"))
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_logging(cli.log_format);
    // Module calls (check, filter test) run outside the async runtime: `wasm::finish` runs a
    // call to its end on the calling thread, which must not be an async worker.
    let result = match cli.command {
        Command::Check { pipeline } => check::check(&pipeline).map(|_| ()),
        Command::Filter(FilterCommand::Test(args)) => filter_test::run(&args),
        Command::Schema => schema::print(),
        Command::Queue(QueueCommand::Inspect(args)) => queue::run(&args, false).map(|_| ()),
        Command::Queue(QueueCommand::Repair(args)) => queue::repair(&args),
        Command::Queue(QueueCommand::Verify(args)) => match queue::run(&args, true) {
            Ok(true) => Ok(()),
            Ok(false) => return Exit::No.into(),
            Err(err) => Err(err),
        },
        Command::Route(RouteCommand::Explain(args)) => match route_explain::run(&args) {
            Ok(true) => Ok(()),
            Ok(false) => return Exit::No.into(),
            Err(err) => Err(err),
        },
        Command::Run { pipeline } => check::check(&pipeline).and_then(|checked| {
            let runtime = async_runtime()?;
            let ran = runtime.block_on(run::run(checked));
            // The pipeline has stopped (drained within its timeouts); dropping the runtime would
            // also wait, unbounded, for a blocking thread still finishing a call.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            ran
        }),
        Command::Simulate(args) => async_runtime().and_then(|runtime| runtime.block_on(simulate::run(&args))),
    };
    match result {
        Ok(()) => Exit::Yes.into(),
        Err(err) => {
            match err.downcast_ref::<crate::config::ConfigErrors>() {
                Some(errors) => eprintln!("{errors}"),
                None => eprintln!("error: {err:#}"),
            }
            if err.is::<Unusable>() { Exit::Unusable } else { Exit::No }.into()
        }
    }
}

/// What a command's exit code says, for scripts (clap exits 2 for wrong arguments too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done, or yes.
    Yes = 0,
    /// No, or a failure while running.
    No = 1,
    /// The input cannot be used.
    Unusable = 2,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// An error in what the command was given (exit 2), not in what it found.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unusable(pub String);
