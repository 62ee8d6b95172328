//! How long a tool list is kept, and whose it is (SEP-2549's `ttlMs` and
//! `cacheScope`, bounded).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use mcp_group_core::CacheHint;
use tokio::time::Instant;

/// The shortest time a tool list is kept: a server answering `ttlMs: 0`
/// (rmcp's and Python's default when a 2026-07-28 server says nothing) gets
/// at most one `tools/list` per this long per list it serves, not one per call.
pub const MIN_LIST_TTL: Duration = Duration::from_secs(5);

/// The longest time a tool list is kept without a change notification: a
/// larger `ttlMs`, or none (servers of the 2025-11-25 era send none), is
/// cut to this, so a change the server did not announce shows within it.
pub const MAX_LIST_TTL: Duration = Duration::from_secs(3600);

/// A list re-listed because of a change notification is not re-listed again
/// sooner than this after its last listing (a server announcing changes
/// without end costs one `tools/list` a second per list, not one per call).
pub(crate) const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// How long a list with `hint` is kept: its ttl within
/// [`MIN_LIST_TTL`]..=[`MAX_LIST_TTL`]; [`MAX_LIST_TTL`] without one.
pub(crate) fn keep_for(hint: &CacheHint) -> Duration {
    hint.ttl
        .unwrap_or(MAX_LIST_TTL)
        .clamp(MIN_LIST_TTL, MAX_LIST_TTL)
}

/// One listing, overrides applied: what calls resolve names and check
/// arguments against until it expires.
pub(crate) struct Listing<C> {
    pub(crate) catalog: Arc<C>,
    /// Whether the server said `private`: the list belongs to the session
    /// that listed it.
    pub(crate) private: bool,
    pub(crate) listed_at: Instant,
    pub(crate) expires_at: Instant,
    /// The connection's count of announced changes when it was listed.
    pub(crate) changes: u64,
}

impl<C> Listing<C> {
    pub(crate) fn new(catalog: Arc<C>, hint: &CacheHint, changes: u64) -> Self {
        let listed_at = Instant::now();
        Self {
            catalog,
            private: hint.is_private(),
            listed_at,
            expires_at: listed_at + keep_for(hint),
            changes,
        }
    }

    /// The same list kept a little longer: after a failed re-listing, the
    /// last good list is served (SEP-2549 allows stale on error) and the
    /// next attempt waits [`MIN_LIST_TTL`].
    pub(crate) fn retry_later(&self) -> Self {
        let now = Instant::now();
        Self {
            catalog: self.catalog.clone(),
            private: self.private,
            listed_at: now,
            expires_at: now + MIN_LIST_TTL,
            changes: self.changes,
        }
    }

    /// Whether it may still be used: not expired, and no change announced
    /// since it was listed (a change counts only [`MIN_REFRESH_INTERVAL`]
    /// after the listing).
    pub(crate) fn is_fresh(&self, now: Instant, changes: u64) -> bool {
        now < self.expires_at
            && (changes == self.changes || now < self.listed_at + MIN_REFRESH_INTERVAL)
    }
}

/// A session's own tool list, kept with its connection (so it counts toward
/// the session and goes when the session is reaped or evicted).
pub(crate) struct SessionList<C> {
    /// Held while the session re-lists: its concurrent calls wait for one
    /// listing instead of each sending their own.
    pub(crate) gate: tokio::sync::Mutex<()>,
    current: Mutex<Option<Arc<Listing<C>>>>,
}

impl<C> Default for SessionList<C> {
    fn default() -> Self {
        Self {
            gate: tokio::sync::Mutex::new(()),
            current: Mutex::new(None),
        }
    }
}

impl<C> SessionList<C> {
    pub(crate) fn current(&self) -> Option<Arc<Listing<C>>> {
        match self.current.lock() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn set(&self, listing: Arc<Listing<C>>) {
        match self.current.lock() {
            Ok(mut current) => *current = Some(listing),
            Err(poisoned) => *poisoned.into_inner() = Some(listing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_ttl_is_clamped_both_ways() {
        let hint = |ttl| CacheHint::new(ttl, None);
        assert_eq!(keep_for(&hint(Some(Duration::ZERO))), MIN_LIST_TTL);
        assert_eq!(keep_for(&hint(Some(Duration::MAX))), MAX_LIST_TTL);
        assert_eq!(keep_for(&hint(None)), MAX_LIST_TTL);
        let minute = Duration::from_secs(60);
        assert_eq!(keep_for(&hint(Some(minute))), minute);
    }
}
