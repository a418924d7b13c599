//! The epoch ticker. wasmtime looks at a running call's clock (its deadline, the inline
//! budget) when the engine's epoch advances, so a thread advances it every tick. It does so
//! only while calls run: once none has run for [`IDLE_AFTER`] it sleeps until the next call
//! starts, so that an idle weir does not wake up 200 times a second for nothing.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::Thread;
use std::time::Duration;

/// How long without a call before the ticker sleeps.
pub const IDLE_AFTER: Duration = Duration::from_secs(1);

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
    /// is gone, ending the thread, as does dropping the returned ticker).
    pub fn spawn(tick: Duration, idle_after: Duration, advance: impl Fn() -> bool + Send + 'static) -> std::io::Result<Arc<Ticker>> {
        let ticker = Arc::new(Ticker::default());
        let watched = Arc::downgrade(&ticker);
        let handle = std::thread::Builder::new().name("weir-epoch".into()).spawn(move || run(&watched, tick, idle_after, advance))?;
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

fn run(watched: &Weak<Ticker>, tick: Duration, idle_after: Duration, advance: impl Fn() -> bool) {
    let mut idle = Duration::ZERO;
    loop {
        std::thread::sleep(tick);
        let Some(ticker) = watched.upgrade() else { return };
        if !advance() {
            return;
        }
        if ticker.running.load(Ordering::SeqCst) > 0 || ticker.started.swap(false, Ordering::Relaxed) {
            idle = Duration::ZERO;
            continue;
        }
        idle += tick;
        if idle < idle_after {
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
        loop {
            std::thread::park();
            match watched.upgrade() {
                None => return,
                Some(ticker) if !ticker.asleep.load(Ordering::SeqCst) => break,
                Some(_) => {}
            }
        }
        idle = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::time::Instant;

    fn counting(tick: Duration, idle_after: Duration) -> (Arc<Ticker>, Arc<AtomicU64>) {
        let ticks = Arc::new(AtomicU64::new(0));
        let counter = ticks.clone();
        let ticker = Ticker::spawn(tick, idle_after, move || {
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
