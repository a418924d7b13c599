//! The route language, compatible with Azure IoT Edge's edgeHub routes:
//! `[SELECT *] FROM <source> [WHERE <condition>] INTO <sink>`.
//!
//! - this file: [`Route`], its [`RouteSource`] and [`RouteSink`], and [`parse`];
//! - [`lexer`]: tokens with their columns, so errors point at the right place;
//! - [`expr`]: conditions and template expressions: syntax tree and parser;
//! - [`eval`]: evaluating them against a message, with IoT Hub's undefined semantics;
//! - [`explain`]: `weir route explain`: every sub-expression's value and the verdict;
//! - [`template`]: local-topic sinks with `{…}` expressions (`/topics/alerts/{$body.machine}`);
//! - [`index`]: routes grouped by source, so a message meets only the routes that could take it.
//!
//! `docs/routes.md` is the user's reference.

pub mod eval;
pub mod explain;
pub mod expr;
pub mod index;
pub mod lexer;
pub mod template;

use std::fmt;

use weir_core::{Message, Metadata};

pub use expr::{Expr, PathStep, Value};
pub use index::RouteIndex;
pub use template::Template;

/// A route error at a character column of the route text (0-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    pub column: usize,
    pub message: String,
}

impl RouteError {
    pub fn new(column: usize, message: impl Into<String>) -> Self {
        RouteError { column, message: message.into() }
    }

    /// The route, with a caret under the column, then the message.
    pub fn render(&self, route: &str) -> String {
        let prefix: String = route.chars().take(self.column).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
        format!("{route}\n{prefix}^ {}", self.message)
    }
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column + 1, self.message)
    }
}

impl std::error::Error for RouteError {}

/// Where a route takes messages from.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteSource {
    /// `/*` or `/messages/*`: every message, from sources and module outputs.
    All,
    /// `/messages/modules/*`: every module output.
    AllModules,
    /// `/messages/modules/{id}/*`, `/messages/modules/{id}/outputs/*` (output `None`) or
    /// `/messages/modules/{id}/outputs/{output}`.
    Module { id: String, output: Option<String> },
    /// `/topics/<filter>`: messages from the broker whose topic matches the MQTT filter.
    Topic(TopicFilter),
}

/// An MQTT topic filter, split into levels once when the route is parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicFilter {
    text: String,
    levels: Vec<Level>,
}

#[derive(Debug, Clone, PartialEq)]
enum Level {
    Exact(String),
    /// `+`: any one level.
    One,
    /// `#`: this level and everything below.
    Rest,
}

impl TopicFilter {
    pub fn new(text: &str) -> Self {
        let levels = text
            .split('/')
            .map(|level| match level {
                "+" => Level::One,
                "#" => Level::Rest,
                exact => Level::Exact(exact.to_owned()),
            })
            .collect();
        TopicFilter { text: text.to_owned(), levels }
    }

    /// The filter as written (what the broker is subscribed to).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether every topic `other` matches, this matches too. A broker delivers a message
    /// once per matching subscription, so weir subscribes only to filters no other covers.
    pub fn covers(&self, other: &TopicFilter) -> bool {
        // Wildcards at the first level do not match `$SYS/…`-style topics.
        let dollar = other.levels.first().is_some_and(|l| matches!(l, Level::Exact(e) if e.starts_with('$')));
        if dollar && matches!(self.levels.first(), Some(Level::One | Level::Rest)) {
            return false;
        }
        let mut theirs = other.levels.iter();
        for level in &self.levels {
            match (level, theirs.next()) {
                (Level::Rest, _) => return true,
                (Level::One, Some(Level::One | Level::Exact(_))) => {}
                (Level::Exact(mine), Some(Level::Exact(their))) if mine == their => {}
                _ => return false,
            }
        }
        theirs.next().is_none()
    }

    pub fn matches(&self, topic: &str) -> bool {
        let mut topic_levels = topic_levels(topic);
        for level in &self.levels {
            match (level, topic_levels.next()) {
                (Level::Rest, _) => return true,
                (Level::One, Some(_)) => {}
                (Level::Exact(expected), Some(actual)) if expected == actual => {}
                _ => return false,
            }
        }
        topic_levels.next().is_none()
    }
}

/// The levels of a topic, as `topic.split('/')` gives them. Split byte by byte: topics are
/// short, and `split('/')` set up a searcher per call (3 % of weir's instructions per message,
/// for the routes' topic filters and the topic levels that templates and conditions read).
pub(crate) fn topic_levels(topic: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(topic);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.bytes().position(|byte| byte == b'/') {
            Some(slash) => {
                rest = Some(&current[slash + 1..]);
                Some(&current[..slash])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl RouteSource {
    pub fn matches(&self, meta: &Metadata) -> bool {
        match self {
            RouteSource::All => true,
            RouteSource::AllModules => meta.origin.is_some(),
            RouteSource::Module { id, output } => {
                meta.origin.as_ref().is_some_and(|o| &*o.module == id && output.as_deref().is_none_or(|out| out == &*o.output))
            }
            RouteSource::Topic(filter) => meta.origin.is_none() && filter.matches(&meta.topic),
        }
    }
}

/// Where a route sends messages.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteSink {
    /// `$upstream`: the sink the pipeline's `upstream` names.
    Upstream,
    /// `$deadletter`.
    DeadLetter,
    /// `BrokeredEndpoint("/modules/{id}/inputs/{input}")`.
    Module { id: String, input: String },
    /// A sink by name, as declared under `[sinks.NAME]`.
    Named(String),
    /// `/topics/<template>`: publish to the local broker.
    Topic(Template),
}

/// A parsed route.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub source: RouteSource,
    pub condition: Option<Expr>,
    pub sink: RouteSink,
    /// How the condition sees the body (`decode = …` of a route table).
    pub decode: BodyDecode,
}

/// How a route's condition reads `$body`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BodyDecode {
    /// As JSON whatever the sender declared (weir's default).
    #[default]
    Json,
    /// As JSON only when the content type says `application/json` and a `contentEncoding` /
    /// `$.ce` property, if present, says UTF-8: exactly what IoT Edge does.
    IotEdge,
    /// Never: `$body…` is undefined (binary payloads; nothing is parsed).
    None,
}

impl BodyDecode {
    /// Whether the body of a message with this metadata is decoded.
    fn allows(self, meta: &Metadata) -> bool {
        match self {
            BodyDecode::Json => true,
            BodyDecode::None => false,
            BodyDecode::IotEdge => {
                let json = meta.content_type.as_deref().is_some_and(|t| t.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
                let encoding = meta.property("contentEncoding").or_else(|| meta.property("$.ce"));
                json && encoding.is_none_or(|e| e.eq_ignore_ascii_case("utf-8") || e.eq_ignore_ascii_case("utf8"))
            }
        }
    }
}

impl Route {
    /// Does this route take `message`? (source, then condition; undefined is no).
    pub fn accepts(&self, message: &Message) -> bool {
        self.source.matches(message.meta()) && self.condition_holds(message)
    }

    /// The condition alone (true without one); for a message whose source already matched.
    pub fn condition_holds(&self, message: &Message) -> bool {
        let Some(condition) = &self.condition else { return true };
        if self.decode != BodyDecode::Json && condition.mentions_body() && !self.decode.allows(message.meta()) {
            // The same message with nothing to decode: every `$body…` is undefined.
            return matches!(expr::eval(condition, &message.derive(bytes::Bytes::new())), Value::Bool(true));
        }
        matches!(expr::eval(condition, message), Value::Bool(true))
    }
}

/// Byte offset → character offset.
fn col(text: &str, byte: usize) -> usize {
    text[..byte].chars().count()
}

/// Find a keyword outside quotes, at word boundaries, from byte `from`. Returns its byte offset.
fn find_keyword(text: &str, keyword: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = from;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None => {
                let end = i + keyword.len();
                let boundary_before = i == 0 || bytes[i - 1].is_ascii_whitespace() || bytes[i - 1] == b')';
                let boundary_after = end >= bytes.len() || bytes[end].is_ascii_whitespace() || bytes[end] == b'(';
                if boundary_before && boundary_after && text.get(i..end).is_some_and(|w| w.eq_ignore_ascii_case(keyword)) {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

/// Parse one expression of the route language on its own (an aggregate's key or event
/// time, say); error columns count from the start of `text`.
pub fn parse_expression(text: &str) -> Result<Expr, RouteError> {
    let tokens = lexer::tokenize(text, 0)?;
    expr::Parser::new(&tokens, text.chars().count()).parse_all()
}

/// Parse a route string.
pub fn parse(text: &str) -> Result<Route, RouteError> {
    let start = text.len() - text.trim_start().len();
    let mut pos = start;
    // Optional `SELECT *`.
    // `get` rather than indexing: a multi-byte character may sit where a keyword would.
    if text.get(pos..pos + 6).is_some_and(|w| w.eq_ignore_ascii_case("select")) {
        let after = text[pos + 6..].trim_start();
        if !after.starts_with('*') {
            return Err(RouteError::new(col(text, text.len() - after.len()), "weir routes select whole messages: write `SELECT *` or leave SELECT out"));
        }
        pos = text.len() - after[1..].trim_start().len();
    }
    if !text[pos..].get(..4).is_some_and(|w| w.eq_ignore_ascii_case("from")) {
        return Err(RouteError::new(col(text, pos), "a route starts with `FROM <source>` (optionally after `SELECT *`)"));
    }
    pos += 4;
    let source_start = pos + (text[pos..].len() - text[pos..].trim_start().len());
    let source_end = text[source_start..].find(char::is_whitespace).map(|i| source_start + i).unwrap_or(text.len());
    let source_text = &text[source_start..source_end];
    if source_text.is_empty() {
        return Err(RouteError::new(col(text, source_start), "expected a source after FROM, e.g. /messages/* or /topics/factory/+/telemetry"));
    }
    let source = parse_source(source_text).map_err(|(offset, message)| RouteError::new(col(text, source_start + offset), message))?;

    let into = find_keyword(text, "into", source_end)
        .ok_or_else(|| RouteError::new(col(text, text.trim_end().len()), "expected `INTO <sink>` at the end of the route"))?;
    let middle = text[source_end..into].trim();
    let condition = if middle.is_empty() {
        None
    } else {
        let where_at = source_end + (text[source_end..].len() - text[source_end..].trim_start().len());
        if !text[where_at..].get(..5).is_some_and(|w| w.eq_ignore_ascii_case("where")) {
            return Err(RouteError::new(col(text, where_at), "expected `WHERE <condition>` or `INTO <sink>` after the source"));
        }
        let condition_start = where_at + 5;
        let condition_text = &text[condition_start..into];
        if condition_text.trim().is_empty() {
            return Err(RouteError::new(col(text, condition_start), "expected a condition after WHERE"));
        }
        let tokens = lexer::tokenize(condition_text, col(text, condition_start))?;
        Some(expr::Parser::new(&tokens, col(text, into)).parse_all()?)
    };
    let sink_start = into + 4 + (text[into + 4..].len() - text[into + 4..].trim_start().len());
    let sink_text = text[sink_start..].trim_end();
    let sink = parse_sink(sink_text, col(text, sink_start))?;
    Ok(Route { source, condition, sink, decode: BodyDecode::default() })
}

fn parse_source(source: &str) -> Result<RouteSource, (usize, String)> {
    const FORMS: &str =
        "/*, /messages/*, /messages/modules/{id}/*, /messages/modules/{id}/outputs/*, /messages/modules/{id}/outputs/{output} or /topics/<mqtt filter>";
    if source == "/*" || source == "/messages/*" || source == "/messages" {
        return Ok(RouteSource::All);
    }
    if let Some(filter) = source.strip_prefix("/topics/") {
        if filter.is_empty() {
            return Err((8, "expected an MQTT topic filter after /topics/".into()));
        }
        if let Some(bad) = filter.split('/').position(|level| level.len() > 1 && (level.contains('+') || level.contains('#'))) {
            let offset = 8 + filter.split('/').take(bad).map(|l| l.len() + 1).sum::<usize>();
            return Err((offset, "`+` and `#` stand alone in a topic level".into()));
        }
        if filter.split('/').rev().skip(1).any(|level| level == "#") {
            return Err((8, "`#` can only be the last topic level".into()));
        }
        return Ok(RouteSource::Topic(TopicFilter::new(filter)));
    }
    let Some(rest) = source.strip_prefix("/messages/modules/") else {
        return Err((0, format!("unknown source `{source}`; sources are {FORMS}")));
    };
    if rest == "*" {
        return Ok(RouteSource::AllModules);
    }
    let mut parts = rest.splitn(2, '/');
    let id = parts.next().unwrap_or_default();
    if id.is_empty() {
        return Err((18, "expected a module id after /messages/modules/".into()));
    }
    let offset = 18 + id.len() + 1;
    match parts.next() {
        None | Some("*") => Ok(RouteSource::Module { id: id.to_owned(), output: None }),
        Some(tail) => match tail.strip_prefix("outputs/") {
            Some("*") => Ok(RouteSource::Module { id: id.to_owned(), output: None }),
            Some(output) if !output.is_empty() && !output.contains('/') => Ok(RouteSource::Module { id: id.to_owned(), output: Some(output.to_owned()) }),
            _ => Err((offset, format!("expected `*`, `outputs/*` or `outputs/<name>` after /messages/modules/{id}/"))),
        },
    }
}

fn parse_sink(sink: &str, at: usize) -> Result<RouteSink, RouteError> {
    const FORMS: &str = "$upstream, $deadletter, BrokeredEndpoint(\"/modules/{id}/inputs/{input}\"), /topics/<topic template> or a sink name";
    if sink.is_empty() {
        return Err(RouteError::new(at, format!("expected a sink after INTO: {FORMS}")));
    }
    if sink.eq_ignore_ascii_case("$upstream") {
        return Ok(RouteSink::Upstream);
    }
    if sink.eq_ignore_ascii_case("$deadletter") {
        return Ok(RouteSink::DeadLetter);
    }
    if let Some(template) = sink.strip_prefix("/topics/") {
        return Ok(RouteSink::Topic(Template::parse(template, at + 8)?));
    }
    if sink.get(..16).is_some_and(|w| w.eq_ignore_ascii_case("brokeredendpoint")) {
        let inner = sink[16..].trim_start();
        let inner_at = at + sink.chars().count() - inner.chars().count();
        let Some(inner) = inner.strip_prefix('(').and_then(|i| i.trim_end().strip_suffix(')')) else {
            return Err(RouteError::new(inner_at, "expected BrokeredEndpoint(\"/modules/{id}/inputs/{input}\")"));
        };
        let quoted = inner.trim();
        let endpoint = quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .or_else(|| quoted.strip_prefix('\'').and_then(|q| q.strip_suffix('\'')))
            .ok_or_else(|| RouteError::new(inner_at + 1, "the endpoint is a quoted string: BrokeredEndpoint(\"/modules/{id}/inputs/{input}\")"))?;
        let mut parts = endpoint.split('/');
        return match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(""), Some("modules"), Some(id), Some("inputs"), Some(input)) if !id.is_empty() && !input.is_empty() && parts.next().is_none() => {
                Ok(RouteSink::Module { id: id.to_owned(), input: input.to_owned() })
            }
            _ => Err(RouteError::new(inner_at + 2, format!("`{endpoint}` is not /modules/{{id}}/inputs/{{input}}"))),
        };
    }
    if sink.starts_with('$') {
        return Err(RouteError::new(at, format!("unknown sink `{sink}`; sinks are {FORMS}")));
    }
    if sink.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') {
        return Ok(RouteSink::Named(sink.to_owned()));
    }
    Err(RouteError::new(at, format!("unknown sink `{sink}`; sinks are {FORMS}")))
}

#[cfg(test)]
mod tests;
