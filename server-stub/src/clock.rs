//! Time as an input: expiry, locks and sessions read a [`Clock`] so tests can move time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in Unix milliseconds.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now_ms(&self) -> i64;

    /// Moves the clock forward by `by_ms`, if this clock can be moved (the test clocks);
    /// returns whether it moved. The real clock cannot.
    fn advance_ms(&self, by_ms: i64) -> bool {
        let _ = by_ms;
        false
    }
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// Starts at the current real time, so timestamps look plausible.
    pub fn new() -> Self {
        Self(AtomicI64::new(SystemClock.now_ms()))
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    fn advance_ms(&self, by_ms: i64) -> bool {
        self.0.fetch_add(by_ms, Ordering::SeqCst);
        true
    }
}

/// The developer's test clock (`--test-clock`): real time plus an offset that the admin
/// API moves forward, so expiry can be tried without waiting. It never goes back.
#[derive(Debug, Default)]
pub struct TestClock {
    offset_ms: AtomicI64,
}

impl TestClock {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + self.offset_ms.load(Ordering::SeqCst)
    }

    fn advance_ms(&self, by_ms: i64) -> bool {
        self.offset_ms.fetch_add(by_ms, Ordering::SeqCst);
        true
    }
}
