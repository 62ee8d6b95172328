//! The coarse clock that stamps `last_used`.

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::Duration,
};

/// How often the coarse clock is refreshed.
pub(crate) const CLOCK_TICK: Duration = Duration::from_millis(100);

/// Milliseconds since the registry started, refreshed every [`CLOCK_TICK`]
/// by the background task and on every slow path. `Instant::now()` costs
/// more than the rest of the hot path, and `last_used` only feeds the idle
/// heuristic, so the hot path reads this cached value.
pub(crate) struct CoarseClock {
    origin: tokio::time::Instant,
    now_ms: AtomicU64,
    /// Set by `shutdown`: only then does releasing a reference wake the
    /// shutdown waiting for leases in flight (kept here, beside the clock
    /// that every lease already reaches, to keep the lease one pointer wide).
    /// Written and read with `SeqCst` (slot.rs, "Waking shutdown").
    pub(crate) shutting_down: AtomicBool,
}

impl CoarseClock {
    pub(crate) fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
            now_ms: AtomicU64::new(0),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// The cached time, in milliseconds since the registry started.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.now_ms.load(Ordering::Relaxed)
    }

    /// The instant at `ms` milliseconds since the registry started, if
    /// representable.
    pub(crate) fn instant_at(&self, ms: u64) -> Option<tokio::time::Instant> {
        self.origin.checked_add(Duration::from_millis(ms))
    }

    /// Reads the real time into the cache and returns it.
    pub(crate) fn refresh(&self) -> u64 {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.now_ms.fetch_max(now, Ordering::Relaxed).max(now)
    }
}
