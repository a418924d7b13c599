//! `weir route explain`: why a route does or does not take a message.

use std::path::PathBuf;

use anyhow::{Context, bail};
use weir_core::{ModuleOutput, Property};

use crate::route::{self, explain};
use crate::samples;

#[derive(Debug, clap::Args)]
pub struct RouteExplainArgs {
    /// The route, e.g. "FROM /topics/factory/+/telemetry WHERE $body.temperature > 50 INTO $upstream".
    pub route: String,
    /// The message: a file holding its payload, or an envelope
    /// {"payload": …, "topic": …, "properties": {…}} (the file sink's format).
    #[arg(long)]
    pub message: PathBuf,
    /// An application property, as name=value (repeatable; added to the file's).
    #[arg(long = "property", value_name = "NAME=VALUE")]
    pub properties: Vec<String>,
    /// The topic the message arrived on (overrides the file's).
    #[arg(long)]
    pub topic: Option<String>,
    /// Treat the message as an output of a module: MODULE or MODULE/OUTPUT.
    #[arg(long, value_name = "MODULE[/OUTPUT]")]
    pub from_module: Option<String>,
}

/// Prints the explanation; exits 0 when the route takes the message, 1 when it does not.
pub fn run(args: &RouteExplainArgs) -> anyhow::Result<bool> {
    let parsed = match route::parse(&args.route) {
        Ok(parsed) => parsed,
        Err(err) => bail!("the route does not parse:\n{}", err.render(&args.route)),
    };
    let text = std::fs::read_to_string(&args.message).with_context(|| format!("reading {}", args.message.display()))?;
    let mut message = samples::parse_line(text.trim()).with_context(|| format!("{}", args.message.display()))?;
    let meta = message.meta_mut();
    if let Some(topic) = &args.topic {
        meta.topic = topic.clone();
    }
    for pair in &args.properties {
        let (name, value) = pair.split_once('=').with_context(|| format!("--property `{pair}` is not NAME=VALUE"))?;
        meta.properties.push(Property::new(name, value));
    }
    if let Some(origin) = &args.from_module {
        let (module, output) = origin.split_once('/').unwrap_or((origin, "out"));
        meta.origin = Some(ModuleOutput { module: module.into(), output: output.into() });
    }
    let (explanation, matched) = explain::explain(&args.route, &parsed, &message);
    print!("{explanation}");
    Ok(matched)
}
