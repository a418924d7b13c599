//! weir-core: the pieces every part of weir shares, kept small so connectors and the
//! runtime can both depend on them.
//!
//! - [`message`]: the [`Message`] that flows through a pipeline (payload bytes plus MQTT 5
//!   metadata, cheap to clone) and its JSON Lines form.
//! - `json_fields`: a JSON body's top-level fields located without decoding them, for
//!   `$body.name` conditions ([`Message::body_field`]).
//! - [`ack`]: [`Ack`], the acknowledgement a message carries back to its source once every
//!   sink it was routed to has accepted it.
//! - [`connector`]: the [`Source`] and [`Sink`] traits and the typed registry that turns a
//!   `type = "…"` table of the pipeline TOML into a running connector.
//! - [`secret`]: [`Secret`], a credential read from an environment variable or a file,
//!   never from clear text, and never printed.
//! - [`metric_names`]: every metric name weir emits (runtime and connectors alike).

pub mod ack;
pub mod backoff;
pub mod connector;
mod json_fields;
pub mod message;
pub mod metric_names;
pub mod secret;

pub use ack::{Ack, AckOutcome};
pub use backoff::Backoff;
pub use connector::{BuildContext, Registry, Sink, SinkError, SinkKind, Source, SourceContext, SourceKind, Stopping};
pub use message::{Message, Metadata, ModuleOutput, Property, QoS};
pub use secret::Secret;
