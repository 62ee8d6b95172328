//! The synchronization primitives of the session table: `std`'s, or loom's
//! when built with `RUSTFLAGS="--cfg mcp_group_loom"` (a crate-specific cfg,
//! so that dependencies reacting to `cfg(loom)` are left alone).

#[cfg(mcp_group_loom)]
pub(crate) use loom::sync::{
    Arc, RwLock, RwLockReadGuard, RwLockWriteGuard,
    atomic::{AtomicU64, Ordering},
};
#[cfg(not(mcp_group_loom))]
pub(crate) use std::sync::{
    Arc, RwLock, RwLockReadGuard, RwLockWriteGuard,
    atomic::{AtomicU64, Ordering},
};
