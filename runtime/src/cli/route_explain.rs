//! `weir route explain`: why a route does or does not take a message.

use std::path::PathBuf;

use weir_core::{ModuleOutput, Property};

use super::Unusable;
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

/// Prints the explanation; `true` when the route takes the message. A route that does not
/// parse and a message that cannot be read are [`Unusable`] (exit 2).
pub fn run(args: &RouteExplainArgs) -> anyhow::Result<bool> {
    let parsed = match route::parse(&args.route) {
        Ok(parsed) => parsed,
        Err(err) => return Err(Unusable(format!("the route does not parse:\n{}", err.render(&args.route))).into()),
    };
    let text = std::fs::read_to_string(&args.message).map_err(|err| Unusable(format!("reading {}: {err}", args.message.display())))?;
    let mut message = samples::parse_line(text.trim()).map_err(|err| Unusable(format!("{}: {err:#}", args.message.display())))?;
    let meta = message.meta_mut();
    if let Some(topic) = &args.topic {
        meta.topic = topic.clone();
    }
    for pair in &args.properties {
        let (name, value) = pair.split_once('=').ok_or_else(|| Unusable(format!("--property `{pair}` is not NAME=VALUE")))?;
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
