//! The background task: it refreshes the coarse clock and reaps idle
//! sessions. It holds only a `Weak` to the registry, so it stops when the
//! registry is dropped (or shut down, which aborts it).

use std::{
    sync::{Arc, Weak, atomic::Ordering},
    time::Duration,
};

use mcp_group_core::Transport;

use crate::{Inner, RemovalCause, clock::CLOCK_TICK, slot::dispose};

/// Starts the background task once, if called inside a Tokio runtime.
pub(crate) fn ensure_started<T: Transport>(inner: &Arc<Inner<T>>) {
    if inner.background_started.load(Ordering::Relaxed) {
        return;
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if inner.background_started.swap(true, Ordering::AcqRel) {
        return;
    }
    let task = handle.spawn(background(Arc::downgrade(inner)));
    if let Ok(mut slot) = inner.background.lock() {
        *slot = Some(task);
    }
}

/// Stops the background task, if it runs.
pub(crate) fn stop<T>(inner: &Inner<T>) {
    if let Some(handle) = inner.background.lock().ok().and_then(|mut b| b.take()) {
        handle.abort();
    }
}

/// Removes the unreferenced sessions idle for at least `max_age`, closes
/// their connections, and returns how many were removed.
pub(crate) async fn cleanup<T>(inner: &Inner<T>, max_age: Duration) -> usize {
    let now = inner.clock.refresh();
    let max_age_ms = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
    let removed = inner.table.take_idle(now, max_age_ms);
    let count = removed.len();
    dispose(inner, removed, RemovalCause::Idle).wait().await;
    count
}

/// Refreshes the coarse clock every [`CLOCK_TICK`] and runs the reaper every
/// `reap_interval`.
async fn background<T>(inner: Weak<Inner<T>>) {
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
