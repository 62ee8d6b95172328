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

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

pub use mcp_group_core::Error;
use mcp_group_core::{Connection, SessionId, Transport};
use tokio::{sync::Notify, task::JoinHandle, time::Instant};

/// Limits and timers of a [`Registry`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// The most sessions open at once (default 100).
    pub max_sessions: usize,
    /// A session unused for this long may be cleaned up (default 1 h).
    pub idle_timeout: Duration,
    /// Bound on opening a connection, handshake included (default 60 s).
    pub connect_timeout: Duration,
    /// How often the background reaper runs; `None` disables it (default: a
    /// quarter of `idle_timeout`, at most 5 min).
    pub reap_interval: Option<Duration>,
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
            reap_interval: Some((idle_timeout / 4).min(Duration::from_secs(300))),
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
}

/// A snapshot of the registry's counters. Only roughly consistent: each
/// number is read separately.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryStats {
    /// Sessions in the map now.
    pub sessions: usize,
    /// Connections opened.
    pub created: u64,
    /// Acquisitions served by an existing connection.
    pub reused: u64,
    /// Sessions removed by cleanup or eviction.
    pub evicted: u64,
    /// New sessions refused because the registry was full.
    pub rejected: u64,
    /// Connection attempts that failed.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    created: AtomicU64,
    reused: AtomicU64,
    evicted: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
}

struct SlotState {
    connection: Option<Arc<Connection>>,
    last_activity: Instant,
}

struct Slot {
    refs: AtomicUsize,
    state: Mutex<SlotState>,
    create: tokio::sync::Mutex<()>,
}

impl Slot {
    fn new() -> Self {
        Self {
            refs: AtomicUsize::new(1),
            state: Mutex::new(SlotState {
                connection: None,
                last_activity: Instant::now(),
            }),
            create: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> MutexGuard<'_, SlotState> {
        // A panic while holding this lock leaves the state consistent (plain
        // field writes), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live_connection(&self) -> Option<Arc<Connection>> {
        let mut state = self.state();
        match &state.connection {
            Some(c) if !c.is_closed() => Some(c.clone()),
            Some(_) => {
                state.connection = None;
                None
            }
            None => None,
        }
    }
}

struct Sessions {
    map: HashMap<SessionId, Arc<Slot>>,
    closed: bool,
}

struct Inner<T> {
    transport: T,
    config: RegistryConfig,
    sessions: Mutex<Sessions>,
    counters: Counters,
    idle_notify: Notify,
    reaper: Mutex<Option<JoinHandle<()>>>,
}

impl<T> Inner<T> {
    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes (under the map lock) every unleased session idle for at least
    /// `max_age` and returns their connections, to be closed by the caller
    /// after the lock is released.
    fn take_idle(sessions: &mut Sessions, max_age: Duration) -> Vec<(SessionId, Arc<Connection>)> {
        let now = Instant::now();
        let mut victims = Vec::new();
        sessions.map.retain(|id, slot| {
            if slot.refs.load(Ordering::Acquire) > 0 {
                return true;
            }
            let mut state = slot.state();
            if now.saturating_duration_since(state.last_activity) < max_age {
                return true;
            }
            if let Some(conn) = state.connection.take() {
                victims.push((id.clone(), conn));
            }
            false
        });
        victims
    }
}

impl<T> Drop for Inner<T> {
    fn drop(&mut self) {
        if let Ok(mut reaper) = self.reaper.lock() {
            if let Some(handle) = reaper.take() {
                handle.abort();
            }
        }
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
        self.inner.sessions().map.len()
    }

    /// The configured `max_sessions`.
    pub fn session_limit(&self) -> usize {
        self.inner.config.max_sessions
    }

    /// The number of leases currently held on `session` (0 if it has no entry).
    pub fn ref_count(&self, session: &SessionId) -> usize {
        self.inner
            .sessions()
            .map
            .get(session)
            .map_or(0, |slot| slot.refs.load(Ordering::Acquire))
    }

    /// The counters.
    pub fn stats(&self) -> RegistryStats {
        let c = &self.inner.counters;
        RegistryStats {
            sessions: self.session_count(),
            created: c.created.load(Ordering::Relaxed),
            reused: c.reused.load(Ordering::Relaxed),
            evicted: c.evicted.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }
}

impl<T: Transport> Registry<T> {
    /// Creates a registry that opens connections with `transport`.
    ///
    /// When called inside a Tokio runtime and `config.reap_interval` is set,
    /// starts the background reaper.
    pub fn new(transport: T, config: RegistryConfig) -> Self {
        let inner = Arc::new(Inner {
            transport,
            config,
            sessions: Mutex::new(Sessions {
                map: HashMap::new(),
                closed: false,
            }),
            counters: Counters::default(),
            idle_notify: Notify::new(),
            reaper: Mutex::new(None),
        });
        if let (Some(period), Ok(handle)) = (
            inner.config.reap_interval,
            tokio::runtime::Handle::try_current(),
        ) {
            let task = handle.spawn(reap(Arc::downgrade(&inner), period));
            if let Ok(mut reaper) = inner.reaper.lock() {
                *reaper = Some(task);
            }
        }
        Self { inner }
    }

    /// The transport connections are opened with.
    pub fn transport(&self) -> &T {
        &self.inner.transport
    }

    /// Leases the connection of `session`, opening it on first use.
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped future releases its reservation; a connection
    /// being opened by it is closed (or, if other callers wait on the same
    /// session, one of them opens it).
    #[tracing::instrument(level = "debug", skip(self), fields(%session))]
    pub async fn acquire(&self, session: &SessionId) -> Result<Lease<T>, Error> {
        let (slot, victims) = self.reserve(session)?;
        // From here the reservation is released by Drop, whatever happens.
        let reservation = Reservation {
            inner: self.inner.clone(),
            session: session.clone(),
            slot,
        };
        close_all(victims).await;
        if let Some(connection) = reservation.slot.live_connection() {
            self.inner.counters.reused.fetch_add(1, Ordering::Relaxed);
            return Ok(Lease {
                reservation,
                connection,
            });
        }
        let slot = reservation.slot.clone();
        let gate = slot.create.lock().await;
        if let Some(connection) = reservation.slot.live_connection() {
            self.inner.counters.reused.fetch_add(1, Ordering::Relaxed);
            return Ok(Lease {
                reservation,
                connection,
            });
        }
        let timeout = self.inner.config.connect_timeout;
        let connected =
            match tokio::time::timeout(timeout, self.inner.transport.connect(session)).await {
                Ok(result) => result,
                Err(_) => Err(Error::Timeout {
                    operation: "connect",
                    after: timeout,
                }),
            };
        let connection = match connected {
            Ok(connection) => Arc::new(connection),
            Err(error) => {
                self.inner.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%session, %error, "opening a session connection failed");
                return Err(error);
            }
        };
        reservation.slot.state().connection = Some(connection.clone());
        drop(gate);
        self.inner.counters.created.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%session, connection = connection.id(), "session connection opened");
        Ok(Lease {
            reservation,
            connection,
        })
    }

    /// Finds or inserts the session's slot and takes a reference, in one step
    /// under the map lock. Evicts idle sessions when full.
    #[allow(clippy::type_complexity)]
    fn reserve(
        &self,
        session: &SessionId,
    ) -> Result<(Arc<Slot>, Vec<(SessionId, Arc<Connection>)>), Error> {
        let mut sessions = self.inner.sessions();
        if sessions.closed {
            return Err(Error::Shutdown);
        }
        if let Some(slot) = sessions.map.get(session) {
            slot.refs.fetch_add(1, Ordering::AcqRel);
            return Ok((slot.clone(), Vec::new()));
        }
        let limit = self.inner.config.max_sessions;
        let mut victims = Vec::new();
        if sessions.map.len() >= limit {
            victims = Inner::<T>::take_idle(&mut sessions, self.inner.config.idle_timeout);
            self.inner
                .counters
                .evicted
                .fetch_add(victims.len() as u64, Ordering::Relaxed);
            if sessions.map.len() >= limit {
                self.inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
                drop(sessions);
                // Closing the evicted connections is I/O: never under the lock.
                if !victims.is_empty() {
                    tokio::spawn(close_all(victims));
                }
                return Err(Error::SessionLimitReached { limit });
            }
        }
        let slot = Arc::new(Slot::new());
        sessions.map.insert(session.clone(), slot.clone());
        Ok((slot, victims))
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

    /// Stops the reaper, refuses new acquisitions, waits up to `grace` for
    /// leases in flight to be released, then closes every connection.
    pub async fn shutdown(&self, grace: Duration) {
        if let Ok(mut reaper) = self.inner.reaper.lock() {
            if let Some(handle) = reaper.take() {
                handle.abort();
            }
        }
        self.inner.sessions().closed = true;
        let wait_idle = async {
            loop {
                let notified = self.inner.idle_notify.notified();
                let busy = self
                    .inner
                    .sessions()
                    .map
                    .values()
                    .any(|s| s.refs.load(Ordering::Acquire) > 0);
                if !busy {
                    break;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(grace, wait_idle).await.is_err() {
            tracing::warn!(
                ?grace,
                "shutdown: leases still held; closing their connections anyway"
            );
        }
        let victims: Vec<_> = {
            let mut sessions = self.inner.sessions();
            sessions
                .map
                .drain()
                .filter_map(|(id, slot)| slot.state().connection.take().map(|c| (id, c)))
                .collect()
        };
        close_all(victims).await;
    }
}

async fn cleanup<T>(inner: &Inner<T>, max_age: Duration) -> usize {
    let victims = {
        let mut sessions = inner.sessions();
        let before = sessions.map.len();
        let victims = Inner::<T>::take_idle(&mut sessions, max_age);
        let removed = before - sessions.map.len();
        inner
            .counters
            .evicted
            .fetch_add(removed as u64, Ordering::Relaxed);
        victims
    };
    let removed = victims.len();
    close_all(victims).await;
    removed
}

async fn close_all(victims: Vec<(SessionId, Arc<Connection>)>) {
    for (session, connection) in victims {
        tracing::debug!(%session, connection = connection.id(), cause = "idle", "closing session connection");
        connection.close().await;
    }
}

async fn reap<T>(inner: Weak<Inner<T>>, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { break };
        let removed = cleanup(&inner, inner.config.idle_timeout).await;
        if removed > 0 {
            tracing::debug!(removed, "reaper cleaned idle sessions");
        }
    }
}

/// A reference on a session slot; releasing it is `Drop`'s job.
struct Reservation<T> {
    inner: Arc<Inner<T>>,
    session: SessionId,
    slot: Arc<Slot>,
}

impl<T> Drop for Reservation<T> {
    fn drop(&mut self) {
        let has_connection = {
            let mut state = self.slot.state();
            state.last_activity = Instant::now();
            state.connection.is_some()
        };
        let previous = self.slot.refs.fetch_sub(1, Ordering::AcqRel);
        if previous == 1 {
            if !has_connection {
                // A failed or abandoned creation: leave no entry behind,
                // unless someone reserved it again meanwhile.
                let mut sessions = self.inner.sessions();
                let same = sessions
                    .map
                    .get(&self.session)
                    .is_some_and(|s| Arc::ptr_eq(s, &self.slot));
                if same
                    && self.slot.refs.load(Ordering::Acquire) == 0
                    && self.slot.state().connection.is_none()
                {
                    sessions.map.remove(&self.session);
                }
            }
            self.inner.idle_notify.notify_waiters();
        }
    }
}

/// A session's connection, leased for one or more calls.
///
/// While the lease lives the session cannot be cleaned up. Dropping it
/// releases the reference and marks the session active now.
pub struct Lease<T> {
    reservation: Reservation<T>,
    connection: Arc<Connection>,
}

impl<T> fmt::Debug for Lease<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("session", &self.reservation.session)
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
        &self.reservation.session
    }

    /// Drops the session's connection because it is broken (the server went
    /// away); the session's next acquisition opens a new one. Calls still
    /// running on the old connection keep their `Arc` to it.
    pub fn invalidate(self) {
        // The slot lock must be released before `self` drops: the
        // reservation's Drop takes it again.
        let removed = {
            let mut state = self.reservation.slot.state();
            let same = state
                .connection
                .as_ref()
                .is_some_and(|c| Arc::ptr_eq(c, &self.connection));
            if same {
                state.connection = None;
            }
            same
        };
        if removed {
            tracing::debug!(session = %self.reservation.session, connection = self.connection.id(), cause = "broken", "dropping broken session connection");
        }
    }
}

impl<T> std::ops::Deref for Lease<T> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.connection
    }
}
