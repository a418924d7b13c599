//! Topic templates: `alerts/{$body.machine}/{$topic[1]}` with route-language expressions.

use weir_core::Message;

use super::RouteError;
use super::expr::{self, Expr};
use super::lexer;

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Expr(Expr, String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parse `text`; `at` is its column in the route, for errors.
    pub fn parse(text: &str, at: usize) -> Result<Template, RouteError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut offset = at;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let open_col = offset + rest[..open].chars().count();
            let close = rest[open..].find('}').map(|c| c + open).ok_or_else(|| RouteError::new(open_col, "unclosed `{` in the topic template"))?;
            // `{$name}` is the braced system-property form: the expression is `$name`.
            let inner = &rest[open + 1..close];
            let tokens = lexer::tokenize(inner, open_col + 1)?;
            let expr = expr::Parser::new(&tokens, open_col + 1 + inner.chars().count()).parse_all()?;
            parts.push(Part::Expr(expr, inner.to_owned()));
            offset = open_col + rest[open..=close].chars().count();
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if parts.is_empty() {
            return Err(RouteError::new(at, "expected a topic after /topics/"));
        }
        Ok(Template { parts })
    }

    /// The topic for `message`, or why it cannot be made (an undefined value).
    pub fn render(&self, message: &Message) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Expr(expr, source) => match expr::eval(expr, message).text() {
                    Some(text) if !text.contains(['+', '#']) => out.push_str(&text),
                    Some(text) => return Err(format!("topic template {{{source}}} gave `{text}`, which contains an MQTT wildcard")),
                    None => return Err(format!("topic template {{{source}}} is undefined for this message")),
                },
            }
        }
        Ok(out)
    }
}
