//! Loading a pipeline file, and errors that point into it.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::Pipeline;

/// One problem in a pipeline file: where it is and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column of the offending key or value.
    pub line: usize,
    pub column: usize,
    /// Dotted key path, e.g. `modules.over_limit.path`.
    pub key: String,
    pub message: String,
    /// Extra lines shown under the message (a route with a caret under the column).
    pub detail: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, "\n{detail}")?;
        }
        Ok(())
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A parsed pipeline and the text it came from (to point errors into it).
#[derive(Debug, Clone)]
pub struct LoadedPipeline {
    pub path: PathBuf,
    /// Relative paths in the pipeline start here.
    pub base_dir: PathBuf,
    pub text: String,
    pub pipeline: Pipeline,
}

impl LoadedPipeline {
    /// Read and parse a pipeline file. Only syntax and the shape of the types are checked
    /// here; [`super::validate`] does the rest.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            ConfigErrors(vec![ConfigError {
                file: path.to_owned(),
                line: 1,
                column: 1,
                key: String::new(),
                message: format!("cannot read the pipeline file: {err}"),
                detail: None,
            }])
        })?;
        Self::parse(path, text)
    }

    pub fn parse(path: &Path, text: String) -> Result<Self, ConfigErrors> {
        let base_dir = path.parent().map(Path::to_owned).filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| PathBuf::from("."));
        match toml::from_str::<Pipeline>(&text) {
            Ok(pipeline) => Ok(LoadedPipeline { path: path.to_owned(), base_dir, text, pipeline }),
            Err(err) => {
                let span = err.span().unwrap_or(0..0);
                let located = Locator { file: path, text: &text };
                let key = located.key_path_at(span.start);
                let message = err.message().trim().to_owned();
                // serde names an unknown key but toml points at its table: find the key itself.
                let span = unknown_field(&message).and_then(|name| located.find_key_in(span.clone(), name)).unwrap_or(span);
                let key = match unknown_field(&message) {
                    Some(name) if !key.ends_with(name) => join_key(&key, name),
                    _ => key,
                };
                Err(ConfigErrors(vec![located.error_at_span(span, key, message)]))
            }
        }
    }

    /// An error about the key at `path` (e.g. `["modules", "m", "path"]`), pointing at it,
    /// or at the nearest parent that exists.
    pub fn error(&self, path: &[&str], message: impl Into<String>) -> ConfigError {
        self.locator().error(path, message.into())
    }

    /// An error about a string value at `path`, pointing at character `offset` inside it,
    /// with the value and a caret under that column as detail.
    pub fn error_in_string(&self, path: &[&str], offset: usize, message: impl Into<String>) -> ConfigError {
        let locator = self.locator();
        let mut error = locator.error(path, message.into());
        if let Some(span) = locator.value_span(path) {
            let raw = &self.text[span.clone()];
            let value = raw.trim_start_matches(['"', '\'']);
            let quote = raw.len() - value.len();
            let value = value.trim_end_matches(['"', '\'']);
            let (line, column) = line_column(&self.text, span.start + quote + char_to_byte(value, offset));
            error.line = line;
            error.column = column;
            error.detail = Some(format!("    {value}\n    {}^", " ".repeat(value[..char_to_byte(value, offset)].chars().count())));
        }
        error
    }

    fn locator(&self) -> Locator<'_> {
        Locator { file: &self.path, text: &self.text }
    }
}

fn char_to_byte(text: &str, chars: usize) -> usize {
    text.char_indices().nth(chars).map(|(i, _)| i).unwrap_or(text.len())
}

fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

fn join_key(parent: &str, child: &str) -> String {
    if parent.is_empty() { child.to_owned() } else { format!("{parent}.{child}") }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, text[line_start..offset].chars().count() + 1)
}

struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn table(&self) -> Option<Spanned<DeTable<'_>>> {
        DeTable::parse(self.text).ok()
    }

    fn error_at_span(&self, span: Range<usize>, key: String, message: String) -> ConfigError {
        let (line, column) = line_column(self.text, span.start);
        ConfigError { file: self.file.to_owned(), line, column, key, message, detail: None }
    }

    fn error(&self, path: &[&str], message: String) -> ConfigError {
        let span = (0..=path.len()).rev().find_map(|n| self.key_span(&path[..n])).unwrap_or(0..0);
        self.error_at_span(span, path.join("."), message)
    }

    fn entry<'t>(&self, root: &'t DeTable<'t>, path: &[&str]) -> Option<(Range<usize>, &'t Spanned<DeValue<'t>>)> {
        let (first, rest) = path.split_first()?;
        let (key, value) = root.iter().find(|(key, _)| key.get_ref().as_ref() == *first)?;
        if rest.is_empty() {
            return Some((key.span(), value));
        }
        match value.get_ref() {
            DeValue::Table(table) => self.entry(table, rest),
            _ => None,
        }
    }

    fn key_span(&self, path: &[&str]) -> Option<Range<usize>> {
        if path.is_empty() {
            return None;
        }
        let root = self.table()?;
        self.entry(root.get_ref(), path).map(|(span, _)| span)
    }

    fn value_span(&self, path: &[&str]) -> Option<Range<usize>> {
        let root = self.table()?;
        let (_, value) = self.entry(root.get_ref(), path)?;
        match value.get_ref() {
            DeValue::String(_) => Some(value.span()),
            // A route table: point into its `route` string.
            DeValue::Table(table) => table.iter().find(|(k, _)| k.get_ref().as_ref() == "route").map(|(_, v)| v.span()),
            _ => None,
        }
    }

    /// The dotted path of the innermost key whose key or value contains `offset`. Tables
    /// opened by `[a.b]` headers have spans that do not cover their bodies, so every
    /// branch is searched and the deepest match wins.
    fn key_path_at(&self, offset: usize) -> String {
        fn walk(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>, best: &mut Vec<String>) {
            for (key, value) in table.iter() {
                path.push(key.get_ref().to_string());
                let span = value.span();
                let inside = key.span().contains(&offset) || span.contains(&offset) || (span.end == offset && span.start < offset);
                if inside && path.len() > best.len() {
                    *best = path.clone();
                }
                if let DeValue::Table(inner) = value.get_ref() {
                    walk(inner, offset, path, best);
                }
                path.pop();
            }
        }
        let mut best = Vec::new();
        if let Some(root) = self.table() {
            walk(root.get_ref(), offset, &mut Vec::new(), &mut best);
        }
        best.join(".")
    }

    /// The span of the key `name` written inside `within`.
    fn find_key_in(&self, within: Range<usize>, name: &str) -> Option<Range<usize>> {
        let region = self.text.get(within.clone())?;
        let mut from = 0;
        while let Some(found) = region[from..].find(name) {
            let start = from + found;
            let before = region[..start].chars().last();
            let after = region[start + name.len()..].trim_start().chars().next();
            if matches!(before, None | Some(' ' | '\n' | '\t' | '{' | ',' | '"' | '\'')) && matches!(after, Some('=' | '"' | '\'' | '.')) {
                return Some(within.start + start..within.start + start + name.len());
            }
            from = start + name.len();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LoadedPipeline, ConfigErrors> {
        LoadedPipeline::parse(Path::new("p.toml"), text.to_owned())
    }

    #[test]
    fn unknown_key_names_line_column_and_key() {
        let err = parse("[modules.m]\npath = \"x.wasm\"\ndeadlin = \"1s\"\n").unwrap_err();
        let err = &err.0[0];
        assert_eq!((err.line, err.column), (3, 1), "{err}");
        assert_eq!(err.key, "modules.m.deadlin");
        assert!(err.message.contains("unknown field `deadlin`"), "{err}");
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("[routes]\nr = \"FROM /* INTO $upstream\n").unwrap_err();
        assert_eq!(err.0[0].line, 2, "{}", err);
    }

    #[test]
    fn bad_value_names_its_key() {
        let err = parse("[modules.m]\npath = \"x.wasm\"\nmemory = \"lots\"\n").unwrap_err();
        let err = &err.0[0];
        assert_eq!(err.key, "modules.m.memory", "{err}");
        assert_eq!(err.line, 3);
        assert!(err.message.contains("not a size"), "{err}");
    }

    #[test]
    fn caret_points_into_route_strings() {
        let loaded = parse("[routes]\nr = \"FROM /x INTO $nowhere\"\n").unwrap();
        let err = loaded.error_in_string(&["routes", "r"], 13, "unknown sink");
        assert_eq!((err.line, err.column), (2, 19), "{err}");
        assert_eq!(err.detail.as_deref(), Some("    FROM /x INTO $nowhere\n                 ^"));
    }
}
