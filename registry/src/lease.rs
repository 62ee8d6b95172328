//! Leases on a session's connection: [`Lease`] for one or more calls,
//! [`SessionHandle`] for a whole conversation, and the reference a creator
//! holds before the connection exists.

use std::{
    fmt,
    sync::{Arc, atomic::Ordering},
};

use mcp_group_core::{Connection, SessionKey, Transport};

use crate::{
    Error, Inner, Registry,
    slot::{Slot, break_entry, release_creation},
    stats::Counters,
    table::EntryRef,
};

/// A reference taken on the slow path, before the connection exists;
/// releasing it is `Drop`'s job.
pub(crate) struct Ref<T> {
    inner: Arc<Inner<T>>,
    entry: Option<EntryRef<Slot<T>>>,
}

impl<T> Ref<T> {
    /// Holds `entry`'s reference, taken by the caller, until it becomes a
    /// lease or is dropped.
    pub(crate) fn new(inner: Arc<Inner<T>>, entry: EntryRef<Slot<T>>) -> Self {
        Self {
            inner,
            entry: Some(entry),
        }
    }

    /// The entry referenced.
    pub(crate) fn entry(&self) -> Option<&EntryRef<Slot<T>>> {
        self.entry.as_ref()
    }

    /// Turns the reference into a lease; the entry must be connected.
    pub(crate) fn into_lease(mut self) -> Lease<T> {
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
pub(crate) enum Hot<T> {
    Leased(Lease<T>),
    /// Absent, expired, closed, or not yet connected: take the slow path.
    Miss,
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
    pub(crate) fn live(entry: EntryRef<Slot<T>>, counters: &Counters) -> Option<Self> {
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

    /// The session this lease is for (its id and principal).
    pub fn key(&self) -> &SessionKey {
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
        // Also wakes a shutdown waiting for leases (`Slot::on_release`).
        self.entry.release(self.entry.value.clock.now());
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
    key: SessionKey,
    entry: EntryRef<Slot<T>>,
}

impl<T> Clone for SessionHandle<T> {
    fn clone(&self) -> Self {
        Self {
            registry: self.registry.clone(),
            key: self.key.clone(),
            entry: self.entry.clone(),
        }
    }
}

impl<T> fmt::Debug for SessionHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionHandle")
            .field("key", &self.key)
            .finish()
    }
}

impl<T> SessionHandle<T> {
    /// A handle on the session `lease` is for, resolved through `registry`
    /// again once the entry is gone.
    pub(crate) fn new(registry: Registry<T>, lease: &Lease<T>) -> Self {
        Self {
            registry,
            key: lease.key().clone(),
            entry: lease.entry.clone(),
        }
    }
}

impl<T: Transport> SessionHandle<T> {
    /// The session (its id and principal).
    pub fn key(&self) -> &SessionKey {
        &self.key
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
        let lease = self.registry.acquire(&self.key).await?;
        self.entry = lease.entry.clone();
        Ok(lease)
    }

    fn try_acquire_live(&self) -> Option<Lease<T>> {
        let inner = &*self.registry.inner;
        if inner.closed.load(Ordering::Relaxed) || !self.entry.try_acquire() {
            return None;
        }
        crate::hooks::reach(crate::hooks::Point::HandleAcquired);
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
