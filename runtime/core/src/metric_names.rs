//! Every metric name weir emits, in one place for the runtime and the connectors alike, so a
//! dashboard and the code cannot drift apart. Labels: `route`, `module`, `sink`, `source`,
//! `reason`. (The runtime's `telemetry` module re-exports these and installs the exporter.)

/// Messages received from a source.
pub const SOURCE_MESSAGES: &str = "weir_source_messages_total";
/// QoS 2 messages an MQTT broker sent again after a connection cut, answered without being
/// passed on a second time.
pub const SOURCE_QOS2_RESENT: &str = "weir_source_qos2_resent_total";
/// Messages a route sent on.
pub const ROUTE_MATCHED: &str = "weir_route_matched_total";
/// Messages a route dropped because they were older than its `time_to_live`.
pub const ROUTE_EXPIRED: &str = "weir_route_expired_total";
/// Messages no route took.
pub const UNROUTED: &str = "weir_unrouted_total";
/// Messages into a module / out of it / dropped by a filter.
pub const MODULE_IN: &str = "weir_module_messages_in_total";
pub const MODULE_OUT: &str = "weir_module_messages_out_total";
pub const MODULE_DROPPED: &str = "weir_module_dropped_total";
/// Whole-batch failures (trap, deadline, memory cap), by reason.
pub const MODULE_FAILURES: &str = "weir_module_failures_total";
/// Seconds per module call.
pub const MODULE_CALL_SECONDS: &str = "weir_module_call_seconds";
/// 1 while a module is called where its messages arrive, 0 while only its own thread calls it
/// (executor::module_slot).
pub const MODULE_INLINE: &str = "weir_module_inline";
/// Inline calls that outlived the budget and were finished on another thread.
pub const MODULE_SET_ASIDE: &str = "weir_module_set_aside_total";
/// Aggregate modules: messages that came after their windows closed, seconds per
/// checkpoint, open windows, and keys with open windows.
pub const AGGREGATE_LATE: &str = "weir_aggregate_late_total";
pub const AGGREGATE_CHECKPOINT_SECONDS: &str = "weir_aggregate_checkpoint_seconds";
pub const AGGREGATE_OPEN_WINDOWS: &str = "weir_aggregate_open_windows";
pub const AGGREGATE_KEYS: &str = "weir_aggregate_keys";
/// Messages and bytes a sink accepted.
pub const SINK_MESSAGES: &str = "weir_sink_messages_total";
pub const SINK_BYTES: &str = "weir_sink_bytes_total";
/// Delivery attempts that failed and will be retried.
pub const SINK_RETRIES: &str = "weir_sink_retries_total";
/// Messages sent to `$deadletter`, by reason.
pub const DEAD_LETTERS: &str = "weir_dead_letters_total";
/// Dead letters the dead-letter sink refused, kept in the last-resort file instead.
pub const DEAD_LETTERS_LAST_RESORT: &str = "weir_dead_letters_last_resort_total";

/// Store-and-forward queues, per sink: depth in messages and bytes, age of the oldest message.
pub const QUEUE_DEPTH: &str = "weir_queue_depth_messages";
pub const QUEUE_BYTES: &str = "weir_queue_depth_bytes";
pub const QUEUE_OLDEST_SECONDS: &str = "weir_queue_oldest_age_seconds";
/// Messages delivered from a queue, `kind` = `live` or `replayed` (queued before the sink's
/// last outage ended, or before weir started).
pub const QUEUE_DELIVERED: &str = "weir_queue_delivered_total";
/// Messages that waited in a queue longer than their time to live and were dropped.
pub const QUEUE_EXPIRED: &str = "weir_queue_expired_total";
/// Messages dropped by `when_full = "drop_oldest"`.
pub const QUEUE_DROPPED: &str = "weir_queue_dropped_total";
/// Times the writer waited because a `block` queue was full (back-pressure).
pub const QUEUE_FULL_WAITS: &str = "weir_queue_full_waits_total";
/// Writes to a queue that failed (a full disk) and were retried; and 1 while they fail.
pub const QUEUE_WRITE_ERRORS: &str = "weir_queue_write_errors_total";
pub const QUEUE_WRITE_FAILING: &str = "weir_queue_write_failing";
/// Bytes of damaged queue data found and quarantined.
pub const QUEUE_DAMAGED_BYTES: &str = "weir_queue_damaged_bytes_total";
/// Lanes opened after an unclean stop, whose last delivered batch may be delivered again.
pub const QUEUE_POSSIBLE_DUPLICATES: &str = "weir_queue_unclean_lanes_total";
