//! The session table: the map and each entry's state word. Synchronous and
//! generic over the entry's value, so loom can check it exhaustively.
//!
//! # Lock order
//! There is one lock, the map's `RwLock`, and it is never held across an
//! `.await` (every function here is synchronous) nor taken twice by one
//! thread. Entries have no lock: their state is one atomic word.
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
//! - broken / shutdown: `fetch_or(CLOSED)`; holders keep their reference.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

use mcp_group_core::SessionId;

use crate::sync::{Arc, AtomicU64, Ordering, RwLock, RwLockReadGuard, RwLockWriteGuard};

const CLOSED: u64 = 1 << 63;

/// How many idle entries one write-lock acquisition removes, so that readers
/// wait for at most one batch during a large cleanup.
const CLEANUP_BATCH: usize = 128;

/// `SessionId` hashes itself once, with a randomly keyed SipHash, and writes
/// only that `u64`: the map passes it through instead of hashing it again.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by `SessionId`; fold anything else in, FNV-style.
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map<V> = HashMap<SessionId, Arc<Entry<V>>, BuildHasherDefault<PassThrough>>;

/// One session's entry. `repr(C)` keeps the state word and timestamp first,
/// in the cache line of the `Arc`'s counts.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Entry<V> {
    state: AtomicU64,
    last_used: AtomicU64,
    owner: Option<Box<str>>,
    pub(crate) value: V,
}

impl<V> Entry<V> {
    /// A new entry with one reference, held by its creator.
    fn new(value: V, now: u64, owner: Option<&str>) -> Self {
        Self {
            state: AtomicU64::new(1),
            last_used: AtomicU64::new(now),
            owner: owner.map(Into::into),
            value,
        }
    }

    /// Takes a reference unless the entry is closed.
    pub(crate) fn try_acquire(&self) -> bool {
        let previous = self.state.fetch_add(1, Ordering::Acquire);
        if previous & CLOSED != 0 {
            self.state.fetch_sub(1, Ordering::Release);
            return false;
        }
        true
    }

    /// Releases a reference taken by `try_acquire` or at insertion.
    pub(crate) fn release(&self, now: u64) {
        self.last_used.store(now, Ordering::Relaxed);
        let previous = self.state.fetch_sub(1, Ordering::Release);
        debug_assert!(previous & !CLOSED > 0, "ref count underflow");
    }

    /// Closes the entry if no one holds a reference.
    pub(crate) fn try_close_unused(&self) -> bool {
        self.state
            .compare_exchange(0, CLOSED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Closes the entry whatever its references (broken, shutdown).
    pub(crate) fn close(&self) {
        self.state.fetch_or(CLOSED, Ordering::AcqRel);
    }

    /// The number of references held.
    pub(crate) fn refs(&self) -> u64 {
        self.state.load(Ordering::Acquire) & !CLOSED
    }

    /// Milliseconds since last use, by the coarse clock.
    pub(crate) fn idle_ms(&self, now: u64) -> u64 {
        now.saturating_sub(self.last_used.load(Ordering::Relaxed))
    }

    fn owned_by(&self, owner: Option<&str>) -> bool {
        match (&self.owner, owner) {
            (None, _) => true,
            (Some(bound), Some(caller)) => &**bound == caller,
            (Some(_), None) => false,
        }
    }
}

/// Why the table refused to hand out an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `limit` entries exist and none could be evicted.
    Full,
    /// The session is bound to another principal.
    Forbidden,
}

/// How a full table makes room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Room {
    /// The most entries.
    pub(crate) limit: usize,
    /// Entries idle this long (ms) may be evicted.
    pub(crate) idle_ms: u64,
    /// Also evict the least recently used unreferenced entry.
    pub(crate) lru: bool,
}

/// A shared entry.
pub(crate) type EntryRef<V> = Arc<Entry<V>>;

/// Entries removed by the table; their values must be closed by the caller,
/// after the lock is released.
pub(crate) type Removed<V> = Vec<(SessionId, Arc<Entry<V>>)>;

/// What the insert path did.
pub(crate) struct Insert<V> {
    pub(crate) result: Result<(Arc<Entry<V>>, bool), Refused>,
    /// Entries evicted to make room (expired first, then LRU).
    pub(crate) evicted: Removed<V>,
}

/// The session map.
pub(crate) struct Table<V> {
    map: RwLock<Map<V>>,
}

impl<V> Table<V> {
    pub(crate) fn new() -> Self {
        Self {
            map: RwLock::new(Map::default()),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Map<V>> {
        // A panic cannot leave the map half-updated (single HashMap calls), so
        // a poisoned lock is still consistent.
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Map<V>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The hot path: finds the entry and takes a reference. `Ok(None)` when
    /// absent or closed. An entry idle for at least `idle_ms` with no other
    /// reference is treated as absent: it is closed and returned in `expired`
    /// for the caller to remove and close.
    pub(crate) fn lookup(
        &self,
        key: &SessionId,
        owner: Option<&str>,
        now: u64,
        idle_ms: u64,
        expired: &mut Option<Arc<Entry<V>>>,
    ) -> Result<Option<Arc<Entry<V>>>, Refused> {
        let entry = match self.read().get(key) {
            Some(entry) => entry.clone(),
            None => return Ok(None),
        };
        if !entry.owned_by(owner) {
            return Err(Refused::Forbidden);
        }
        if !entry.try_acquire() {
            return Ok(None);
        }
        if entry.idle_ms(now) >= idle_ms
            && entry
                .state
                .compare_exchange(1, CLOSED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            *expired = Some(entry);
            return Ok(None);
        }
        Ok(Some(entry))
    }

    /// The slow path, under the write lock: returns the existing entry (with a
    /// reference) or inserts a new one, evicting to make room. The `bool` is
    /// true when the entry is new.
    pub(crate) fn insert(
        &self,
        key: &SessionId,
        owner: Option<&str>,
        now: u64,
        room: Room,
        make: impl FnOnce() -> V,
    ) -> Insert<V> {
        let mut evicted = Vec::new();
        let mut map = self.write();
        if let Some(entry) = map.get(key) {
            if !entry.owned_by(owner) {
                return Insert {
                    result: Err(Refused::Forbidden),
                    evicted,
                };
            }
            if entry.try_acquire() {
                return Insert {
                    result: Ok((entry.clone(), false)),
                    evicted,
                };
            }
            // Closed but not yet removed by whoever closed it: replace it.
            map.remove(key);
        }
        if map.len() >= room.limit {
            map.retain(|id, entry| {
                let expired = entry.idle_ms(now) >= room.idle_ms && entry.try_close_unused();
                if expired {
                    evicted.push((id.clone(), entry.clone()));
                }
                !expired
            });
        }
        while room.lru && map.len() >= room.limit {
            let oldest = map
                .iter()
                .filter(|(_, e)| e.refs() == 0)
                .min_by_key(|(_, e)| e.last_used.load(Ordering::Relaxed))
                .map(|(id, _)| id.clone());
            let Some(id) = oldest else { break };
            if let Some(entry) = map.get(&id).filter(|e| e.try_close_unused()).cloned() {
                map.remove(&id);
                evicted.push((id, entry));
            }
        }
        if map.len() >= room.limit {
            return Insert {
                result: Err(Refused::Full),
                evicted,
            };
        }
        let entry = Arc::new(Entry::new(make(), now, owner));
        map.insert(key.clone(), entry.clone());
        Insert {
            result: Ok((entry, true)),
            evicted,
        }
    }

    /// Removes `entry` from the map if it is still the entry for `key`.
    pub(crate) fn remove_entry(&self, key: &SessionId, entry: &Arc<Entry<V>>) -> bool {
        let mut map = self.write();
        if map.get(key).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            map.remove(key);
            true
        } else {
            false
        }
    }

    /// Closes and removes `key`'s entry whatever its references.
    pub(crate) fn remove_key(&self, key: &SessionId) -> Option<Arc<Entry<V>>> {
        let entry = self.write().remove(key)?;
        entry.close();
        Some(entry)
    }

    /// Removes every unreferenced entry idle for at least `max_idle_ms`.
    /// Candidates are found under the read lock; they are removed in batches
    /// under the write lock, each one only if still unreferenced.
    pub(crate) fn take_idle(&self, now: u64, max_idle_ms: u64) -> Removed<V> {
        let candidates: Vec<(SessionId, Arc<Entry<V>>)> = self
            .read()
            .iter()
            .filter(|(_, e)| e.refs() == 0 && e.idle_ms(now) >= max_idle_ms)
            .map(|(id, e)| (id.clone(), e.clone()))
            .collect();
        let mut removed = Vec::with_capacity(candidates.len());
        for batch in candidates.chunks(CLEANUP_BATCH) {
            let mut map = self.write();
            for (id, entry) in batch {
                let current = map.get(id).is_some_and(|e| Arc::ptr_eq(e, entry));
                if current && entry.idle_ms(now) >= max_idle_ms && entry.try_close_unused() {
                    map.remove(id);
                    removed.push((id.clone(), entry.clone()));
                }
            }
        }
        removed
    }

    /// Closes and removes every entry (shutdown).
    pub(crate) fn drain(&self) -> Removed<V> {
        let mut map = self.write();
        map.drain()
            .map(|(id, entry)| {
                entry.close();
                (id, entry)
            })
            .collect()
    }

    /// The entry for `key`, without taking a reference or touching its idle time.
    pub(crate) fn peek(&self, key: &SessionId) -> Option<Arc<Entry<V>>> {
        self.read().get(key).cloned()
    }

    /// Whether any entry holds a reference.
    pub(crate) fn any_referenced(&self) -> bool {
        self.read().values().any(|e| e.refs() > 0)
    }

    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        self.read().len()
    }
}
