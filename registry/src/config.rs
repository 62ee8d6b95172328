//! The registry's limits and timers.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::CLOCK_TICK;

/// What a full registry does with a new session; in a configuration file,
/// `session_limit_policy = "reject" | "evict-lru-idle" | "wait"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SessionLimitPolicy {
    /// Refuse it with [`Error::SessionLimitReached`](crate::Error::SessionLimitReached)
    /// (as NeMo Agent Toolkit's Python client does).
    #[default]
    Reject,
    /// Close the least recently used session that has no call in flight.
    EvictLruIdle,
    /// Wait up to [`RegistryConfig::limit_wait`] for room, then refuse. The
    /// waiter tries again whenever a session is removed and when the
    /// earliest unleased session expires (no reaper needed), and once more
    /// at the deadline; if the registry shuts down meanwhile it gets
    /// [`Error::Shutdown`](crate::Error::Shutdown) at once.
    Wait,
}

/// Limits and timers of a [`Registry`](crate::Registry).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// The most sessions open at once (default 100). Connections of removed
    /// sessions that are still closing are not counted (see the crate docs,
    /// "What `max_sessions` bounds").
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
    pub full_policy: SessionLimitPolicy,
    /// How long [`SessionLimitPolicy::Wait`] waits for room (default 5 s).
    pub limit_wait: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_SESSIONS, Self::DEFAULT_IDLE_TIMEOUT)
    }
}

impl RegistryConfig {
    /// The default `max_sessions`: 100.
    pub const DEFAULT_MAX_SESSIONS: usize = 100;
    /// The default idle timeout: one hour.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
    /// The default wait of [`SessionLimitPolicy::Wait`]: five seconds.
    pub const DEFAULT_LIMIT_WAIT: Duration = Duration::from_secs(5);

    /// A configuration with the given limit and idle timeout.
    pub fn new(max_sessions: usize, idle_timeout: Duration) -> Self {
        Self {
            max_sessions,
            idle_timeout,
            connect_timeout: Duration::from_secs(60),
            reap_interval: Some((idle_timeout / 4).clamp(CLOCK_TICK, Duration::from_secs(300))),
            full_policy: SessionLimitPolicy::Reject,
            limit_wait: Self::DEFAULT_LIMIT_WAIT,
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
    pub fn with_full_policy(mut self, policy: SessionLimitPolicy) -> Self {
        self.full_policy = policy;
        self
    }

    /// Sets how long [`SessionLimitPolicy::Wait`] waits for room.
    pub fn with_limit_wait(mut self, wait: Duration) -> Self {
        self.limit_wait = wait;
        self
    }
}
