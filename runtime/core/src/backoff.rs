//! Exponential back-off for reconnects and retries: 100 ms doubling to a cap, with jitter
//! so that many clients do not reconnect in lock-step.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    initial: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(30))
    }
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { next: initial, initial, max }
    }

    /// The delay to wait now; the next one doubles.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        // ±20 % jitter from the clock's low bits: good enough to spread reconnects.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let jitter = 0.8 + f64::from(nanos % 400) / 1000.0;
        delay.mul_f64(jitter)
    }

    /// Back to the initial delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let delays: Vec<_> = (0..4).map(|_| backoff.next_delay().as_millis()).collect();
        assert!(delays[0] >= 80 && delays[0] <= 120, "{delays:?}");
        assert!(delays[3] >= 320 && delays[3] <= 480, "{delays:?}");
        backoff.reset();
        assert!(backoff.next_delay().as_millis() <= 120);
    }
}
