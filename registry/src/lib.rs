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
//! # async fn run(transport: impl Transport) -> Result<(), mcp_group_core::Error> {
//! let registry = Registry::new(transport, RegistryConfig::default());
//! let lease = registry.acquire(&SessionId::new("alice")).await?; // connects on first use
//! let tools = lease.connection().list_tools(Duration::from_secs(10)).await?;
//! drop(lease); // the session stays, idle, until the reaper or `cleanup_sessions`
//! registry.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```
//!
//! # The contract (the seed's, tightened)
//!
//! - A session entry holds its connection, `last_activity` and a ref count.
//!   [`Registry::acquire`] returns a [`Lease`]; while any lease of a session
//!   lives, the session is never cleaned up. Dropping the lease — also on
//!   panic or cancellation — releases it and touches `last_activity`.
//! - Lookup and ref increment are **one step** under the map lock, and cleanup
//!   decides under the same lock, so a caller that found its session always
//!   gets it: "temporarily unavailable" cannot happen to a live caller.
//! - **No I/O under the map lock.** Connections are opened with no lock of the
//!   map held; cleanup removes entries under the lock and closes their
//!   connections after releasing it.
//! - **Single-flight creation.** Concurrent first uses of one session wait on
//!   that session's creation gate and share the one connection opened; first
//!   uses of different sessions connect in parallel; lookups of sessions that
//!   already have a connection never wait on any creation. A failed creation
//!   leaves no entry behind, and the next call retries.
//! - `max_sessions`: a new session beyond the limit first evicts sessions idle
//!   past `idle_timeout`; if the registry is still full the caller gets
//!   [`Error::SessionLimitReached`].
//! - A background reaper (holding only a `Weak`) cleans idle sessions every
//!   `reap_interval` and stops when the registry is dropped or shut down.
//!
//! # Lock order
//!
//! 1. `Inner::sessions` — the map lock (`std::sync::Mutex`), never held across
//!    an `.await`.
//! 2. `Slot::state` — one per session (`std::sync::Mutex`): connection and
//!    `last_activity`. May be taken while holding the map lock; the map lock is
//!    never taken while holding it.
//! 3. `Slot::create` — the session's creation gate (`tokio::sync::Mutex`),
//!    held across `connect`; taken only with no other lock held.
//!
//! The ref count is an atomic: incremented only under the map lock, and
//! decremented without it.
//!
//! Why sync locks: every critical section is a few map and field operations,
//! and the hot path (an existing session) takes the map lock once and the slot
//! lock once, with no `.await` in between; an async lock would cost a task
//! yield on contention for no benefit, and the compiler refuses to keep a
//! `std` guard across an `.await` in a spawned task.
//!
//! [mcp-group]: https://docs.rs/mcp-group

#[cfg(all(test, mcp_group_loom))]
mod loom_tests;
mod sync;
mod table;

use std::{
    fmt,
    pin::pin,
    sync::{
        Arc, Mutex,
        atomic::{
            AtomicBool, AtomicU64, AtomicU64 as StdAtomicU64, Ordering, Ordering as StdOrdering,
        },
    },
    time::Duration,
};

pub use mcp_group_core::Error;
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

#[derive(Default)]
struct Counters {
    created: StdAtomicU64,
    reused: StdAtomicU64,
    rejected: StdAtomicU64,
    failed: StdAtomicU64,
    removed_idle: StdAtomicU64,
    removed_explicit: StdAtomicU64,
    removed_limit: StdAtomicU64,
    removed_broken: StdAtomicU64,
}

impl Counters {
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
}

impl CoarseClock {
    fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
            now_ms: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.now_ms.load(Ordering::Relaxed)
    }

    fn refresh(&self) -> u64 {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.now_ms.fetch_max(now, Ordering::Relaxed).max(now)
    }
}

/// A session's value in the table: its connection, opened once.
struct Slot {
    connection: tokio::sync::OnceCell<Arc<Connection>>,
}

struct Inner<T> {
    transport: T,
    config: RegistryConfig,
    idle_ms: u64,
    table: Table<Slot>,
    clock: CoarseClock,
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
    fn dispose(&self, removed: Removed<Slot>, cause: RemovalCause) {
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

fn connections_of(removed: Removed<Slot>, cause: RemovalCause) -> Vec<Arc<Connection>> {
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

    /// The counters.
    pub fn stats(&self) -> RegistryStats {
        let c = &self.inner.counters;
        let load = |a: &StdAtomicU64| a.load(StdOrdering::Relaxed);
        RegistryStats {
            sessions: self.session_count(),
            created: load(&c.created),
            reused: load(&c.reused),
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
                clock: CoarseClock::new(),
                counters: Counters::default(),
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
    /// # Cancel safety
    /// Cancel safe: a dropped future releases its reference; a connection
    /// being opened by it is dropped (for stdio: the process is killed), and
    /// a caller waiting on the same session opens it instead.
    pub async fn acquire(&self, session: &SessionId) -> Result<Lease<T>, Error> {
        self.acquire_as(session, None).await
    }

    /// Like [`Registry::acquire`], binding a new session to `principal`: a
    /// session bound to one principal is refused to any other with
    /// [`Error::SessionForbidden`]. Sessions created without a principal are
    /// open to all.
    #[tracing::instrument(level = "debug", skip(self), fields(%session))]
    pub async fn acquire_as(
        &self,
        session: &SessionId,
        principal: Option<&str>,
    ) -> Result<Lease<T>, Error> {
        self.ensure_background();
        for _ in 0..MAX_REPLACEMENTS {
            let entry = self.resolve(session, principal).await?;
            let reference = Ref {
                inner: self.inner.clone(),
                session: session.clone(),
                entry,
            };
            match self.connect(reference).await? {
                Some(lease) => return Ok(lease),
                None => continue,
            }
        }
        Err(Error::ServerGone { source: None })
    }

    /// Resolves `session` once and returns a handle that leases it again
    /// without touching the map (one atomic add while the session lives).
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
            entry: lease.reference.entry.clone(),
        })
    }

    /// Finds or creates the entry and takes a reference.
    async fn resolve(
        &self,
        session: &SessionId,
        principal: Option<&str>,
    ) -> Result<EntryRef<Slot>, Error> {
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
                .insert(session, principal, now, inner.room(), || Slot {
                    connection: tokio::sync::OnceCell::new(),
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
        let slot = &reference.entry.value;
        if let Some(connection) = slot.connection.get() {
            if connection.is_closed() {
                reference.break_entry(connection);
                return Ok(None);
            }
            Counters::bump(&inner.counters.reused, 1);
            let connection = connection.clone();
            return Ok(Some(Lease {
                reference,
                connection,
            }));
        }
        let mut opened = false;
        let timeout = inner.config.connect_timeout;
        let result = slot
            .connection
            .get_or_try_init(|| async {
                opened = true;
                let connect = inner.transport.connect(&reference.session);
                match tokio::time::timeout(timeout, connect).await {
                    Ok(Ok(connection)) => Ok(Arc::new(connection)),
                    Ok(Err(error)) => Err(error),
                    Err(_) => Err(Error::Timeout {
                        operation: "connect",
                        after: timeout,
                    }),
                }
            })
            .await;
        match result {
            Ok(connection) => {
                let counter = if opened {
                    &inner.counters.created
                } else {
                    &inner.counters.reused
                };
                Counters::bump(counter, 1);
                if opened {
                    tracing::debug!(session = %reference.session, connection = connection.id(), "session connection opened");
                }
                let connection = connection.clone();
                Ok(Some(Lease {
                    reference,
                    connection,
                }))
            }
            Err(error) => {
                Counters::bump(&inner.counters.failed, 1);
                tracing::debug!(session = %reference.session, %error, "opening a session connection failed");
                Err(error)
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

/// A reference on a session entry; releasing it is `Drop`'s job.
struct Ref<T> {
    inner: Arc<Inner<T>>,
    session: SessionId,
    entry: EntryRef<Slot>,
}

impl<T> Ref<T> {
    /// Marks the entry broken and removes it, if `connection` is still its own.
    fn break_entry(&self, connection: &Arc<Connection>) {
        let current = self.entry.value.connection.get();
        if !current.is_some_and(|c| Arc::ptr_eq(c, connection)) {
            return;
        }
        self.entry.close();
        if self.inner.table.remove_entry(&self.session, &self.entry) {
            self.inner.counters.removed(RemovalCause::Broken, 1);
            self.inner.room.notify_waiters();
            tracing::debug!(session = %self.session, connection = connection.id(), cause = ?RemovalCause::Broken, "session removed");
            let connection = connection.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move { connection.close().await });
            }
        }
    }
}

impl<T> Drop for Ref<T> {
    fn drop(&mut self) {
        let inner = &*self.inner;
        self.entry.release(inner.clock.now());
        if self.entry.value.connection.get().is_none()
            && self.entry.try_close_unused()
            && inner.table.remove_entry(&self.session, &self.entry)
        {
            // A failed or abandoned creation leaves no entry behind.
            inner.room.notify_waiters();
        }
        if inner.closed.load(StdOrdering::Relaxed) {
            inner.released.notify_waiters();
        }
    }
}

/// A session's connection, leased for one or more calls.
///
/// While the lease lives the session cannot be cleaned up. Dropping it
/// releases the reference and marks the session active now.
pub struct Lease<T> {
    reference: Ref<T>,
    connection: Arc<Connection>,
}

impl<T> fmt::Debug for Lease<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("session", &self.reference.session)
            .field("connection", &self.connection.id())
            .finish()
    }
}

impl<T> Lease<T> {
    /// The session's connection.
    pub fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }

    /// The session this lease is for.
    pub fn session(&self) -> &SessionId {
        &self.reference.session
    }

    /// Removes the session because its connection is broken (the server went
    /// away); the session's next acquisition opens a new one. Calls still
    /// running on the old connection keep it until they finish.
    pub fn invalidate(self) {
        self.reference.break_entry(&self.connection);
    }
}

impl<T> std::ops::Deref for Lease<T> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.connection
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
    entry: EntryRef<Slot>,
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
    /// # Cancel safety
    /// Cancel safe, as [`Registry::acquire`].
    pub async fn acquire(&mut self) -> Result<Lease<T>, Error> {
        let inner = &self.registry.inner;
        if !inner.closed.load(StdOrdering::Relaxed) && self.entry.try_acquire() {
            let reference = Ref {
                inner: inner.clone(),
                session: self.session.clone(),
                entry: self.entry.clone(),
            };
            let fresh = reference.entry.idle_ms(inner.clock.now()) < inner.idle_ms
                || reference.entry.refs() > 1;
            if fresh {
                if let Some(connection) = reference.entry.value.connection.get() {
                    if !connection.is_closed() {
                        Counters::bump(&inner.counters.reused, 1);
                        let connection = connection.clone();
                        return Ok(Lease {
                            reference,
                            connection,
                        });
                    }
                }
            }
        }
        let lease = self
            .registry
            .acquire_as(&self.session, self.principal.as_deref())
            .await?;
        self.entry = lease.reference.entry.clone();
        Ok(lease)
    }
}
