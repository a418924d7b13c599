//! Human-friendly units in the pipeline TOML: durations and byte sizes.

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

/// A duration written as `"250ms"`, `"2s"`, `"5m"`, `"1h"` or `"7d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(with = "String")]
pub struct HumanDuration(pub Duration);

/// A size written as `"512KiB"`, `"64MiB"`, `"1GiB"` or a number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(with = "String")]
pub struct ByteSize(pub u64);

fn split_number(text: &str) -> Option<(f64, &str)> {
    let text = text.trim();
    let end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let number = text[..end].parse().ok()?;
    Some((number, text[end..].trim()))
}

impl HumanDuration {
    pub fn parse(text: &str) -> Result<Self, String> {
        let error = || format!("`{text}` is not a duration: write e.g. \"250ms\", \"2s\", \"5m\", \"1h\" or \"7d\"");
        let (number, unit) = split_number(text).ok_or_else(error)?;
        let seconds = match unit {
            "ms" => number / 1000.0,
            "s" => number,
            "m" | "min" => number * 60.0,
            "h" => number * 3600.0,
            "d" => number * 86_400.0,
            _ => return Err(error()),
        };
        Ok(HumanDuration(Duration::from_secs_f64(seconds)))
    }
}

impl ByteSize {
    pub fn parse(text: &str) -> Result<Self, String> {
        let error = || format!("`{text}` is not a size: write e.g. \"512KiB\", \"64MiB\" or \"1GiB\"");
        let (number, unit) = split_number(text).ok_or_else(error)?;
        let factor: f64 = match unit {
            "" | "B" => 1.0,
            "KiB" | "KB" | "kB" => 1024.0,
            "MiB" | "MB" => 1024.0 * 1024.0,
            "GiB" | "GB" => 1024.0 * 1024.0 * 1024.0,
            _ => return Err(error()),
        };
        Ok(ByteSize((number * factor) as u64))
    }
}

macro_rules! deserialize_from_str {
    ($type:ty, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $type;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<$type, E> {
                        <$type>::parse(text).map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(Visitor)
            }
        }
    };
}

deserialize_from_str!(HumanDuration, "a duration such as \"250ms\" or \"2s\"");
deserialize_from_str!(ByteSize, "a size such as \"64MiB\"");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(HumanDuration::parse("250ms").unwrap().0, Duration::from_millis(250));
        assert_eq!(HumanDuration::parse("2m").unwrap().0, Duration::from_secs(120));
        assert_eq!(HumanDuration::parse("7d").unwrap().0, Duration::from_secs(7 * 86_400));
        assert!(HumanDuration::parse("2 fortnights").unwrap_err().contains("not a duration"));
        assert_eq!(ByteSize::parse("64MiB").unwrap().0, 64 << 20);
        assert_eq!(ByteSize::parse("100").unwrap().0, 100);
        assert!(ByteSize::parse("lots").is_err());
    }
}
