//! Chaos: a filter that misbehaves on command, so tests can show weir survives it.
//! The payload says what to do: `trap` (panics, which traps), `loop` (spins until the
//! host's deadline stops it), `sleep` (sleeps 60 s in a host call, which the host cuts at
//! the deadline), `slow` (spins for 2 ms, then keeps the message), `hog`
//! (allocates without bound until the memory cap),
//! `describe` (rejects the message with everything the module sees of its metadata as the
//! reason, so a test can check what crosses the boundary), and anything else is kept.
//! Config `fail_init = true` makes `init` fail.

use serde::Deserialize;
use weir::{Message, QoS, Result};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub fail_init: bool,
}

#[weir::filter]
pub fn misbehave(msg: &Message, config: &Config) -> Result<bool> {
    if config.fail_init {
        return Err(weir::Error::msg("configured to fail"));
    }
    match msg.payload() {
        b"trap" => panic!("chaos: asked to trap"),
        b"loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        b"sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(60));
            Ok(true)
        }
        b"slow" => {
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_millis(2) {
                std::hint::black_box(());
            }
            Ok(true)
        }
        b"hog" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        b"describe" => Err(weir::Error::msg(describe(msg))),
        _ => Ok(true),
    }
}

/// Every piece of metadata of `msg`, in a fixed order.
pub fn describe(msg: &Message) -> String {
    let properties: Vec<String> = msg.properties().map(|(name, value)| format!("{name}={value}")).collect();
    format!(
        "topic={} properties=[{}] content-type={:?} correlation={:?} response-topic={:?} expiry={:?} qos={} retain={} ingest={} source={}",
        msg.topic(),
        properties.join(","),
        msg.content_type(),
        msg.correlation_data().map(String::from_utf8_lossy),
        msg.response_topic(),
        msg.expiry_secs(),
        match msg.qos() {
            QoS::AtMostOnce => 0,
            QoS::AtLeastOnce => 1,
            QoS::ExactlyOnce => 2,
        },
        msg.retain(),
        msg.ingest_time_ms(),
        msg.source(),
    )
}
