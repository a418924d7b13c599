//! De-duplicator: passes on the first message of each id per window and drops the rest.
//!
//! The id is the window key: `window = { kind = "tumbling", size = "1m", key = "$body.id" }`
//! (or a property, or `$correlationId`). When the window ends, the first message with that
//! id goes out unchanged (payload, topic, content type) with a `duplicates` property counting
//! what was dropped. No config.

use serde::{Deserialize, Serialize};
use weir::{Aggregate, Message, NoConfig, Output, Result, Window};

#[weir::aggregate]
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirstSeen {
    pub first: Option<Kept>,
    pub duplicates: u64,
}

/// The message that goes out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kept {
    pub topic: String,
    pub payload: Vec<u8>,
    pub content_type: Option<String>,
}

impl Aggregate for FirstSeen {
    type Config = NoConfig;

    fn accumulate(&mut self, msg: &Message, _config: &NoConfig) -> Result<()> {
        match self.first {
            Some(_) => self.duplicates += 1,
            None => {
                self.first = Some(Kept { topic: msg.topic().to_owned(), payload: msg.payload().to_vec(), content_type: msg.content_type().map(str::to_owned) })
            }
        }
        Ok(())
    }

    fn merge(&mut self, other: Self, _config: &NoConfig) {
        self.duplicates += other.duplicates + u64::from(self.first.is_some() && other.first.is_some());
        if self.first.is_none() {
            self.first = other.first;
        }
    }

    fn emit(self, _window: &Window, _config: &NoConfig) -> Result<Vec<Output>> {
        let Some(kept) = self.first else { return Ok(Vec::new()) };
        let duplicates = self.duplicates.to_string();
        let mut output = Output::bytes(kept.payload).with_topic(kept.topic).with_properties([("duplicates", duplicates.as_str())]);
        output.content_type = kept.content_type;
        Ok(vec![output])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_goes_out_and_duplicates_are_counted() {
        let mut seen = FirstSeen::default();
        seen.accumulate(&Message::for_test("orders/1", r#"{"id": 7, "n": 1}"#), &NoConfig {}).unwrap();
        seen.accumulate(&Message::for_test("orders/1", r#"{"id": 7, "n": 2}"#), &NoConfig {}).unwrap();
        let out = seen.emit(&Window { key: "7".into(), start_ms: 0, end_ms: 60_000 }, &NoConfig {}).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].payload, br#"{"id": 7, "n": 1}"#);
        assert_eq!(out[0].topic.as_deref(), Some("orders/1"));
        assert_eq!(out[0].properties.as_ref().unwrap()[0].value, "1");
    }

    #[test]
    fn merged_windows_keep_one_and_count_the_other() {
        let mut a = FirstSeen::default();
        a.accumulate(&Message::for_test("t", "a"), &NoConfig {}).unwrap();
        let mut b = FirstSeen::default();
        b.accumulate(&Message::for_test("t", "b"), &NoConfig {}).unwrap();
        a.merge(b, &NoConfig {});
        assert_eq!(a.duplicates, 1);
        assert_eq!(a.first.unwrap().payload, b"a");
    }
}
