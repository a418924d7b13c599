//! `[modules.NAME.window]`: how the host windows an aggregate module's messages.
//!
//! ```toml
//! [modules.averages.window]
//! kind = "tumbling"        # tumbling | hopping | sliding | session | count
//! size = "10s"             # count windows: a number of messages
//! key = "$body.machine"    # any route-language expression; each value has its own windows
//! time = "$body.ts"        # event time (default: processing time)
//! allowed_lateness = "5s"
//! ```

use schemars::JsonSchema;
use serde::Deserialize;

use super::units::HumanDuration;

/// The window assignment of an aggregate module.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// "tumbling" (back to back, `size`), "hopping" (`size`, starting every `hop`),
    /// "sliding" (at every message, the last `size` up to it), "session" (closes after a
    /// `gap` without messages) or "count" (every `size` messages).
    pub kind: WindowKindName,
    /// A duration ("10s") for tumbling, hopping and sliding windows; a number of messages
    /// for count windows.
    #[serde(default)]
    pub size: Option<WindowSize>,
    /// Hopping windows: how far apart window starts are (less than `size`: windows overlap).
    #[serde(default)]
    pub hop: Option<HumanDuration>,
    /// Session windows: the quiet time that ends a session.
    #[serde(default)]
    pub gap: Option<HumanDuration>,
    /// Session windows: the longest a session may last before it is closed and a new one
    /// starts. Default: no limit.
    #[serde(default)]
    pub max_duration: Option<HumanDuration>,
    /// A route-language expression whose value keys the windows, e.g. `$body.machine`,
    /// `$topic[1]` or an application property's name. Default: one key for all messages.
    #[serde(default)]
    pub key: Option<String>,
    /// A route-language expression giving each message's event time: a number of
    /// milliseconds since the Unix epoch (seconds with `time_unit = "s"`) or an RFC 3339
    /// string. Default: processing time (when the module receives the message).
    #[serde(default)]
    pub time: Option<String>,
    /// How a numeric `time` counts: "ms" (default) or "s".
    #[serde(default)]
    pub time_unit: TimeUnit,
    /// Event time only: how far behind the newest event time a message may be and still
    /// count. Later messages go to `late`. Default "0s".
    #[serde(default)]
    pub allowed_lateness: Option<HumanDuration>,
    /// Where late messages go: "$deadletter" (default, with the reason) or the name of a
    /// module output (`/messages/modules/NAME/outputs/OUTPUT` in routes).
    #[serde(default)]
    pub late: Option<String>,
    /// Most keys with open windows at once. Default 10000.
    #[serde(default)]
    pub max_keys: Option<usize>,
    /// At `max_keys`, a message with a new key: "reject" sends it to $deadletter (default);
    /// "close-oldest" closes the windows of the key seen least recently (emitting what they
    /// have so far) to make room.
    #[serde(default)]
    pub when_keys_full: KeysFull,
    /// How often window state is written to disk. Messages are acknowledged to their source
    /// only once the state that counts them is on disk, so a crash loses nothing (the source
    /// redelivers); a shorter interval means less redelivery and shorter acknowledgement
    /// delay. Default "1s".
    #[serde(default)]
    pub checkpoint_interval: Option<HumanDuration>,
}

/// The window kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WindowKindName {
    Tumbling,
    Hopping,
    Sliding,
    Session,
    Count,
}

/// A window size: a duration, or a number of messages (count windows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum WindowSize {
    Messages(u64),
    Time(HumanDuration),
}

/// How a numeric event time counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TimeUnit {
    #[default]
    Ms,
    S,
}

/// What happens to a message with a new key when `max_keys` keys have open windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KeysFull {
    #[default]
    Reject,
    CloseOldest,
}
