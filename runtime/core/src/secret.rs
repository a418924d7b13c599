//! Secrets: credentials the pipeline TOML names but never contains.
//!
//! In TOML a secret is `{ env = "VAR" }` or `{ file = "path" }`. A plain string is refused
//! with an error that says how to write it. [`Secret`]'s `Debug` shows where the value
//! comes from, never the value.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

/// Where a secret comes from.
#[derive(Clone, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub enum Secret {
    /// `{ env = "NAME" }`: the value of an environment variable.
    #[serde(rename = "env")]
    Env(String),
    /// `{ file = "path" }`: the contents of a file (trailing newline removed), relative to the pipeline file.
    #[serde(rename = "file")]
    File(PathBuf),
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            env: Option<String>,
            file: Option<PathBuf>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Table(Table),
            Clear(#[allow(dead_code)] String),
        }
        match Form::deserialize(deserializer)? {
            Form::Clear(_) => {
                Err(serde::de::Error::custom("secrets are never written in clear text: write { env = \"VARIABLE\" } or { file = \"path/to/file\" }"))
            }
            Form::Table(Table { env: Some(var), file: None }) => Ok(Secret::Env(var)),
            Form::Table(Table { env: None, file: Some(path) }) => Ok(Secret::File(path)),
            Form::Table(_) => Err(serde::de::Error::custom("a secret is exactly one of { env = \"VARIABLE\" } or { file = \"path\" }")),
        }
    }
}

impl Secret {
    /// Read the value now. `base` is the directory relative file paths start from.
    pub fn reveal(&self, base: &Path) -> anyhow::Result<String> {
        match self {
            Secret::Env(var) => std::env::var(var).with_context(|| format!("secret from environment variable {var}: it is not set (export {var}=…)")),
            Secret::File(path) => {
                let path = base.join(path);
                let text = std::fs::read_to_string(&path).with_context(|| format!("secret from file {}", path.display()))?;
                Ok(text.trim_end_matches(['\r', '\n']).to_owned())
            }
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Env(var) => write!(f, "Secret(env {var})"),
            Secret::File(path) => write!(f, "Secret(file {})", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Holder {
        password: Secret,
    }

    #[test]
    fn clear_text_is_refused_with_advice() {
        let err = serde_json::from_str::<Holder>(r#"{"password":"hunter2"}"#).expect_err("clear text accepted");
        assert!(err.to_string().contains("never written in clear text"), "{err}");
    }

    #[test]
    fn debug_never_shows_the_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pw"), "hunter2\n").expect("write");
        let holder: Holder = serde_json::from_str(r#"{"password":{"file":"pw"}}"#).expect("parse");
        assert_eq!(holder.password.reveal(dir.path()).expect("read"), "hunter2");
        assert!(!format!("{holder:?}").contains("hunter2"));
    }
}
