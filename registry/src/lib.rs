//! The session registry of [mcp-group]: one MCP connection per end-user
//! session, created on first use, shared by that session's concurrent calls,
//! reaped when idle, bounded in number.
//!
//! It is generic over [`Transport`] and never names a concrete one.
//!
//! ```no_run
//! use std::time::Duration;
//! use mcp_group_core::{SessionId, SessionKey, Transport};
//! use mcp_group_registry::{Registry, RegistryConfig};
//!
//! # async fn run(transport: impl Transport) -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Registry::new(transport, RegistryConfig::default());
//! let alice = SessionKey::new(SessionId::new("chat-1"));
//! let lease = registry.acquire(&alice).await?; // connects on first use
//! let tools = lease.connection().list_tools(Duration::from_secs(10)).await?;
//! drop(lease); // the session stays, idle, until the reaper or `cleanup_sessions`
//!
//! // A conversation can resolve its session once and lease it without the map:
//! // The same id under a principal is another session.
//! let bob = SessionKey::with_principal(Some("bob"), SessionId::new("chat-1"));
//! let mut handle = registry.handle(&bob).await?;
//! let lease = handle.acquire().await?;
//! # drop(lease);
//! registry.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```
//!
//! # The contract
//!
//! - A session entry holds its connection, `last_used` and a ref count.
//!   [`Registry::acquire`] returns a [`Lease`]; while any lease of a session
//!   lives, the session is never cleaned up. Dropping the lease — also on
//!   panic or cancellation — releases it and touches `last_used`.
//! - **No TOCTOU.** An entry's ref count and a `CLOSED` bit share one atomic
//!   word. Acquiring adds one and checks the bit; cleanup closes an entry only
//!   by a compare-and-swap from exactly zero. A caller that found an entry
//!   either holds it or sees it closed and looks again (finding or creating a
//!   live one): "temporarily unavailable" cannot happen to a live caller.
//! - **No I/O under the map lock.** Connections are opened with no lock held;
//!   removed entries' connections are closed after the lock is released.
//! - **Single-flight creation.** Concurrent first uses of one session share one
//!   entry (inserted under the write lock) and wait on that session's creation
//!   gate, so exactly one connection is opened; first uses of different
//!   sessions connect in parallel; lookups of connected sessions never wait on
//!   any creation. A failed creation leaves no entry behind, and the callers
//!   queued behind it get its error (a copy: the same variant and fields,
//!   its causes' messages) instead of trying again; the next call retries.
//! - `max_sessions`: a new session beyond the limit first evicts sessions idle
//!   past `idle_timeout`, then applies the [`SessionLimitPolicy`]: reject with
//!   [`Error::SessionLimitReached`], evict the least recently used unleased
//!   session, or wait for a slot.
//! - **What `max_sessions` bounds.** It bounds the sessions in the map
//!   ([`Registry::session_count`]), a session being connected included. A
//!   removed session leaves the map at once, but its connection is closed
//!   afterwards, off the map lock: in a background task for evictions
//!   (limit), expiries found on lookup and broken connections; awaited by
//!   [`Registry::cleanup_sessions`] (and the reaper),
//!   [`Registry::remove_session`] and [`Registry::shutdown`]. Until that close
//!   finishes, its process or socket still exists, and a stdio close takes up
//!   to a few seconds (the MCP session's close timeout, then the server's
//!   grace to exit before `SIGTERM` and `SIGKILL`). So at any instant the
//!   open connections number at most `max_sessions` plus the closes still in
//!   flight: under a steady stream of evictions, about `max_sessions` plus
//!   the evictions of the last few seconds. Closing connections are not
//!   counted toward the limit, so that an eviction makes room at once.
//! - An expired session is treated as absent on lookup even before the reaper
//!   runs; a background task (holding only a `Weak`) reaps idle sessions every
//!   `reap_interval` and stops when the registry is dropped or shut down.
//! - Every removal has a [`RemovalCause`], in tracing events and in
//!   [`RegistryStats`]. [`Registry::peek`] reads without refreshing idle time.
//! - **Sessions are keyed by principal.** The map's key is a
//!   [`SessionKey`]: the principal (the end user as the application
//!   authenticated them, or none) and the session id. The same id under
//!   another principal — or under none — is a different, new session: it
//!   cannot reach another principal's connection, learns nothing of whether
//!   that id exists there, and nothing is left to claim once a session is
//!   reaped or evicted.
//! - Failures are the registry's [`Error`]; a transport's own failure to
//!   connect is kept as the [`Error::Connect`] source.
//!
//! # Lock order
//!
//! One lock is on the hot path: the map's `std::sync::RwLock`, taken by
//! synchronous code only and never held across an `.await`. Every lock of the
//! registry and the order they are taken in are written down once, at the top
//! of the table module (`src/table.rs`); entries have no lock (their state
//! word is described in `src/slot.rs`).
//!
//! # Why these primitives
//!
//! An async `RwLock` (`aiorwlock` in NeMo Agent Toolkit's Python client, or
//! tokio's) costs a task yield under contention and lets a stream of readers
//! starve writers; a `std` `RwLock` held only for a lookup keeps the writer at
//! its full rate and is as fast as a concurrent map. `Instant::now()` costs
//! more than the rest of the hot path, so `last_used` is stamped from a coarse
//! clock (refreshed every 100 ms by the background task and on every slow
//! path): idle times are accurate to about 100 ms. Counters on the hot path
//! are striped over cache lines. Entries keep the state word, timestamp and
//! connection pointer together and box the rest.
//!
//! The hot path (a connected, unexpired session) is synchronous and returns a
//! one-pointer result; only a miss builds the boxed slow-path future.
//! [`Registry::acquire`] is one state machine, not one wrapping another:
//! profiling (cachegrind, perf) showed two nested state machines and an
//! `Error`-sized intermediate result costing more than the map lookup
//! itself. The key's hash is computed when the [`SessionKey`] is made, so a
//! lookup hashes nothing; without a principal it is the session id's own.
//!
//! The measured figures (`cargo xtask bench`: the keyed path against the
//! floor and against the Python client's locking model ported, the writer's
//! rate, parallel creation, cleanup) are in the repository's `BENCHMARKS.md`.
//!
//! [mcp-group]: https://docs.rs/mcp-group

mod clock;
mod config;
mod error;
mod hooks;
mod lease;
#[cfg(all(test, mcp_group_loom))]
mod loom_tests;
mod reaper;
mod slot;
mod stats;
mod sync;
mod table;
#[cfg(all(test, not(mcp_group_loom)))]
mod tests;

use std::{
    fmt,
    pin::pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use mcp_group_core::{SessionKey, Transport};
use tokio::{sync::Notify, task::JoinHandle};

use crate::{
    clock::CoarseClock,
    lease::{Hot, Ref},
    slot::{Slot, break_entry, dispose},
    stats::Counters,
    table::{EntryRef, Lookup, Refused, Room, Table},
};
pub use crate::{
    config::{RegistryConfig, SessionLimitPolicy},
    error::Error,
    lease::{Lease, SessionHandle},
    stats::{RegistryStats, RemovalCause, SessionInfo},
};

/// How often a dead connection found on acquire is replaced before giving up.
const MAX_REPLACEMENTS: usize = 3;

/// A creator's wait for room under [`SessionLimitPolicy::Wait`].
struct Waiting {
    /// `None`: the wait does not fit in an `Instant`; wait without one.
    deadline: Option<tokio::time::Instant>,
    /// The deadline passed: the next insert is the last attempt.
    last: bool,
}

/// The registry's shared state.
pub(crate) struct Inner<T> {
    transport: T,
    config: RegistryConfig,
    idle_ms: u64,
    table: Table<Slot<T>>,
    clock: Arc<CoarseClock>,
    counters: Counters,
    /// Set by shutdown: no new leases.
    closed: AtomicBool,
    /// Woken when a removal frees room for a new session.
    room: Notify,
    /// Woken, once shutdown has begun, when a reference is released.
    released: Notify,
    background: Mutex<Option<JoinHandle<()>>>,
    background_started: AtomicBool,
}

impl<T> Inner<T> {
    fn room(&self) -> Room {
        Room {
            limit: self.config.max_sessions,
            idle_ms: self.idle_ms,
            lru: self.config.full_policy == SessionLimitPolicy::EvictLruIdle,
            wait: self.config.full_policy == SessionLimitPolicy::Wait,
        }
    }
}

impl<T> Drop for Inner<T> {
    fn drop(&mut self) {
        reaper::stop(self);
    }
}

/// The per-session connection map. Cheap to clone (it is an `Arc`).
pub struct Registry<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Registry<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for Registry<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<T> Registry<T> {
    /// The number of sessions in the map.
    pub fn session_count(&self) -> usize {
        self.inner.table.len()
    }

    /// The configured `max_sessions`.
    pub fn session_limit(&self) -> usize {
        self.inner.config.max_sessions
    }

    /// The number of leases currently held on `session` (0 if it has no entry).
    pub fn ref_count(&self, session: &SessionKey) -> usize {
        self.inner
            .table
            .peek(session)
            .map_or(0, |e| usize::try_from(e.refs()).unwrap_or(usize::MAX))
    }

    /// What is known about `session`, read without refreshing its idle time.
    pub fn peek(&self, session: &SessionKey) -> Option<SessionInfo> {
        let entry = self.inner.table.peek(session)?;
        let now = self.inner.clock.refresh();
        Some(SessionInfo {
            ref_count: entry.refs(),
            idle: Duration::from_millis(entry.idle_ms(now)),
            connection_id: entry.value.connection.get().map(|c| c.id()),
        })
    }

    /// Benchmark hook (feature `_bench`, internal): inserts an unleased,
    /// unconnected entry (one write-lock acquisition, as a session
    /// creation's structural step).
    #[cfg(feature = "_bench")]
    #[doc(hidden)]
    pub fn __bench_insert(&self, session: &SessionKey) {
        let now = self.inner.clock.now();
        let insert = self
            .inner
            .table
            .insert(session, now, self.inner.room(), || {
                Slot::new(&self.inner, session)
            });
        if let Ok((entry, _)) = insert.result {
            entry.release(now);
        }
    }

    /// Benchmark hook (feature `_bench`, internal): removes an entry (one
    /// write-lock acquisition).
    #[cfg(feature = "_bench")]
    #[doc(hidden)]
    pub fn __bench_remove(&self, session: &SessionKey) {
        self.inner.table.remove_key(session);
    }

    /// The counters.
    pub fn stats(&self) -> RegistryStats {
        self.inner.counters.snapshot(self.session_count())
    }
}

impl<T: Transport> Registry<T> {
    /// Creates a registry that opens connections with `transport`.
    ///
    /// The background task (coarse clock and reaper) starts here when called
    /// inside a Tokio runtime, otherwise on the first acquisition.
    pub fn new(transport: T, config: RegistryConfig) -> Self {
        let idle_ms = u64::try_from(config.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let registry = Self {
            inner: Arc::new(Inner {
                transport,
                config,
                idle_ms,
                table: Table::new(),
                clock: Arc::new(CoarseClock::new()),
                counters: Counters::new(),
                closed: AtomicBool::new(false),
                room: Notify::new(),
                released: Notify::new(),
                background: Mutex::new(None),
                background_started: AtomicBool::new(false),
            }),
        };
        reaper::ensure_started(&registry.inner);
        registry
    }

    /// The transport connections are opened with.
    pub fn transport(&self) -> &T {
        &self.inner.transport
    }

    /// Leases the connection of `session` (a session id under a principal,
    /// or under none), opening it on first use.
    ///
    /// # Errors
    /// [`Error::Shutdown`] after [`Registry::shutdown`];
    /// [`Error::SessionLimitReached`] when the registry is full (after the
    /// wait of [`SessionLimitPolicy::Wait`]); [`Error::Connect`] when opening the
    /// connection fails or times out, or when the session's connection is
    /// found dead on every one of a few successive openings (source:
    /// `ServerGone`).
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped future releases its reference; a connection
    /// being opened by it is dropped (for stdio: the process is killed), and
    /// a caller waiting on the same session opens it instead.
    pub async fn acquire(&self, session: &SessionKey) -> Result<Lease<T>, Error> {
        // The hot path (a live session with a live connection) is synchronous:
        // one read-lock lookup and a few atomics. Everything else is boxed so
        // this future stays small.
        match self.try_acquire_live(session) {
            Hot::Leased(lease) => Ok(lease),
            Hot::Miss => Box::pin(self.acquire_slow(session)).await,
            Hot::Shutdown => Err(Error::Shutdown),
        }
    }

    /// The hot path: an existing, unexpired session whose connection is open.
    #[inline]
    fn try_acquire_live(&self, session: &SessionKey) -> Hot<T> {
        let inner = &*self.inner;
        if inner.closed.load(Ordering::Relaxed) {
            return Hot::Shutdown;
        }
        let found = inner
            .table
            .lookup(session, inner.clock.now(), inner.idle_ms);
        let entry = match found {
            Lookup::Found(entry) => entry,
            Lookup::Absent => return Hot::Miss,
            Lookup::Expired(entry) => {
                self.expired(session, entry);
                return Hot::Miss;
            }
        };
        match Lease::live(entry, &inner.counters) {
            Some(lease) => Hot::Leased(lease),
            None => Hot::Miss,
        }
    }

    /// Disposes of an entry that a lookup found expired and removed, then
    /// releases the lookup's reference on it.
    #[cold]
    fn expired(&self, session: &SessionKey, entry: EntryRef<Slot<T>>) {
        dispose(
            &self.inner,
            vec![(session.clone(), entry.clone())],
            RemovalCause::Idle,
        )
        .spawn();
        entry.release(self.inner.clock.now());
    }

    #[tracing::instrument(level = "debug", skip(self), fields(%session))]
    async fn acquire_slow(&self, session: &SessionKey) -> Result<Lease<T>, Error> {
        reaper::ensure_started(&self.inner);
        for _ in 0..MAX_REPLACEMENTS {
            let entry = self.resolve(session).await?;
            let reference = Ref::new(self.inner.clone(), entry);
            match self.connect(reference).await? {
                Some(lease) => return Ok(lease),
                None => continue,
            }
        }
        Err(Error::Connect {
            source: mcp_group_core::Error::ServerGone { source: None },
        })
    }

    /// Resolves `session` once and returns a handle that leases it again
    /// without touching the map (one atomic add while the session lives).
    ///
    /// # Errors
    /// As [`Registry::acquire`].
    pub async fn handle(&self, session: &SessionKey) -> Result<SessionHandle<T>, Error> {
        let lease = self.acquire(session).await?;
        Ok(SessionHandle::new(self.clone(), &lease))
    }

    /// Finds or creates the entry and takes a reference.
    async fn resolve(&self, session: &SessionKey) -> Result<EntryRef<Slot<T>>, Error> {
        let inner = &*self.inner;
        let mut wait = match inner.config.full_policy {
            SessionLimitPolicy::Wait => Some(Waiting {
                // A wait too long to add to an instant has no deadline.
                deadline: tokio::time::Instant::now().checked_add(inner.config.limit_wait),
                last: false,
            }),
            _ => None,
        };
        loop {
            if inner.closed.load(Ordering::Acquire) {
                return Err(Error::Shutdown);
            }
            match inner
                .table
                .lookup(session, inner.clock.now(), inner.idle_ms)
            {
                Lookup::Found(entry) => return Ok(entry),
                Lookup::Absent => {}
                Lookup::Expired(entry) => self.expired(session, entry),
            }
            let room_freed = inner.room.notified();
            let mut room_freed = pin!(room_freed);
            room_freed.as_mut().enable();
            hooks::reach(hooks::Point::BeforeInsert);
            let now = inner.clock.refresh();
            let insert = inner.table.insert(session, now, inner.room(), || {
                Slot::new(&self.inner, session)
            });
            dispose(inner, insert.evicted, RemovalCause::Limit).spawn();
            match insert.result {
                Ok((entry, _)) => return Ok(entry),
                Err(Refused::Full) => {
                    let Some(wait) = wait.as_mut().filter(|w| !w.last) else {
                        return Err(self.refusal(Refused::Full, session));
                    };
                    // Woken by a removal, by the earliest unleased session
                    // expiring (an insert then evicts it), or by the deadline,
                    // after which one last attempt is made.
                    let expiry = insert.next_expiry.and_then(|ms| inner.clock.instant_at(ms));
                    let until = match (wait.deadline, expiry) {
                        (Some(deadline), Some(expiry)) => Some(deadline.min(expiry)),
                        (deadline, expiry) => deadline.or(expiry),
                    };
                    let Some(until) = until else {
                        room_freed.await;
                        continue;
                    };
                    let timed_out = tokio::time::timeout_at(until, room_freed).await.is_err();
                    if timed_out && wait.deadline.is_some_and(|d| d <= until) {
                        wait.last = true;
                    }
                }
                Err(refused) => return Err(self.refusal(refused, session)),
            }
        }
    }

    fn refusal(&self, refused: Refused, session: &SessionKey) -> Error {
        match refused {
            Refused::Full => {
                Counters::bump(&self.inner.counters.rejected, 1);
                tracing::debug!(%session, limit = self.inner.config.max_sessions, "session refused: registry full");
                Error::SessionLimitReached {
                    limit: self.inner.config.max_sessions,
                }
            }
            Refused::Shutdown => Error::Shutdown,
        }
    }

    /// Gets the entry's connection, opening it (single-flight) if needed.
    /// `None`: the entry's connection is dead, or the entry was removed (by
    /// shutdown or an explicit removal) while it was being connected; retry.
    async fn connect(&self, reference: Ref<T>) -> Result<Option<Lease<T>>, Error> {
        let inner = &*self.inner;
        let Some(entry) = reference.entry().cloned() else {
            return Ok(None);
        };
        let slot = &entry.value;
        if let Some(connection) = slot.connection.get() {
            if connection.is_closed() {
                break_entry(inner, &entry, connection);
                return Ok(None);
            }
            inner.counters.reused.bump();
            return Ok(Some(reference.into_lease()));
        }
        let gate = slot.cold.create.lock().await;
        if slot.connection.get().is_some() {
            inner.counters.reused.bump();
            drop(gate);
            return Ok(Some(reference.into_lease()));
        }
        if let Some(failure) = slot.cold.failed.get() {
            // The creation this caller queued behind failed: share its outcome.
            drop(gate);
            let endpoint = inner.transport.description().endpoint;
            return Err(Error::Connect {
                source: error::copy_failure(failure, &endpoint),
            });
        }
        if entry.is_closed() {
            // Removed while this caller queued for the gate.
            return Ok(None);
        }
        let session = &slot.cold.session;
        let timeout = inner.config.connect_timeout;
        let connected = match tokio::time::timeout(timeout, inner.transport.connect(session)).await
        {
            Ok(result) => result,
            Err(_) => Err(mcp_group_core::Error::Timeout {
                operation: "connect",
                after: timeout,
            }),
        };
        match connected {
            Ok(connection) => {
                let connection = Arc::new(connection);
                Counters::bump(&inner.counters.created, 1);
                tracing::debug!(%session, connection = connection.id(), "session connection opened");
                let published = inner.table.publish(session, &entry, || {
                    // Only the gate holder sets it, and it was empty under the gate.
                    let _ = slot.connection.set(connection.clone());
                });
                drop(gate);
                if !published {
                    // Removed while connecting (shutdown drained it, or it was
                    // removed explicitly): no one else will close this one.
                    tracing::debug!(%session, connection = connection.id(), "session removed while connecting; closing its connection");
                    drop(reference);
                    connection.close().await;
                    return Ok(None);
                }
                Ok(Some(reference.into_lease()))
            }
            Err(error) => {
                Counters::bump(&inner.counters.failed, 1);
                tracing::debug!(%session, %error, "opening a session connection failed");
                let endpoint = inner.transport.description().endpoint;
                let _ = slot.cold.failed.set(error::copy_failure(&error, &endpoint));
                // The entry leaves the map now, whoever still holds it: the
                // callers queued on the gate get the failure; later callers
                // start a new creation.
                let removed = inner.table.close_and_remove(session, &entry, |e| {
                    e.close();
                    true
                });
                drop(gate);
                if removed {
                    inner.room.notify_waiters();
                }
                drop(reference);
                Err(Error::Connect { source: error })
            }
        }
    }

    /// Removes sessions with no lease that have been idle for at least
    /// `max_age` (`None`: the configured idle timeout), closes their
    /// connections after releasing the map lock, and returns how many were removed.
    pub async fn cleanup_sessions(&self, max_age: Option<Duration>) -> usize {
        reaper::cleanup(
            &self.inner,
            max_age.unwrap_or(self.inner.config.idle_timeout),
        )
        .await
    }

    /// Removes `session` whatever its state and closes its connection once
    /// the map lock is released (calls in flight on it fail). Returns whether
    /// it existed.
    pub async fn remove_session(&self, session: &SessionKey) -> bool {
        let Some(entry) = self.inner.table.remove_key(session) else {
            return false;
        };
        dispose(
            &self.inner,
            vec![(session.clone(), entry)],
            RemovalCause::Explicit,
        )
        .wait()
        .await;
        true
    }

    /// Stops the background task, refuses new acquisitions, waits up to
    /// `grace` for leases in flight to be released, then closes every connection.
    ///
    /// Once it has begun no session is inserted (the check is made under the
    /// map lock). A connection still being opened when the grace period ends
    /// is not handed out: its opener closes it and gets [`Error::Shutdown`].
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &*self.inner;
        reaper::stop(inner);
        inner.closed.store(true, Ordering::Release);
        // From here on no entry is inserted (checked under the map lock), and
        // creators waiting for room get `Shutdown` now.
        inner.table.close();
        inner.room.notify_waiters();
        // `SeqCst`, against every release's decrement-then-check (slot.rs,
        // "Waking shutdown").
        inner.clock.shutting_down.store(true, Ordering::SeqCst);
        let wait = async {
            loop {
                let released = inner.released.notified();
                let mut released = pin!(released);
                released.as_mut().enable();
                if !inner.table.any_referenced() {
                    break;
                }
                released.await;
            }
        };
        if tokio::time::timeout(grace, wait).await.is_err() {
            tracing::warn!(
                ?grace,
                "shutdown: leases still held; closing their connections anyway"
            );
        }
        let removed = inner.table.drain();
        dispose(inner, removed, RemovalCause::Explicit).wait().await;
    }
}
