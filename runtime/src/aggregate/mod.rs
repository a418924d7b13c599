//! Windows for aggregate modules.
//!
//! - [`windows`]: the window table: which windows a message belongs to and when they close
//!   (pure bookkeeping, tested against hand-computed cases and a model);
//! - [`worker`]: one thread per aggregate module: keys and times from route expressions,
//!   the table's steps carried out as batched calls to the module, outputs routed, late
//!   messages and rejections dead-lettered, acknowledgements held until a checkpoint;
//! - [`origin`]: the topic and source a window's results carry, kept inline;
//! - [`checkpoint`]: the window state file, written atomically at every checkpoint and on
//!   shutdown, read back at start;
//! - this file: [`AggregateSpec`], the validated `[modules.NAME.window]` table.
//!
//! Semantics and guarantees are written down in `docs/aggregates.md`.

pub mod checkpoint;
mod origin;
pub mod windows;
pub mod worker;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::window::{KeysFull, TimeUnit, WindowConfig, WindowKindName, WindowSize};
use crate::route::{Expr, PathStep, Value, eval::eval, parse_expression};
use weir_core::Message;
pub use windows::{Refused, Step, TableSettings, Window, WindowKind, WindowTable};

/// An aggregate module's validated window settings.
#[derive(Debug, Clone)]
pub struct AggregateSpec {
    pub table: TableSettings,
    /// The key expression and its text.
    pub key: Option<(String, Expr)>,
    /// The event-time expression and its text; `None`: processing time.
    pub time: Option<(String, Expr)>,
    pub time_unit: TimeUnit,
    /// The module output late messages go to; `None`: `$deadletter`.
    pub late_output: Option<Arc<str>>,
    pub checkpoint_interval: Duration,
    /// The window state file.
    pub state_path: PathBuf,
}

/// A problem with one key of the window table: (key, message).
pub type SpecError = (&'static str, String);

fn millis(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

impl AggregateSpec {
    pub fn from_config(config: &WindowConfig, state_path: PathBuf) -> Result<Self, Vec<SpecError>> {
        let mut errors = Vec::new();
        let duration = |name: &'static str, value: Option<crate::config::HumanDuration>, errors: &mut Vec<SpecError>| -> u64 {
            match value {
                Some(d) if d.0 >= Duration::from_millis(1) => millis(d.0),
                Some(_) => {
                    errors.push((name, format!("`{name}` must be at least 1ms")));
                    1
                }
                None => {
                    errors.push((name, format!("{} windows need `{name}`, e.g. {name} = \"5s\"", kind_name(config.kind))));
                    1
                }
            }
        };
        let time_size = |errors: &mut Vec<SpecError>| match config.size {
            Some(WindowSize::Messages(n)) => {
                errors.push(("size", format!("a {} window's size is a duration such as \"10s\", not {n}", kind_name(config.kind))));
                1
            }
            Some(WindowSize::Time(d)) => duration("size", Some(d), errors),
            None => duration("size", None, errors),
        };
        let kind = match config.kind {
            WindowKindName::Tumbling => WindowKind::Tumbling { size: time_size(&mut errors) },
            WindowKindName::Sliding => WindowKind::Sliding { size: time_size(&mut errors) },
            WindowKindName::Hopping => {
                let size = time_size(&mut errors);
                let hop = duration("hop", config.hop, &mut errors);
                if hop > size {
                    errors.push(("hop", format!("`hop` ({hop} ms) is longer than `size` ({size} ms): messages between windows would belong to none")));
                }
                WindowKind::Hopping { size, hop }
            }
            WindowKindName::Session => {
                WindowKind::Session { gap: duration("gap", config.gap, &mut errors), max_duration: config.max_duration.map(|d| millis(d.0)) }
            }
            WindowKindName::Count => match config.size {
                Some(WindowSize::Messages(n)) if n > 0 => WindowKind::Count { size: n },
                _ => {
                    errors.push(("size", "count windows need `size`, a number of messages (at least 1), e.g. size = 100".to_owned()));
                    WindowKind::Count { size: 1 }
                }
            },
        };
        for (name, present, allowed) in [
            ("hop", config.hop.is_some(), matches!(kind, WindowKind::Hopping { .. })),
            ("gap", config.gap.is_some(), matches!(kind, WindowKind::Session { .. })),
            ("max_duration", config.max_duration.is_some(), matches!(kind, WindowKind::Session { .. })),
        ] {
            if present && !allowed {
                errors.push((name, format!("`{name}` does not apply to {} windows", kind_name(config.kind))));
            }
        }
        let mut expression = |name: &'static str, text: &Option<String>| match text {
            None => None,
            Some(text) => match parse_expression(text) {
                Ok(expr) => Some((text.clone(), expr)),
                Err(err) => {
                    errors.push((name, format!("not a route-language expression:\n{}", err.render(text))));
                    None
                }
            },
        };
        let key = expression("key", &config.key);
        let time = expression("time", &config.time);
        if config.allowed_lateness.is_some() && config.time.is_none() {
            errors.push(("allowed_lateness", "`allowed_lateness` needs event time: set `time` to an expression such as \"$body.ts\"".to_owned()));
        }
        let late_output = match config.late.as_deref() {
            None | Some("$deadletter") => None,
            Some(output) if !output.is_empty() && !output.contains('/') => Some(Arc::from(output)),
            Some(other) => {
                errors.push(("late", format!("`late` is \"$deadletter\" or the name of a module output, not `{other}`")));
                None
            }
        };
        let max_keys = config.max_keys.unwrap_or(10_000);
        if max_keys == 0 {
            errors.push(("max_keys", "`max_keys` must be at least 1".to_owned()));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(AggregateSpec {
            table: TableSettings {
                kind,
                event_time: time.is_some(),
                allowed_lateness: config.allowed_lateness.map(|d| millis(d.0)).unwrap_or(0),
                max_keys,
                close_oldest: config.when_keys_full == KeysFull::CloseOldest,
            },
            key,
            time,
            time_unit: config.time_unit,
            late_output,
            checkpoint_interval: config.checkpoint_interval.map(|d| d.0).unwrap_or(Duration::from_secs(1)).max(Duration::from_millis(10)),
            state_path,
        })
    }

    /// The message's key: the key expression's value as text (borrowed from the message
    /// when it is a string there).
    pub fn key_of<'a>(&'a self, message: &'a Message) -> Result<Cow<'a, str>, String> {
        let Some((text, expr)) = &self.key else { return Ok(Cow::Borrowed("")) };
        // One top-level body field (`$body.machine`) whose value is a plain string is read
        // without indexing the body.
        if let Expr::Body(steps) = expr
            && let [PathStep::Field(name)] = steps.as_slice()
            && let Some(key) = message.body_plain_string(name)
        {
            return Ok(Cow::Borrowed(key));
        }
        match eval(expr, message) {
            Value::Str(key) => Ok(key),
            other => other.to_text().map(Cow::Owned).ok_or_else(|| format!("the window key `{text}` is undefined for this message")),
        }
    }

    /// The message's event time in ms, or `now` with processing time.
    pub fn time_of(&self, message: &Message, now: u64) -> Result<u64, String> {
        let Some((text, expr)) = &self.time else { return Ok(now) };
        match eval(expr, message) {
            Value::Number(n) if n >= 0.0 && n.is_finite() => Ok(match self.time_unit {
                TimeUnit::Ms => n as u64,
                TimeUnit::S => (n * 1000.0) as u64,
            }),
            Value::Str(s) => humantime::parse_rfc3339_weak(&s)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64)
                .ok_or_else(|| format!("the event time `{text}` is \"{s}\", which is not an RFC 3339 time such as 2026-11-22T10:00:00Z")),
            Value::Undefined => Err(format!("the event time `{text}` is undefined for this message")),
            other => {
                Err(format!("the event time `{text}` is {}, not milliseconds since the Unix epoch or an RFC 3339 string", other.to_text().unwrap_or_default()))
            }
        }
    }
}

fn kind_name(kind: WindowKindName) -> &'static str {
    match kind {
        WindowKindName::Tumbling => "tumbling",
        WindowKindName::Hopping => "hopping",
        WindowKindName::Sliding => "sliding",
        WindowKindName::Session => "session",
        WindowKindName::Count => "count",
    }
}
