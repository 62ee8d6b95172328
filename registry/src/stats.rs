//! The registry's counters: why sessions were removed, how many were
//! created, reused, refused. The counter bumped on every hot-path
//! acquisition is striped over cache lines.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// Why a session was removed; carried by tracing events and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemovalCause {
    /// Unused for `idle_timeout` (reaper, cleanup, or found expired on lookup).
    Idle,
    /// Removed by [`Registry::remove_session`](crate::Registry::remove_session) or shutdown.
    Explicit,
    /// Evicted to make room for a new session.
    Limit,
    /// Its connection broke (the server went away).
    Broken,
}

/// A snapshot of the registry's counters. Only roughly consistent: each
/// number is read separately.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryStats {
    /// Sessions in the map now.
    pub sessions: usize,
    /// Connections opened.
    pub created: u64,
    /// Acquisitions served by an existing connection.
    pub reused: u64,
    /// New sessions refused because the registry was full.
    pub rejected: u64,
    /// Connection attempts that failed.
    pub failed: u64,
    /// Sessions removed because they were idle.
    pub removed_idle: u64,
    /// Sessions removed explicitly (or at shutdown).
    pub removed_explicit: u64,
    /// Sessions evicted to make room.
    pub removed_limit: u64,
    /// Sessions removed because their connection broke.
    pub removed_broken: u64,
}

/// What [`Registry::peek`](crate::Registry::peek) tells about a session,
/// without touching it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// Leases held now.
    pub ref_count: u64,
    /// Time since the last lease was released (coarse: ~100 ms resolution).
    pub idle: Duration,
    /// The connection's id, once connected.
    pub connection_id: Option<u64>,
}

/// The live counters behind [`RegistryStats`].
pub(crate) struct Counters {
    pub(crate) created: AtomicU64,
    pub(crate) reused: Striped,
    pub(crate) rejected: AtomicU64,
    pub(crate) failed: AtomicU64,
    removed_idle: AtomicU64,
    removed_explicit: AtomicU64,
    removed_limit: AtomicU64,
    removed_broken: AtomicU64,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Self {
            created: AtomicU64::new(0),
            reused: Striped::new(),
            rejected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            removed_idle: AtomicU64::new(0),
            removed_explicit: AtomicU64::new(0),
            removed_limit: AtomicU64::new(0),
            removed_broken: AtomicU64::new(0),
        }
    }

    pub(crate) fn bump(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts `n` sessions removed for `cause`.
    pub(crate) fn removed(&self, cause: RemovalCause, n: usize) {
        let counter = match cause {
            RemovalCause::Idle => &self.removed_idle,
            RemovalCause::Explicit => &self.removed_explicit,
            RemovalCause::Limit => &self.removed_limit,
            RemovalCause::Broken => &self.removed_broken,
        };
        Self::bump(counter, n);
    }

    /// A snapshot, with `sessions` entries in the map.
    pub(crate) fn snapshot(&self, sessions: usize) -> RegistryStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RegistryStats {
            sessions,
            created: load(&self.created),
            reused: self.reused.sum(),
            rejected: load(&self.rejected),
            failed: load(&self.failed),
            removed_idle: load(&self.removed_idle),
            removed_explicit: load(&self.removed_explicit),
            removed_limit: load(&self.removed_limit),
            removed_broken: load(&self.removed_broken),
        }
    }
}

/// Acquisitions served by an existing connection, counted on one of several
/// cache lines chosen per thread, so the hot path does not contend on one
/// shared counter.
pub(crate) struct Striped {
    cells: [CachePadded; 8],
}

#[repr(align(128))]
#[derive(Default)]
struct CachePadded(AtomicU64);

impl Striped {
    fn new() -> Self {
        Self {
            cells: Default::default(),
        }
    }

    #[inline]
    pub(crate) fn bump(&self) {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        thread_local! {
            static INDEX: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
        }
        let index = INDEX.with(|i| {
            if i.get() == usize::MAX {
                i.set((NEXT.fetch_add(1, Ordering::Relaxed) % 8) as usize);
            }
            i.get()
        });
        if let Some(cell) = self.cells.get(index) {
            cell.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn sum(&self) -> u64 {
        self.cells.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }
}
