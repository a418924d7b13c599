//! The epoch ticker. wasmtime looks at a running call's clock (its deadline, the inline
//! budget) when the engine's epoch advances, so a thread advances it every tick. It does so
//! only while calls run: once none has run for a while it sleeps until the next call starts,
//! so that an idle weir, or one that sees a reading now and then, does not wake up 200 times
//! a second for nothing.
//!
//! How long "a while" is depends on how long the last quiet stretch between calls was (see
//! [`wait_before_sleeping`]): readings a few a second each cost a wake-up and the ticks of
//! [`SHORTEST_WAIT`]; calls that come more often keep it ticking steadily, which is then
//! about as cheap and keeps latency down (a thread woken for each call made it higher).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long the ticker waits, without a call, before it sleeps when calls come seldom.
pub const SHORTEST_WAIT: Duration = Duration::from_millis(20);
/// How long it waits when they came often, the last time there was a quiet stretch.
pub const LONGEST_WAIT: Duration = Duration::from_secs(1);

/// What a call tells the ticker; shared by the engine's handles, watched by its thread.
#[derive(Debug, Default)]
pub struct Ticker {
    /// Calls under way (a call blocked in a host function still needs its deadline).
    running: AtomicUsize,
    /// A call started since the thread last looked.
    started: AtomicBool,
    /// The thread sleeps until a call wakes it.
    asleep: AtomicBool,
    thread: OnceLock<Thread>,
}

/// A call under way: the ticker keeps ticking until it is dropped.
#[must_use = "the ticker may sleep once this is dropped"]
pub struct Running<'a>(&'a Ticker);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Ticker {
    /// Start the thread: every `tick` it calls `advance` (which answers false once the engine
    /// is gone, ending the thread, as does dropping the returned ticker). Without calls it
    /// waits `waits.0` (calls came seldom) or `waits.1` (they came often) before it sleeps:
    /// see [`wait_before_sleeping`].
    pub fn spawn(tick: Duration, waits: (Duration, Duration), advance: impl Fn() -> bool + Send + 'static) -> std::io::Result<Arc<Ticker>> {
        let ticker = Arc::new(Ticker::default());
        let watched = Arc::downgrade(&ticker);
        let handle = std::thread::Builder::new().name("weir-epoch".into()).spawn(move || run(&watched, tick, waits, advance))?;
        let _ = ticker.thread.set(handle.thread().clone());
        Ok(ticker)
    }

    /// A call starts: wake the thread if it sleeps, and keep it ticking until the call ends.
    pub fn call_started(&self) -> Running<'_> {
        self.running.fetch_add(1, Ordering::SeqCst);
        self.started.store(true, Ordering::Relaxed);
        // `running` is raised before `asleep` is read, and the thread sets `asleep` before
        // it reads `running` (all SeqCst): one of the two sees the other.
        if self.asleep.load(Ordering::SeqCst) && self.asleep.swap(false, Ordering::SeqCst) {
            self.wake();
        }
        Running(self)
    }

    fn wake(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    /// Whether the thread is asleep (for tests).
    pub fn is_asleep(&self) -> bool {
        self.asleep.load(Ordering::SeqCst)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        // A sleeping thread wakes, finds the ticker gone and ends.
        self.wake();
    }
}

/// How long to wait without a call before sleeping, given the last quiet stretch that a call
/// ended (calls within one tick of each other make none). When that stretch was at least twice
/// the shortest wait, sleeping after the shortest wait costs a wake-up and that wait's ticks,
/// fewer than ticking through such a stretch. When it was shorter, sleeping would save little
/// and a thread woken for each call costs latency: wait the longest, so that the thread sleeps
/// only when calls stop. One short stretch among long ones (a late reading) costs one
/// stretch ticked through.
pub fn wait_before_sleeping(last_stretch: Duration, (shortest, longest): (Duration, Duration)) -> Duration {
    if last_stretch >= shortest * 2 { shortest } else { longest }
}

fn run(watched: &Weak<Ticker>, tick: Duration, waits: (Duration, Duration), advance: impl Fn() -> bool) {
    // Before the first call, as after a long silence.
    let mut last_stretch = Duration::MAX;
    let mut idle = Duration::ZERO;
    loop {
        std::thread::sleep(tick);
        let Some(ticker) = watched.upgrade() else { return };
        if !advance() {
            return;
        }
        if ticker.running.load(Ordering::SeqCst) > 0 || ticker.started.swap(false, Ordering::Relaxed) {
            if idle > Duration::ZERO {
                last_stretch = idle;
            }
            idle = Duration::ZERO;
            continue;
        }
        idle += tick;
        if idle < wait_before_sleeping(last_stretch, waits) {
            continue;
        }
        ticker.asleep.store(true, Ordering::SeqCst);
        if ticker.running.load(Ordering::SeqCst) > 0 {
            // A call started meanwhile; if it saw `asleep`, its wake-up is a spare unpark
            // that makes one later `park` return at once, which the loop below allows for.
            ticker.asleep.store(false, Ordering::SeqCst);
            idle = Duration::ZERO;
            continue;
        }
        drop(ticker);
        let fell_asleep = Instant::now();
        loop {
            std::thread::park();
            match watched.upgrade() {
                None => return,
                Some(ticker) if !ticker.asleep.load(Ordering::SeqCst) => {
                    // The call that woke the thread has been seen: if it ends within the
                    // first tick and no other starts, that tick already counts as idle.
                    ticker.started.store(false, Ordering::Relaxed);
                    break;
                }
                Some(_) => {}
            }
        }
        last_stretch = idle + fell_asleep.elapsed();
        idle = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::time::Instant;

    /// A ticker that counts its ticks, waiting at least `shortest_wait` before it sleeps.
    fn counting(tick: Duration, shortest_wait: Duration) -> (Arc<Ticker>, Arc<AtomicU64>) {
        let ticks = Arc::new(AtomicU64::new(0));
        let counter = ticks.clone();
        let ticker = Ticker::spawn(tick, (shortest_wait, Duration::from_secs(1)), move || {
            counter.fetch_add(1, Ordering::SeqCst);
            true
        })
        .unwrap();
        (ticker, ticks)
    }

    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn sleeps_when_idle_and_a_call_wakes_it() {
        let (ticker, ticks) = counting(Duration::from_millis(1), Duration::from_millis(20));
        wait_until("the idle ticker sleeps", || ticker.is_asleep());
        let slept_at = ticks.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(ticks.load(Ordering::SeqCst), slept_at, "an asleep ticker does not tick");

        let running = ticker.call_started();
        assert!(!ticker.is_asleep());
        wait_until("the woken ticker ticks", || ticks.load(Ordering::SeqCst) > slept_at + 5);
        drop(running);
        wait_until("it sleeps again after the call", || ticker.is_asleep());
    }

    #[test]
    fn an_occasional_call_costs_the_shortest_wait() {
        // The shortest wait one tick: one tick per call.
        let (ticker, ticks) = counting(Duration::from_millis(10), Duration::from_millis(10));
        wait_until("the idle ticker sleeps", || ticker.is_asleep());
        let before = ticks.load(Ordering::SeqCst);
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(60));
            drop(ticker.call_started());
            wait_until("it sleeps again after the call", || ticker.is_asleep());
        }
        // One each; a test thread held up past a tick mid-call may add one. Ticking through
        // the gaps would be some 30.
        let spent = ticks.load(Ordering::SeqCst) - before;
        assert!(spent <= 7, "5 short calls 60 ms apart cost {spent} ticks");
    }

    #[test]
    fn the_wait_before_sleeping_follows_how_often_calls_come() {
        let ms = Duration::from_millis;
        let waits = (ms(20), ms(1000));
        // Calls far apart (a reading every 40 ms or less often; idle): sleep soon.
        assert_eq!(wait_before_sleeping(ms(40), waits), ms(20));
        assert_eq!(wait_before_sleeping(ms(500), waits), ms(20));
        assert_eq!(wait_before_sleeping(Duration::MAX, waits), ms(20));
        // Calls close together: tick through until they stop.
        assert_eq!(wait_before_sleeping(ms(35), waits), ms(1000));
        assert_eq!(wait_before_sleeping(ms(5), waits), ms(1000));
    }

    #[test]
    fn keeps_ticking_while_a_call_runs_however_long() {
        let (ticker, ticks) = counting(Duration::from_millis(1), Duration::from_millis(10));
        let running = ticker.call_started();
        let before = ticks.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
        assert!(!ticker.is_asleep(), "asleep while a call runs");
        assert!(ticks.load(Ordering::SeqCst) > before + 20, "too few ticks while a call runs");
        drop(running);
    }

    #[test]
    fn the_thread_ends_with_the_ticker() {
        let (ticker, ticks) = counting(Duration::from_millis(1), Duration::from_millis(5));
        wait_until("the idle ticker sleeps", || ticker.is_asleep());
        drop(ticker);
        // Its count is held by the thread's closure alone once the thread ended.
        wait_until("the thread ends", || Arc::strong_count(&ticks) == 1);
    }
}
