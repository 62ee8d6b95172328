//! The session registry of [mcp-group]: one MCP connection per end-user
//! session, created on first use, shared by that session's concurrent calls,
//! reaped when idle, bounded in number.
//!
//! It is generic over [`Transport`] and never names a concrete one.
//!
//! ```no_run
//! use std::time::Duration;
//! use mcp_group_core::{SessionId, Transport};
//! use mcp_group_registry::{Registry, RegistryConfig};
//!
//! # async fn run(transport: impl Transport) -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Registry::new(transport, RegistryConfig::default());
//! let lease = registry.acquire(&SessionId::new("alice")).await?; // connects on first use
//! let tools = lease.connection().list_tools(Duration::from_secs(10)).await?;
//! drop(lease); // the session stays, idle, until the reaper or `cleanup_sessions`
//!
//! // A conversation can resolve its session once and lease it without the map:
//! let mut handle = registry.handle(&SessionId::new("bob"), None).await?;
//! let lease = handle.acquire().await?;
//! # drop(lease);
//! registry.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```
//!
//! # The contract (the seed's, tightened)
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
//!   any creation. A failed creation leaves no entry behind; the next call retries.
//! - `max_sessions`: a new session beyond the limit first evicts sessions idle
//!   past `idle_timeout`, then applies the [`FullPolicy`]: reject with
//!   [`Error::SessionLimitReached`], evict the least recently used unleased
//!   session, or wait for a slot.
//! - An expired session is treated as absent on lookup even before the reaper
//!   runs; a background task (holding only a `Weak`) reaps idle sessions every
//!   `reap_interval` and stops when the registry is dropped or shut down.
//! - Every removal has a [`RemovalCause`], in tracing events and in
//!   [`RegistryStats`]. [`Registry::peek`] reads without refreshing idle time.
//! - A session can be bound to a principal ([`Registry::acquire_as`]): a
//!   known id presented by another principal is refused, not served.
//! - Failures are the registry's [`Error`]; a transport's own failure to
//!   connect is kept as the [`Error::Connect`] source.
//!
//! # Lock order
//!
//! There is one lock on the hot path: the map's `std::sync::RwLock`. It is
//! taken by synchronous code only, never held across an `.await`, and never
//! taken twice by one thread. Lookups hold the read side for a hash lookup and
//! an `Arc` clone; structural changes (insert, remove, cleanup batches of 128)
//! hold the write side. Per entry, the creation gate (`tokio::sync::Mutex`) is
//! taken only with no map lock held; while holding it the creator touches only
//! its own entry. Entries themselves have no lock: their state is one atomic word.
//!
//! # Why these primitives (measured by `cargo xtask bench`)
//!
//! An async `RwLock` (the seed's `aiorwlock`, tokio's) costs a task yield under
//! contention and lets a stream of readers starve writers; a `std` `RwLock`
//! held only for a lookup keeps the writer at its full rate and is as fast as
//! a concurrent map. `Instant::now()` costs more than the rest of the hot path,
//! so `last_used` is stamped from a coarse clock (refreshed every 100 ms by the
//! background task and on every slow path): idle times are accurate to about
//! 100 ms. Counters on the hot path are striped over cache lines. Entries keep
//! the state word, timestamp and connection pointer together and box the rest.
//!
//! The hot path (a connected, unexpired session) is synchronous and returns a
//! one-pointer result; only a miss builds the boxed slow-path future.
//! [`Registry::acquire`] is a plain `fn` returning [`Registry::acquire_as`]'s
//! future rather than an `async fn` wrapping it: profiling (cachegrind, perf)
//! showed the two nested state machines and an `Error`-sized intermediate
//! result costing more than the map lookup itself, and removing them halved
//! the keyed path.
//!
//! Measured here (`cargo xtask bench --quick`: 2 cores, 2-worker runtime,
//! 1,000 sessions, random keys; medians of interleaved rounds, three runs),
//! ns per acquire + release, one task: the seed's model ported 340–420, the
//! keyed path 44–78, a [`SessionHandle`] 25–31, the floor (bare map lookup +
//! atomic add/sub) 35–57 — the keyed path at 1.27–1.40× the floor. At 64
//! tasks with a writer inserting and removing a session every 100 µs, the
//! keyed path is 6–12× faster than the port and the writer keeps ≥ 98 % of its
//! 10,000 writes/s. 64 first uses of a server whose handshake takes 50 ms
//! complete in ≈ 56 ms together.
//!
//! [mcp-group]: https://docs.rs/mcp-group

mod error;
#[cfg(all(test, mcp_group_loom))]
mod loom_tests;
mod sync;
mod table;

use std::{
    fmt,
    future::Future,
    pin::pin,
    sync::{
        Arc, Mutex,
        atomic::{
            AtomicBool, AtomicU64, AtomicU64 as StdAtomicU64, Ordering, Ordering as StdOrdering,
        },
    },
    time::Duration,
};

pub use crate::error::Error;
use mcp_group_core::{Connection, SessionId, Transport};
use tokio::{sync::Notify, task::JoinHandle};

use crate::table::{EntryRef, Refused, Removed, Room, Table};

/// How often the coarse clock is refreshed.
const CLOCK_TICK: Duration = Duration::from_millis(100);

/// How often a dead connection found on acquire is replaced before giving up.
const MAX_REPLACEMENTS: usize = 3;

/// What a full registry does with a new session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FullPolicy {
    /// Refuse it with [`Error::SessionLimitReached`] (the seed's behaviour).
    #[default]
    Reject,
    /// Close the least recently used session that has no call in flight.
    EvictLruIdle,
    /// Wait up to this long for a session to be removed, then refuse.
    Wait(Duration),
}

/// Why a session was removed; carried by tracing events and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemovalCause {
    /// Unused for `idle_timeout` (reaper, cleanup, or found expired on lookup).
    Idle,
    /// Removed by [`Registry::remove_session`] or shutdown.
    Explicit,
    /// Evicted to make room for a new session.
    Limit,
    /// Its connection broke (the server went away).
    Broken,
}

/// Limits and timers of a [`Registry`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// The most sessions open at once (default 100).
    pub max_sessions: usize,
    /// A session unused for this long is removed, and treated as absent on
    /// lookup even before the reaper runs (default 1 h).
    pub idle_timeout: Duration,
    /// Bound on opening a connection, handshake included (default 60 s).
    pub connect_timeout: Duration,
    /// How often the background reaper runs; `None` disables it (default: a
    /// quarter of `idle_timeout`, at most 5 min).
    pub reap_interval: Option<Duration>,
    /// What to do with a new session when `max_sessions` are open.
    pub full_policy: FullPolicy,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self::new(100, Duration::from_secs(3600))
    }
}

impl RegistryConfig {
    /// A configuration with the given limit and idle timeout.
    pub fn new(max_sessions: usize, idle_timeout: Duration) -> Self {
        Self {
            max_sessions,
            idle_timeout,
            connect_timeout: Duration::from_secs(60),
            reap_interval: Some((idle_timeout / 4).clamp(CLOCK_TICK, Duration::from_secs(300))),
            full_policy: FullPolicy::Reject,
        }
    }

    /// Sets the connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets (or, with `None`, disables) the background reaper's interval.
    pub fn with_reap_interval(mut self, interval: Option<Duration>) -> Self {
        self.reap_interval = interval;
        self
    }

    /// Sets what a full registry does.
    pub fn with_full_policy(mut self, policy: FullPolicy) -> Self {
        self.full_policy = policy;
        self
    }
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

/// What [`Registry::peek`] tells about a session, without touching it.
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

struct Counters {
    created: StdAtomicU64,
    reused: Striped,
    rejected: StdAtomicU64,
    failed: StdAtomicU64,
    removed_idle: StdAtomicU64,
    removed_explicit: StdAtomicU64,
    removed_limit: StdAtomicU64,
    removed_broken: StdAtomicU64,
}

impl Counters {
    fn new() -> Self {
        Self {
            created: StdAtomicU64::new(0),
            reused: Striped::new(),
            rejected: StdAtomicU64::new(0),
            failed: StdAtomicU64::new(0),
            removed_idle: StdAtomicU64::new(0),
            removed_explicit: StdAtomicU64::new(0),
            removed_limit: StdAtomicU64::new(0),
            removed_broken: StdAtomicU64::new(0),
        }
    }

    fn bump(counter: &StdAtomicU64, n: usize) {
        counter.fetch_add(n as u64, StdOrdering::Relaxed);
    }

    fn removed(&self, cause: RemovalCause, n: usize) {
        let counter = match cause {
            RemovalCause::Idle => &self.removed_idle,
            RemovalCause::Explicit => &self.removed_explicit,
            RemovalCause::Limit => &self.removed_limit,
            RemovalCause::Broken => &self.removed_broken,
        };
        Self::bump(counter, n);
    }
}

/// Milliseconds since the registry started, refreshed every [`CLOCK_TICK`]
/// by the background task and on every slow path. `Instant::now()` costs
/// more than the rest of the hot path, and `last_used` only feeds the idle
/// heuristic, so the hot path reads this cached value.
struct CoarseClock {
    origin: tokio::time::Instant,
    now_ms: AtomicU64,
    /// Set by `shutdown`: only then does releasing a lease wake the
    /// shutdown waiting for leases in flight (kept here, beside the clock
    /// that every lease already reaches, to keep the lease one pointer wide).
    shutting_down: AtomicBool,
}

impl CoarseClock {
    fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
            now_ms: AtomicU64::new(0),
            shutting_down: AtomicBool::new(false),
        }
    }

    #[inline]
    fn now(&self) -> u64 {
        self.now_ms.load(Ordering::Relaxed)
    }

    fn refresh(&self) -> u64 {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.now_ms.fetch_max(now, Ordering::Relaxed).max(now)
    }
}

/// A session's value in the table. The fields every call touches (the
/// connection, the clock) sit beside the entry's state word; the rest is
/// boxed, so that entries stay small and the hot path stays in cache.
struct Slot<T> {
    /// Set once, by the creator holding `Cold::create`; never changed after.
    connection: std::sync::OnceLock<Arc<Connection>>,
    clock: Arc<CoarseClock>,
    cold: Box<Cold<T>>,
}

/// What a lease needs only on the slow path.
struct Cold<T> {
    session: SessionId,
    registry: std::sync::Weak<Inner<T>>,
    /// The creation gate: single-flight connection of this session.
    create: tokio::sync::Mutex<()>,
}

/// Acquisitions served by an existing connection, counted on one of several
/// cache lines chosen per thread, so the hot path does not contend on one
/// shared counter.
struct Striped {
    cells: [CachePadded; 8],
}

#[repr(align(128))]
#[derive(Default)]
struct CachePadded(StdAtomicU64);

impl Striped {
    fn new() -> Self {
        Self {
            cells: Default::default(),
        }
    }

    #[inline]
    fn bump(&self) {
        static NEXT: StdAtomicU64 = StdAtomicU64::new(0);
        thread_local! {
            static INDEX: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
        }
        let index = INDEX.with(|i| {
            if i.get() == usize::MAX {
                i.set((NEXT.fetch_add(1, StdOrdering::Relaxed) % 8) as usize);
            }
            i.get()
        });
        if let Some(cell) = self.cells.get(index) {
            cell.0.fetch_add(1, StdOrdering::Relaxed);
        }
    }

    fn sum(&self) -> u64 {
        self.cells
            .iter()
            .map(|c| c.0.load(StdOrdering::Relaxed))
            .sum()
    }
}

struct Inner<T> {
    transport: T,
    config: RegistryConfig,
    idle_ms: u64,
    table: Table<Slot<T>>,
    clock: Arc<CoarseClock>,
    counters: Counters,
    closed: AtomicBool,
    room: Notify,
    released: Notify,
    background: Mutex<Option<JoinHandle<()>>>,
    background_started: AtomicBool,
}

impl<T> Inner<T> {
    fn room(&self) -> Room {
        Room {
            limit: self.config.max_sessions,
            idle_ms: self.idle_ms,
            lru: self.config.full_policy == FullPolicy::EvictLruIdle,
        }
    }

    /// Accounts for removed entries and closes their connections in the
    /// background (never under the map lock, which is already released).
    fn dispose(&self, removed: Removed<Slot<T>>, cause: RemovalCause) {
        if removed.is_empty() {
            return;
        }
        self.counters.removed(cause, removed.len());
        self.room.notify_waiters();
        let connections = connections_of(removed, cause);
        if !connections.is_empty() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(close_all(connections));
            }
        }
    }

    fn stop_background(&self) {
        if let Some(handle) = self.background.lock().ok().and_then(|mut b| b.take()) {
            handle.abort();
        }
    }
}

impl<T> Drop for Inner<T> {
    fn drop(&mut self) {
        self.stop_background();
    }
}

fn new_slot<T>(inner: &Arc<Inner<T>>, session: &SessionId) -> Slot<T> {
    Slot {
        connection: std::sync::OnceLock::new(),
        clock: inner.clock.clone(),
        cold: Box::new(Cold {
            session: session.clone(),
            registry: Arc::downgrade(inner),
            create: tokio::sync::Mutex::new(()),
        }),
    }
}

fn connections_of<T>(removed: Removed<Slot<T>>, cause: RemovalCause) -> Vec<Arc<Connection>> {
    removed
        .into_iter()
        .filter_map(|(session, entry)| {
            let connection = entry.value.connection.get().cloned();
            tracing::debug!(%session, ?cause, connection = connection.as_ref().map(|c| c.id()), "session removed");
            connection
        })
        .collect()
}

async fn close_all(connections: Vec<Arc<Connection>>) {
    let mut closing = tokio::task::JoinSet::new();
    for connection in connections {
        closing.spawn(async move { connection.close().await });
    }
    while closing.join_next().await.is_some() {}
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
    pub fn ref_count(&self, session: &SessionId) -> usize {
        self.inner
            .table
            .peek(session)
            .map_or(0, |e| usize::try_from(e.refs()).unwrap_or(usize::MAX))
    }

    /// What is known about `session`, read without refreshing its idle time.
    pub fn peek(&self, session: &SessionId) -> Option<SessionInfo> {
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
    pub fn __bench_insert(&self, session: &SessionId) {
        let now = self.inner.clock.now();
        let insert = self
            .inner
            .table
            .insert(session, None, now, self.inner.room(), || {
                new_slot(&self.inner, session)
            });
        if let Ok((entry, _)) = insert.result {
            entry.release(now);
        }
    }

    /// Benchmark hook (feature `_bench`, internal): removes an entry (one
    /// write-lock acquisition).
    #[cfg(feature = "_bench")]
    #[doc(hidden)]
    pub fn __bench_remove(&self, session: &SessionId) {
        self.inner.table.remove_key(session);
    }

    /// The counters.
    pub fn stats(&self) -> RegistryStats {
        let c = &self.inner.counters;
        let load = |a: &StdAtomicU64| a.load(StdOrdering::Relaxed);
        RegistryStats {
            sessions: self.session_count(),
            created: load(&c.created),
            reused: c.reused.sum(),
            rejected: load(&c.rejected),
            failed: load(&c.failed),
            removed_idle: load(&c.removed_idle),
            removed_explicit: load(&c.removed_explicit),
            removed_limit: load(&c.removed_limit),
            removed_broken: load(&c.removed_broken),
        }
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
        registry.ensure_background();
        registry
    }

    fn ensure_background(&self) {
        if self.inner.background_started.load(StdOrdering::Relaxed) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self
            .inner
            .background_started
            .swap(true, StdOrdering::AcqRel)
        {
            return;
        }
        let task = handle.spawn(background(Arc::downgrade(&self.inner)));
        if let Ok(mut slot) = self.inner.background.lock() {
            *slot = Some(task);
        }
    }

    /// The transport connections are opened with.
    pub fn transport(&self) -> &T {
        &self.inner.transport
    }

    /// Leases the connection of `session`, opening it on first use.
    ///
    /// # Errors
    /// [`Error::Shutdown`] after [`Registry::shutdown`];
    /// [`Error::SessionLimitReached`] when the registry is full (after the
    /// wait of [`FullPolicy::Wait`]); [`Error::Connect`] when opening the
    /// connection fails or times out, or when the session's connection is
    /// found dead on every one of a few successive openings (source:
    /// `ServerGone`).
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped future releases its reference; a connection
    /// being opened by it is dropped (for stdio: the process is killed), and
    /// a caller waiting on the same session opens it instead.
    pub fn acquire<'a>(
        &'a self,
        session: &'a SessionId,
    ) -> impl Future<Output = Result<Lease<T>, Error>> + Send + 'a {
        // Not an `async fn`: that would wrap `acquire_as`'s state machine in
        // a second one, and the hot path would pay for moving both.
        self.acquire_as(session, None)
    }

    /// Like [`Registry::acquire`], binding a new session to `principal`: a
    /// session bound to one principal is refused to any other with
    /// [`Error::SessionForbidden`]. Sessions created without a principal are
    /// open to all.
    pub async fn acquire_as(
        &self,
        session: &SessionId,
        principal: Option<&str>,
    ) -> Result<Lease<T>, Error> {
        // The hot path (a live session with a live connection) is synchronous:
        // one read-lock lookup and a few atomics. Everything else is boxed so
        // this future stays small.
        match self.try_acquire_live(session, principal) {
            Hot::Leased(lease) => Ok(lease),
            Hot::Miss => Box::pin(self.acquire_slow(session, principal)).await,
            Hot::Shutdown => Err(Error::Shutdown),
            Hot::Refused(refused) => Err(self.refusal(refused, session)),
        }
    }

    /// The hot path: an existing, unexpired session whose connection is open.
    #[inline]
    fn try_acquire_live(&self, session: &SessionId, principal: Option<&str>) -> Hot<T> {
        let inner = &*self.inner;
        if inner.closed.load(StdOrdering::Relaxed) {
            return Hot::Shutdown;
        }
        let mut expired = None;
        let entry = match inner.table.lookup(
            session,
            principal,
            inner.clock.now(),
            inner.idle_ms,
            &mut expired,
        ) {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                if let Some(entry) = expired {
                    if inner.table.remove_entry(session, &entry) {
                        inner.dispose(vec![(session.clone(), entry)], RemovalCause::Idle);
                    }
                }
                return Hot::Miss;
            }
            Err(refused) => return Hot::Refused(refused),
        };
        match Lease::live(entry, &inner.counters) {
            Some(lease) => Hot::Leased(lease),
            None => Hot::Miss,
        }
    }

    #[tracing::instrument(level = "debug", skip(self), fields(%session))]
    async fn acquire_slow(
        &self,
        session: &SessionId,
        principal: Option<&str>,
    ) -> Result<Lease<T>, Error> {
        self.ensure_background();
        for _ in 0..MAX_REPLACEMENTS {
            let entry = self.resolve(session, principal).await?;
            let reference = Ref {
                inner: self.inner.clone(),
                entry: Some(entry),
            };
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
    /// As [`Registry::acquire_as`].
    pub async fn handle(
        &self,
        session: &SessionId,
        principal: Option<&str>,
    ) -> Result<SessionHandle<T>, Error> {
        let lease = self.acquire_as(session, principal).await?;
        Ok(SessionHandle {
            registry: self.clone(),
            session: session.clone(),
            principal: principal.map(Into::into),
            entry: lease.entry.clone(),
        })
    }

    /// Finds or creates the entry and takes a reference.
    async fn resolve(
        &self,
        session: &SessionId,
        principal: Option<&str>,
    ) -> Result<EntryRef<Slot<T>>, Error> {
        let inner = &*self.inner;
        let deadline = match inner.config.full_policy {
            FullPolicy::Wait(wait) => Some(tokio::time::Instant::now() + wait),
            _ => None,
        };
        loop {
            if inner.closed.load(StdOrdering::Acquire) {
                return Err(Error::Shutdown);
            }
            let mut expired = None;
            let found = inner.table.lookup(
                session,
                principal,
                inner.clock.now(),
                inner.idle_ms,
                &mut expired,
            );
            if let Some(entry) = expired {
                if inner.table.remove_entry(session, &entry) {
                    inner.dispose(vec![(session.clone(), entry)], RemovalCause::Idle);
                }
            }
            match found {
                Ok(Some(entry)) => return Ok(entry),
                Ok(None) => {}
                Err(refused) => return Err(self.refusal(refused, session)),
            }
            let room_freed = inner.room.notified();
            let mut room_freed = pin!(room_freed);
            room_freed.as_mut().enable();
            let now = inner.clock.refresh();
            let insert = inner
                .table
                .insert(session, principal, now, inner.room(), || {
                    new_slot(&self.inner, session)
                });
            inner.dispose(insert.evicted, RemovalCause::Limit);
            match insert.result {
                Ok((entry, _)) => return Ok(entry),
                Err(Refused::Full) => {
                    let Some(deadline) = deadline else {
                        return Err(self.refusal(Refused::Full, session));
                    };
                    if tokio::time::timeout_at(deadline, room_freed).await.is_err() {
                        return Err(self.refusal(Refused::Full, session));
                    }
                }
                Err(refused) => return Err(self.refusal(refused, session)),
            }
        }
    }

    fn refusal(&self, refused: Refused, session: &SessionId) -> Error {
        match refused {
            Refused::Full => {
                Counters::bump(&self.inner.counters.rejected, 1);
                tracing::debug!(%session, limit = self.inner.config.max_sessions, "session refused: registry full");
                Error::SessionLimitReached {
                    limit: self.inner.config.max_sessions,
                }
            }
            Refused::Forbidden => Error::SessionForbidden {
                session: session.to_string(),
            },
        }
    }

    /// Gets the entry's connection, opening it (single-flight) if needed.
    /// `None`: the entry's connection is dead; it was removed, retry.
    async fn connect(&self, reference: Ref<T>) -> Result<Option<Lease<T>>, Error> {
        let inner = &*self.inner;
        let Some(entry) = reference.entry.clone() else {
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
                // Only the gate holder sets it, and it was empty under the gate.
                let _ = slot.connection.set(connection);
                drop(gate);
                Ok(Some(reference.into_lease()))
            }
            Err(error) => {
                Counters::bump(&inner.counters.failed, 1);
                tracing::debug!(%session, %error, "opening a session connection failed");
                drop(gate);
                drop(reference);
                Err(Error::Connect { source: error })
            }
        }
    }

    /// Removes sessions with no lease that have been idle for at least
    /// `max_age` (`None`: the configured idle timeout), closes their
    /// connections after releasing the map lock, and returns how many were removed.
    pub async fn cleanup_sessions(&self, max_age: Option<Duration>) -> usize {
        cleanup(
            &self.inner,
            max_age.unwrap_or(self.inner.config.idle_timeout),
        )
        .await
    }

    /// Removes `session` whatever its state and closes its connection once
    /// the map lock is released (calls in flight on it fail). Returns whether
    /// it existed.
    pub async fn remove_session(&self, session: &SessionId) -> bool {
        let Some(entry) = self.inner.table.remove_key(session) else {
            return false;
        };
        self.inner.counters.removed(RemovalCause::Explicit, 1);
        self.inner.room.notify_waiters();
        close_all(connections_of(
            vec![(session.clone(), entry)],
            RemovalCause::Explicit,
        ))
        .await;
        true
    }

    /// Stops the background task, refuses new acquisitions, waits up to
    /// `grace` for leases in flight to be released, then closes every connection.
    pub async fn shutdown(&self, grace: Duration) {
        let inner = &*self.inner;
        inner.stop_background();
        inner.closed.store(true, StdOrdering::Release);
        inner.clock.shutting_down.store(true, StdOrdering::Release);
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
        inner
            .counters
            .removed(RemovalCause::Explicit, removed.len());
        close_all(connections_of(removed, RemovalCause::Explicit)).await;
    }
}

async fn cleanup<T>(inner: &Inner<T>, max_age: Duration) -> usize {
    let now = inner.clock.refresh();
    let max_age_ms = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
    let removed = inner.table.take_idle(now, max_age_ms);
    let count = removed.len();
    if count > 0 {
        inner.counters.removed(RemovalCause::Idle, count);
        inner.room.notify_waiters();
        close_all(connections_of(removed, RemovalCause::Idle)).await;
    }
    count
}

/// Refreshes the coarse clock and runs the reaper. Holds only a `Weak`: it
/// stops when the registry is dropped (or shut down, which aborts it).
async fn background<T>(inner: std::sync::Weak<Inner<T>>) {
    let mut ticks = tokio::time::interval(CLOCK_TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_reap = tokio::time::Instant::now();
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { break };
        inner.clock.refresh();
        let Some(period) = inner.config.reap_interval else {
            continue;
        };
        if last_reap.elapsed() >= period {
            last_reap = tokio::time::Instant::now();
            let removed = cleanup(&inner, inner.config.idle_timeout).await;
            if removed > 0 {
                tracing::debug!(removed, "reaper removed idle sessions");
            }
        }
    }
}

/// Marks `entry` broken and removes it, if `connection` is still its own;
/// the connection is closed in the background.
fn break_entry<T>(inner: &Inner<T>, entry: &EntryRef<Slot<T>>, connection: &Arc<Connection>) {
    let current = entry.value.connection.get();
    if !current.is_some_and(|c| Arc::ptr_eq(c, connection)) {
        return;
    }
    entry.close();
    let session = &entry.value.cold.session;
    if inner.table.remove_entry(session, entry) {
        inner.counters.removed(RemovalCause::Broken, 1);
        inner.room.notify_waiters();
        tracing::debug!(%session, connection = connection.id(), cause = ?RemovalCause::Broken, "session removed");
        let connection = connection.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { connection.close().await });
        }
    }
}

/// Releases a reference taken during creation; an entry left without a
/// connection (failed or abandoned creation) is removed.
fn release_creation<T>(inner: &Inner<T>, entry: EntryRef<Slot<T>>) {
    entry.release(inner.clock.now());
    if entry.value.connection.get().is_none()
        && entry.try_close_unused()
        && inner.table.remove_entry(&entry.value.cold.session, &entry)
    {
        inner.room.notify_waiters();
    }
    if inner.closed.load(StdOrdering::Relaxed) {
        inner.released.notify_waiters();
    }
}

/// A reference taken on the slow path, before the connection exists;
/// releasing it is `Drop`'s job.
struct Ref<T> {
    inner: Arc<Inner<T>>,
    entry: Option<EntryRef<Slot<T>>>,
}

impl<T> Ref<T> {
    /// Turns the reference into a lease; the entry must be connected.
    fn into_lease(mut self) -> Lease<T> {
        match self.entry.take() {
            Some(entry) if entry.value.connection.get().is_some() => Lease { entry },
            Some(entry) => {
                self.entry = Some(entry);
                unreachable_lease()
            }
            // `entry` is only taken here and on drop.
            None => unreachable_lease(),
        }
    }
}

/// Leases exist only for connected entries; see [`Lease`].
#[cold]
fn unreachable_lease() -> ! {
    unreachable!("a lease exists only for a connected session")
}

impl<T> Drop for Ref<T> {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            release_creation(&self.inner, entry);
        }
    }
}

/// What the synchronous hot path found: kept small (no `Error` inside) so
/// that the common case moves a pointer, not an error-sized value.
enum Hot<T> {
    Leased(Lease<T>),
    /// Absent, expired, closed, or not yet connected: take the slow path.
    Miss,
    Refused(Refused),
    Shutdown,
}

/// A session's connection, leased for one or more calls.
///
/// While the lease lives the session cannot be cleaned up. Dropping it
/// releases the reference (one atomic) and marks the session active now.
pub struct Lease<T> {
    /// Holds a reference on the entry, whose connection is set (a lease is
    /// only made for a connected entry, and a set `OnceCell` never changes).
    entry: EntryRef<Slot<T>>,
}

impl<T> fmt::Debug for Lease<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("session", &self.entry.value.cold.session)
            .field("connection", &self.connection().id())
            .finish()
    }
}

impl<T> Lease<T> {
    /// A lease on an entry the caller holds a reference on, if it is
    /// connected; otherwise the reference is released.
    ///
    /// A connection that died since is not detected here (that would touch
    /// its memory on every call): the call on it fails with `ServerGone`, the
    /// caller invalidates the lease, and the next acquisition reconnects.
    fn live(entry: EntryRef<Slot<T>>, counters: &Counters) -> Option<Self> {
        match entry.value.connection.get() {
            Some(_) => {
                counters.reused.bump();
                Some(Self { entry })
            }
            None => {
                entry.release(entry.value.clock.now());
                None
            }
        }
    }

    /// The session's connection.
    pub fn connection(&self) -> &Arc<Connection> {
        match self.entry.value.connection.get() {
            Some(connection) => connection,
            None => unreachable_lease(),
        }
    }

    /// The session this lease is for.
    pub fn session(&self) -> &SessionId {
        &self.entry.value.cold.session
    }

    /// Removes the session because its connection is broken (the server went
    /// away); the session's next acquisition opens a new one. Calls still
    /// running on the old connection keep it until they finish.
    pub fn invalidate(self) {
        if let Some(inner) = self.entry.value.cold.registry.upgrade() {
            break_entry(&inner, &self.entry, self.connection());
        }
    }
}

impl<T> Drop for Lease<T> {
    fn drop(&mut self) {
        let slot = &self.entry.value;
        self.entry.release(slot.clock.now());
        if slot.clock.shutting_down.load(StdOrdering::Relaxed) {
            if let Some(inner) = slot.cold.registry.upgrade() {
                inner.released.notify_waiters();
            }
        }
    }
}

impl<T> std::ops::Deref for Lease<T> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.connection()
    }
}

/// A session resolved once, for a whole conversation: [`SessionHandle::acquire`]
/// takes a lease with one atomic add on the session's entry, without touching
/// the map. If the session was removed meanwhile (idle, evicted, broken), the
/// handle resolves it again through the registry.
pub struct SessionHandle<T> {
    registry: Registry<T>,
    session: SessionId,
    principal: Option<Box<str>>,
    entry: EntryRef<Slot<T>>,
}

impl<T> Clone for SessionHandle<T> {
    fn clone(&self) -> Self {
        Self {
            registry: self.registry.clone(),
            session: self.session.clone(),
            principal: self.principal.clone(),
            entry: self.entry.clone(),
        }
    }
}

impl<T> fmt::Debug for SessionHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionHandle")
            .field("session", &self.session)
            .finish()
    }
}

impl<T: Transport> SessionHandle<T> {
    /// The session.
    pub fn session(&self) -> &SessionId {
        &self.session
    }

    /// Leases the session's connection.
    ///
    /// # Errors
    /// As [`Registry::acquire`], when the session must be resolved again.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`Registry::acquire`].
    pub async fn acquire(&mut self) -> Result<Lease<T>, Error> {
        if let Some(lease) = self.try_acquire_live() {
            return Ok(lease);
        }
        let lease = self
            .registry
            .acquire_as(&self.session, self.principal.as_deref())
            .await?;
        self.entry = lease.entry.clone();
        Ok(lease)
    }

    fn try_acquire_live(&self) -> Option<Lease<T>> {
        let inner = &*self.registry.inner;
        if inner.closed.load(StdOrdering::Relaxed) || !self.entry.try_acquire() {
            return None;
        }
        // An expired session is not served, even before the reaper runs
        // (unless someone else is using it right now).
        let expired =
            self.entry.idle_ms(inner.clock.now()) >= inner.idle_ms && self.entry.refs() == 1;
        if expired {
            self.entry.release(inner.clock.now());
            return None;
        }
        Lease::live(self.entry.clone(), &inner.counters)
    }
}
