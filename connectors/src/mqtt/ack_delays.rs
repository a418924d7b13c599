//! Noticing the broker's acknowledgements arriving ~40 ms late the way Nagle's algorithm
//! makes them late, to tell the user what to change.
//!
//! A broker that uses Nagle's algorithm (Mosquitto unless `set_tcp_nodelay true`) holds a
//! small packet while its previous one is unacknowledged, and a Linux receiver delays its
//! acknowledgement by up to 40 ms when it has nothing to send back. At QoS 1 weir can end up
//! waiting on exactly that (docs/connectors.md, docs/benchmarks.md R8): most PUBACKs come in
//! a millisecond and some in about 40. A slow or distant broker looks different: its
//! acknowledgements are all slow, so the typical one is not fast.

use std::time::Duration;

/// Faster than this is an ordinary acknowledgement from a broker nearby.
const FAST: Duration = Duration::from_millis(10);
/// A delayed-ACK timeout (40 ms on Linux) plus scheduling, give or take.
const STALLED: std::ops::Range<Duration> = Duration::from_millis(35)..Duration::from_millis(80);
/// How many stalled acknowledgements make the pattern clear.
const ENOUGH: u32 = 20;

/// How long one connection's acknowledgements took.
#[derive(Debug, Default)]
pub(crate) struct AckDelays {
    fast: u32,
    stalled: u32,
    told: bool,
}

impl AckDelays {
    /// Count one acknowledgement that came `waited` after its publish. True once: when the
    /// pattern is clear and the user should be told.
    pub(crate) fn record(&mut self, waited: Duration) -> bool {
        if waited < FAST {
            self.fast = self.fast.saturating_add(1);
        } else if STALLED.contains(&waited) {
            self.stalled = self.stalled.saturating_add(1);
        }
        let clear = self.stalled >= ENOUGH && self.fast >= self.stalled;
        if clear && !self.told {
            self.told = true;
            return true;
        }
        false
    }
}

/// What to tell the user.
pub(crate) fn advice(url: &str) -> String {
    format!(
        "MQTT broker {url}: some acknowledgements arrive ~40 ms late while most take under 10 ms. That is the broker holding small packets \
         (Nagle's algorithm) until this machine's delayed ACK: it adds up to 40 ms per message at QoS 1. If the broker runs on this machine, \
         connect through its Unix socket (url = \"mqtt+unix:///run/mosquitto/mosquitto.sock\", Mosquitto: `listener 0 /run/mosquitto/mosquitto.sock`); \
         otherwise set `set_tcp_nodelay true` in mosquitto.conf (see docs/connectors.md)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn fast_acknowledgements_with_some_stalled_ones_are_reported_once() {
        let mut delays = AckDelays::default();
        let mut told = 0;
        for i in 0..1000 {
            let waited = if i % 10 == 0 { ms(41) } else { ms(1) };
            told += u32::from(delays.record(waited));
        }
        assert_eq!(told, 1);
    }

    #[test]
    fn a_slow_or_distant_broker_is_not_mistaken_for_it() {
        // Every acknowledgement takes a 40 ms round trip: nothing is fast.
        let mut far = AckDelays::default();
        assert!(!(0..1000).any(|_| far.record(ms(42))));
        // Fast, with a few slow ones that are not the delayed-ACK timeout.
        let mut busy = AckDelays::default();
        assert!(!(0..1000).any(|i| busy.record(if i % 10 == 0 { ms(200) } else { ms(2) })));
        // Fast, and fewer stalls than make a pattern.
        let mut rare = AckDelays::default();
        assert!(!(0..1000).any(|i| rare.record(if i % 100 == 0 { ms(40) } else { ms(1) })));
    }
}
