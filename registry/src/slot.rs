//! A session's entry: its state word, the value the registry keeps in it,
//! and the one removal sequence every removed session goes through.
//!
//! # The state word
//! `state = CLOSED bit | ref count`.
//! - acquire: `fetch_add(1)`, then check `CLOSED`; if set, undo and look the
//!   session up again (the entry was removed).
//! - release: store `last_used`, then `fetch_sub(1)`.
//! - idle removal: `compare_exchange(0, CLOSED)` — it fails if any caller holds
//!   or is taking a reference, so a leased entry is never removed, and a caller
//!   that found an entry either gets it or sees it closed and retries: no
//!   "temporarily unavailable".
//! - expiry on lookup: `compare_exchange(1, CLOSED | 1)` by the caller that
//!   just took the only reference; it keeps that reference and releases it
//!   once the entry is disposed of.
//! - broken / explicit removal / shutdown: `fetch_or(CLOSED)`; holders keep
//!   their reference.
//!
//! Every closing happens under the map's write lock, together with the
//! entry's removal (the table module's "One removal path").
//!
//! # Waking shutdown
//! Every reference is released by [`Entry::release`] (an acquisition undone
//! on a closed entry included), and every release tells the value
//! ([`OnRelease`]): the registry's slot then wakes a shutdown waiting for
//! leases. Release and shutdown form a store-buffering pattern — release
//! decrements the count, then reads the shutdown flag; shutdown sets the flag,
//! then reads the counts — so all four accesses are `SeqCst`: at least one
//! side sees the other's write, and the last release is never missed. (On
//! x86 a `SeqCst` read-modify-write or load costs what a weaker one does.)
//!
//! [`Entry`] is synchronous and generic over its value, so loom checks it
//! together with the table; [`Slot`] is the value the registry stores.

use std::sync::Arc as StdArc;

use mcp_group_core::{Connection, SessionKey};

use crate::{
    Inner, RemovalCause,
    clock::CoarseClock,
    sync::{AtomicU64, Ordering},
    table::{EntryRef, Removed},
};

const CLOSED: u64 = 1 << 63;

/// What an entry's value does each time a reference on the entry is released.
pub(crate) trait OnRelease {
    /// Called after the release's decrement (with `SeqCst`, see "Waking
    /// shutdown").
    fn on_release(&self);
}

/// The models and unit tests keep plain numbers in their entries.
#[cfg(test)]
impl OnRelease for i32 {
    fn on_release(&self) {}
}

/// One session's entry. `repr(C)` keeps the state word and timestamp first,
/// in the cache line of the `Arc`'s counts.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Entry<V> {
    state: AtomicU64,
    last_used: AtomicU64,
    pub(crate) value: V,
}

impl<V> Entry<V> {
    /// A new entry with one reference, held by its creator.
    pub(crate) fn new(value: V, now: u64) -> Self {
        Self {
            state: AtomicU64::new(1),
            last_used: AtomicU64::new(now),
            value,
        }
    }

    /// The count of references, for a shutdown deciding whether to wait:
    /// `SeqCst`, see "Waking shutdown".
    pub(crate) fn refs(&self) -> u64 {
        self.state.load(Ordering::SeqCst) & !CLOSED
    }

    /// Closes the entry if no one holds a reference.
    pub(crate) fn try_close_unused(&self) -> bool {
        self.state
            .compare_exchange(0, CLOSED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Closes the entry if the caller's reference is the only one; the
    /// caller keeps that reference.
    pub(crate) fn try_close_sole(&self) -> bool {
        self.state
            .compare_exchange(1, CLOSED | 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Closes the entry whatever its references (broken, shutdown).
    pub(crate) fn close(&self) {
        self.state.fetch_or(CLOSED, Ordering::AcqRel);
    }

    /// Whether the entry is open and no one holds or is taking a reference:
    /// the only state in which `try_close_unused` can succeed.
    pub(crate) fn is_unused(&self) -> bool {
        self.state.load(Ordering::Acquire) == 0
    }

    /// Whether the entry is closed (and so out of the map).
    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    /// The coarse clock's time of the last release.
    pub(crate) fn last_used(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }

    /// Milliseconds since last use, by the coarse clock.
    pub(crate) fn idle_ms(&self, now: u64) -> u64 {
        now.saturating_sub(self.last_used())
    }
}

impl<V: OnRelease> Entry<V> {
    /// Takes a reference unless the entry is closed.
    pub(crate) fn try_acquire(&self) -> bool {
        let previous = self.state.fetch_add(1, Ordering::Acquire);
        if previous & CLOSED != 0 {
            self.drop_reference();
            return false;
        }
        true
    }

    /// Releases a reference taken by `try_acquire` or at insertion, marking
    /// the entry used at `now`.
    #[inline]
    pub(crate) fn release(&self, now: u64) {
        self.last_used.store(now, Ordering::Relaxed);
        self.drop_reference();
    }

    #[inline]
    fn drop_reference(&self) {
        let previous = self.state.fetch_sub(1, Ordering::SeqCst);
        debug_assert!(previous & !CLOSED > 0, "ref count underflow");
        self.value.on_release();
    }
}

/// A session's value in the table. The fields every call touches (the
/// connection, the clock) sit beside the entry's state word; the rest is
/// boxed, so that entries stay small and the hot path stays in cache.
pub(crate) struct Slot<T> {
    /// Set once, by the creator holding `Cold::create`; never changed after.
    pub(crate) connection: std::sync::OnceLock<StdArc<Connection>>,
    pub(crate) clock: StdArc<CoarseClock>,
    pub(crate) cold: Box<Cold<T>>,
}

/// What a lease needs only on the slow path.
pub(crate) struct Cold<T> {
    pub(crate) session: SessionKey,
    pub(crate) registry: std::sync::Weak<Inner<T>>,
    /// The creation gate: single-flight connection of this session.
    pub(crate) create: tokio::sync::Mutex<()>,
    /// Set, under the gate, when the creation failed: the callers queued
    /// behind it get a copy instead of trying again.
    pub(crate) failed: std::sync::OnceLock<mcp_group_core::Error>,
}

impl<T> OnRelease for Slot<T> {
    /// Wakes a shutdown waiting for leases, once shutdown has begun.
    #[inline]
    fn on_release(&self) {
        if self
            .clock
            .shutting_down
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            if let Some(inner) = self.cold.registry.upgrade() {
                inner.released.notify_waiters();
            }
        }
    }
}

impl<T> Slot<T> {
    /// An unconnected slot for `session` of the registry `inner`.
    pub(crate) fn new(inner: &StdArc<Inner<T>>, session: &SessionKey) -> Self {
        Self {
            connection: std::sync::OnceLock::new(),
            clock: inner.clock.clone(),
            cold: Box::new(Cold {
                session: session.clone(),
                registry: StdArc::downgrade(inner),
                create: tokio::sync::Mutex::new(()),
                failed: std::sync::OnceLock::new(),
            }),
        }
    }
}

/// The removal sequence, for entries already taken out of the map (and so
/// called with the map lock released): counts them under their cause, wakes
/// the creators waiting for room, logs each, and returns their connections,
/// which the caller closes with [`Closing::wait`] or [`Closing::spawn`].
pub(crate) fn dispose<T>(
    inner: &Inner<T>,
    removed: Removed<Slot<T>>,
    cause: RemovalCause,
) -> Closing {
    if removed.is_empty() {
        return Closing(Vec::new());
    }
    inner.counters.removed(cause, removed.len());
    inner.room.notify_waiters();
    let connections = removed
        .into_iter()
        .filter_map(|(session, entry)| {
            let connection = entry.value.connection.get().cloned();
            tracing::debug!(%session, ?cause, connection = connection.as_ref().map(|c| c.id()), "session removed");
            connection
        })
        .collect();
    Closing(connections)
}

/// The connections of removed sessions, still to be closed.
#[must_use = "the removed sessions' connections must be closed"]
pub(crate) struct Closing(Vec<StdArc<Connection>>);

impl Closing {
    /// Closes the connections concurrently and waits until all are closed.
    pub(crate) async fn wait(self) {
        let mut closing = tokio::task::JoinSet::new();
        for connection in self.0 {
            closing.spawn(async move { connection.close().await });
        }
        while closing.join_next().await.is_some() {}
    }

    /// Closes the connections in a background task; outside a Tokio runtime
    /// they are only dropped.
    pub(crate) fn spawn(self) {
        if self.0.is_empty() {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(self.wait());
        }
    }
}

/// Marks `entry` broken and removes it, if `connection` is still its own;
/// the connection is closed in the background.
pub(crate) fn break_entry<T>(
    inner: &Inner<T>,
    entry: &EntryRef<Slot<T>>,
    connection: &StdArc<Connection>,
) {
    let current = entry.value.connection.get();
    if !current.is_some_and(|c| StdArc::ptr_eq(c, connection)) {
        return;
    }
    let session = &entry.value.cold.session;
    let removed = inner.table.close_and_remove(session, entry, |e| {
        e.close();
        true
    });
    if removed {
        dispose(
            inner,
            vec![(session.clone(), entry.clone())],
            RemovalCause::Broken,
        )
        .spawn();
    }
}

/// Releases a reference taken during creation; an entry left without a
/// connection (failed or abandoned creation) is removed. It never had a
/// connection, so it is not counted as a removed session; creators waiting
/// for room are woken.
pub(crate) fn release_creation<T>(inner: &Inner<T>, entry: EntryRef<Slot<T>>) {
    entry.release(inner.clock.now());
    if entry.value.connection.get().is_none()
        && inner
            .table
            .close_and_remove(&entry.value.cold.session, &entry, Entry::try_close_unused)
    {
        inner.room.notify_waiters();
    }
}
