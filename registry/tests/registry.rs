//! The registry's contract, driven by the test kit's in-memory and scripted transports.
#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Duration};

use mcp_group_core::{Error as CoreError, SessionId};
use mcp_group_registry::{Error, FullPolicy, Registry, RegistryConfig};
use mcp_group_test_kit::{Answer, InMemoryTransport, ScriptedTransport};
use tokio::sync::{Barrier, Semaphore};

/// Connects to a fresh in-memory server on every connect, and counts them.
fn in_memory() -> Arc<InMemoryTransport> {
    Arc::new(InMemoryTransport::empty())
}

/// Waits for a permit of `gate`, then connects.
fn after_permit(gate: &Arc<Semaphore>) -> Answer {
    let gate = gate.clone();
    Answer::after(async move {
        drop(gate.acquire().await);
    })
}

/// Waits at `barrier`, then connects.
fn after_barrier(barrier: &Arc<Barrier>) -> Answer {
    let barrier = barrier.clone();
    Answer::after(async move {
        barrier.wait().await;
    })
}

/// `limit` sessions, idle after `idle_secs`, no reaper task.
fn config_with(limit: usize, idle_secs: u64) -> RegistryConfig {
    RegistryConfig::new(limit, Duration::from_secs(idle_secs)).with_reap_interval(None)
}

fn config() -> RegistryConfig {
    config_with(100, 60)
}

fn sid(s: &str) -> SessionId {
    SessionId::new(s)
}

#[tokio::test]
async fn concurrent_first_uses_of_one_session_open_one_connection() {
    let gate = Arc::new(Semaphore::new(0));
    let transport = Arc::new(ScriptedTransport::new([]).expect_for("s", after_permit(&gate)));
    let registry = Registry::new(transport.clone(), config());
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let registry = registry.clone();
        tasks.push(tokio::spawn(async move {
            let lease = registry.acquire(&sid("s")).await.unwrap();
            lease.connection().id()
        }));
    }
    // Every caller is parked: one in connect, four on the creation gate.
    while registry.ref_count(&sid("s")) < 5 {
        tokio::task::yield_now().await;
    }
    gate.add_permits(1);
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "all five share one connection");
    assert_eq!(transport.connects(), 1);
    transport.assert_done();
    let stats = registry.stats();
    assert_eq!((stats.created, stats.reused), (1, 4));
    assert_eq!(registry.ref_count(&sid("s")), 0);
}

#[tokio::test(start_paused = true)]
async fn first_uses_of_different_sessions_connect_in_parallel() {
    // Each connect waits until all three are in progress: serialized
    // creation would never get there, and the timeout would fire.
    let barrier = Arc::new(Barrier::new(3));
    let transport = Arc::new(ScriptedTransport::new(
        (0..3).map(|_| after_barrier(&barrier)),
    ));
    let registry = Registry::new(transport.clone(), config());
    let (a, b, c) = (sid("a"), sid("b"), sid("c"));
    let all = async {
        tokio::try_join!(
            registry.acquire(&a),
            registry.acquire(&b),
            registry.acquire(&c),
        )
    };
    let (a, b, c) = tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("creations ran in parallel")
        .unwrap();
    assert_ne!(a.connection().id(), b.connection().id());
    assert_ne!(b.connection().id(), c.connection().id());
    assert_eq!(registry.session_count(), 3);
    transport.assert_done();
}

#[tokio::test(start_paused = true)]
async fn lookups_of_existing_sessions_never_wait_on_a_creation() {
    let transport = Arc::new(
        ScriptedTransport::new([])
            .expect_for("old", Answer::Connect)
            .expect_for("new", Answer::Never),
    );
    let registry = Registry::new(transport.clone(), config());
    drop(registry.acquire(&sid("old")).await.unwrap());
    let stuck = {
        let registry = registry.clone();
        tokio::spawn(async move { registry.acquire(&sid("new")).await.map(|_| ()) })
    };
    while transport.connects() < 2 {
        tokio::task::yield_now().await;
    }
    let lease = tokio::time::timeout(Duration::from_secs(1), registry.acquire(&sid("old")))
        .await
        .expect("not blocked by the stuck creation")
        .unwrap();
    lease.ping(Duration::from_secs(5)).await.unwrap();
    stuck.abort();
    transport.assert_done();
}

#[tokio::test]
async fn a_failed_creation_leaves_no_entry_and_the_next_call_retries() {
    let transport = Arc::new(ScriptedTransport::new([Answer::refused(), Answer::Connect]));
    let registry = Registry::new(transport.clone(), config());
    let err = registry.acquire(&sid("s")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Connect {
                source: CoreError::Connect { .. }
            }
        ),
        "{err:?}"
    );
    assert_eq!(registry.session_count(), 0);
    assert_eq!(registry.stats().failed, 1);
    let lease = registry.acquire(&sid("s")).await.unwrap();
    lease.ping(Duration::from_secs(5)).await.unwrap();
    assert_eq!(transport.connects(), 2);
    transport.assert_done();
}

#[tokio::test(start_paused = true)]
async fn a_connect_that_never_finishes_times_out() {
    let transport = Arc::new(ScriptedTransport::new([Answer::Never]));
    let registry = Registry::new(
        transport,
        config().with_connect_timeout(Duration::from_secs(5)),
    );
    let err = registry.acquire(&sid("s")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Connect { source: CoreError::Timeout { operation: "connect", after } }
                if after == Duration::from_secs(5)
        ),
        "{err:?}"
    );
    assert_eq!(registry.session_count(), 0);
}

#[tokio::test]
async fn beyond_the_limit_a_new_session_is_refused_with_a_typed_error() {
    let registry = Registry::new(in_memory(), config_with(2, 60));
    let _a = registry.acquire(&sid("a")).await.unwrap();
    let _b = registry.acquire(&sid("b")).await.unwrap();
    let err = registry.acquire(&sid("c")).await.unwrap_err();
    assert!(
        matches!(err, Error::SessionLimitReached { limit: 2 }),
        "{err:?}"
    );
    assert_eq!(registry.stats().rejected, 1);
    // Existing sessions are still served at the limit.
    assert!(registry.acquire(&sid("a")).await.is_ok());
    assert_eq!(registry.session_limit(), 2);
}

#[tokio::test(start_paused = true)]
async fn at_the_limit_idle_sessions_are_evicted_first() {
    let registry = Registry::new(in_memory(), config_with(1, 10));
    drop(registry.acquire(&sid("a")).await.unwrap());
    let err = registry.acquire(&sid("b")).await.unwrap_err();
    assert!(
        matches!(err, Error::SessionLimitReached { limit: 1 }),
        "a is not idle long enough"
    );
    tokio::time::advance(Duration::from_secs(11)).await;
    let b = registry.acquire(&sid("b")).await.unwrap();
    assert_eq!(registry.session_count(), 1);
    assert_eq!(registry.stats().removed_limit, 1);
    drop(b);
}

#[tokio::test]
async fn cleanup_skips_sessions_in_use() {
    let registry = Registry::new(in_memory(), config());
    let busy = registry.acquire(&sid("busy")).await.unwrap();
    drop(registry.acquire(&sid("idle")).await.unwrap());
    assert_eq!(registry.cleanup_sessions(Some(Duration::ZERO)).await, 1);
    assert_eq!(registry.session_count(), 1);
    assert_eq!(registry.ref_count(&sid("busy")), 1);
    busy.ping(Duration::from_secs(5)).await.unwrap();
    let connection = busy.connection().clone();
    drop(busy);
    assert_eq!(registry.cleanup_sessions(Some(Duration::ZERO)).await, 1);
    assert!(connection.is_closed(), "cleanup closed the connection");
}

#[tokio::test]
async fn a_cancelled_acquire_releases_its_reference() {
    let transport = Arc::new(ScriptedTransport::new([Answer::Never]));
    let registry = Registry::new(transport.clone(), config());
    let task = {
        let registry = registry.clone();
        tokio::spawn(async move { registry.acquire(&sid("s")).await.map(|_| ()) })
    };
    while transport.connects() < 1 {
        tokio::task::yield_now().await;
    }
    assert_eq!(registry.ref_count(&sid("s")), 1);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_eq!(registry.ref_count(&sid("s")), 0);
    assert_eq!(
        registry.session_count(),
        0,
        "no entry left by the abandoned creation"
    );
}

#[tokio::test]
async fn a_dropped_lease_releases_even_on_panic() {
    let registry = Registry::new(in_memory(), config());
    let r = registry.clone();
    let result = tokio::spawn(async move {
        let _lease = r.acquire(&sid("s")).await.unwrap();
        panic!("caller panics while holding the lease");
    })
    .await;
    assert!(result.unwrap_err().is_panic());
    assert_eq!(registry.ref_count(&sid("s")), 0);
    assert_eq!(registry.session_count(), 1, "the session itself stays");
}

#[tokio::test(start_paused = true)]
async fn the_reaper_cleans_idle_sessions_and_stops_with_the_registry() {
    let registry = Registry::new(
        in_memory(),
        RegistryConfig::new(10, Duration::from_secs(10))
            .with_reap_interval(Some(Duration::from_secs(1))),
    );
    let lease = registry.acquire(&sid("s")).await.unwrap();
    let connection = lease.connection().clone();
    drop(lease);
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(registry.session_count(), 0, "reaped by the background task");
    assert!(connection.is_closed());
    assert_eq!(registry.stats().removed_idle, 1);
}

#[tokio::test]
async fn shutdown_waits_for_leases_closes_everything_and_refuses_new_calls() {
    let registry = Registry::new(in_memory(), config());
    let lease = registry.acquire(&sid("a")).await.unwrap();
    let other = registry
        .acquire(&sid("b"))
        .await
        .unwrap()
        .connection()
        .clone();
    let connection = lease.connection().clone();
    let shutdown = {
        let registry = registry.clone();
        tokio::spawn(async move { registry.shutdown(Duration::from_secs(30)).await })
    };
    // Shutdown is waiting for the lease; the leased connection still works.
    lease.ping(Duration::from_secs(5)).await.unwrap();
    assert!(!shutdown.is_finished());
    drop(lease);
    shutdown.await.unwrap();
    assert!(connection.is_closed() && other.is_closed());
    assert_eq!(registry.session_count(), 0);
    assert!(matches!(
        registry.acquire(&sid("a")).await,
        Err(Error::Shutdown)
    ));
}

#[tokio::test]
async fn an_invalidated_connection_is_replaced_on_the_next_acquire() {
    let transport = in_memory();
    let registry = Registry::new(transport.clone(), config());
    let lease = registry.acquire(&sid("s")).await.unwrap();
    let first = lease.connection().id();
    lease.invalidate();
    let lease = registry.acquire(&sid("s")).await.unwrap();
    assert_ne!(lease.connection().id(), first);
    assert_eq!(transport.connects(), 2);
}

#[tokio::test(start_paused = true)]
async fn evict_lru_idle_closes_the_least_recently_used_unleased_session() {
    let registry = Registry::new(
        in_memory(),
        config_with(2, 3600).with_full_policy(FullPolicy::EvictLruIdle),
    );
    let old = registry
        .acquire(&sid("old"))
        .await
        .unwrap()
        .connection()
        .clone();
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(registry.acquire(&sid("recent")).await.unwrap());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _new = registry.acquire(&sid("new")).await.unwrap();
    assert!(
        registry.peek(&sid("old")).is_none(),
        "the LRU session was evicted"
    );
    assert!(registry.peek(&sid("recent")).is_some());
    assert_eq!(registry.stats().removed_limit, 1);
    // Its connection is closed in the background, off the map lock.
    while !old.is_closed() {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn evict_lru_idle_never_evicts_a_leased_session() {
    let registry = Registry::new(
        in_memory(),
        config_with(1, 3600).with_full_policy(FullPolicy::EvictLruIdle),
    );
    let _held = registry.acquire(&sid("held")).await.unwrap();
    let err = registry.acquire(&sid("other")).await.unwrap_err();
    assert!(
        matches!(err, Error::SessionLimitReached { limit: 1 }),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_wait_policy_waits_for_a_slot_then_gives_up() {
    let registry = Registry::new(
        in_memory(),
        config_with(1, 3600).with_full_policy(FullPolicy::Wait(Duration::from_secs(5))),
    );
    drop(registry.acquire(&sid("a")).await.unwrap());
    // Nothing frees a slot: refused after the wait.
    let started = tokio::time::Instant::now();
    let err = registry.acquire(&sid("b")).await.unwrap_err();
    assert!(
        matches!(err, Error::SessionLimitReached { limit: 1 }),
        "{err:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(5));

    // A removal during the wait lets the waiter in.
    let waiter = {
        let registry = registry.clone();
        tokio::spawn(async move {
            registry
                .acquire(&sid("b"))
                .await
                .map(|l| l.connection().id())
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiter.is_finished());
    assert!(registry.remove_session(&sid("a")).await);
    assert!(waiter.await.unwrap().is_ok());
    assert_eq!(registry.stats().removed_explicit, 1);
}

#[tokio::test]
async fn a_session_bound_to_a_principal_is_refused_to_others() {
    let registry = Registry::new(in_memory(), config());
    let s = sid("conversation-42");
    let alice = registry
        .acquire_as(&s, Some("alice"))
        .await
        .unwrap()
        .connection()
        .id();
    for intruder in [Some("mallory"), None] {
        let err = registry.acquire_as(&s, intruder).await.unwrap_err();
        assert!(
            matches!(&err, Error::SessionForbidden { session } if session == "conversation-42"),
            "{intruder:?}: {err:?}"
        );
    }
    let again = registry
        .acquire_as(&s, Some("alice"))
        .await
        .unwrap()
        .connection()
        .id();
    assert_eq!(alice, again);
}

#[tokio::test(start_paused = true)]
async fn an_expired_session_is_absent_on_lookup_before_any_reaper_runs() {
    let transport = in_memory();
    let registry = Registry::new(transport.clone(), config_with(10, 10));
    let first = registry.acquire(&sid("s")).await.unwrap();
    let first_connection = first.connection().clone();
    drop(first);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(registry.session_count(), 1, "no reaper: still in the map");
    let second = registry.acquire(&sid("s")).await.unwrap();
    assert_ne!(
        second.connection().id(),
        first_connection.id(),
        "a fresh connection"
    );
    assert_eq!(transport.connects(), 2);
    assert_eq!(registry.stats().removed_idle, 1);
}

#[tokio::test(start_paused = true)]
async fn peek_does_not_refresh_idle_time() {
    let registry = Registry::new(in_memory(), config_with(10, 10));
    drop(registry.acquire(&sid("s")).await.unwrap());
    tokio::time::sleep(Duration::from_secs(6)).await;
    let info = registry.peek(&sid("s")).unwrap();
    assert!(info.idle >= Duration::from_secs(5), "{info:?}");
    assert_eq!(info.ref_count, 0);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(registry.peek(&sid("s")).unwrap().idle >= Duration::from_secs(11));
    assert_eq!(
        registry.cleanup_sessions(None).await,
        1,
        "peeking kept it idle"
    );
}

#[tokio::test]
async fn a_session_handle_leases_without_the_map_and_re_resolves_after_removal() {
    let transport = in_memory();
    let registry = Registry::new(transport.clone(), config());
    let mut handle = registry.handle(&sid("s"), None).await.unwrap();
    let first = handle.acquire().await.unwrap().connection().id();
    let second = handle.acquire().await.unwrap().connection().id();
    assert_eq!(first, second);
    assert_eq!(transport.connects(), 1);
    assert!(registry.remove_session(&sid("s")).await);
    let lease = handle.acquire().await.unwrap();
    assert_ne!(
        lease.connection().id(),
        first,
        "re-resolved to a new session"
    );
    assert_eq!(registry.ref_count(&sid("s")), 1);
    drop(lease);
    assert_eq!(registry.ref_count(&sid("s")), 0);
}

#[tokio::test]
async fn removals_carry_their_cause() {
    let registry = Registry::new(in_memory(), config());
    registry.acquire(&sid("broken")).await.unwrap().invalidate();
    drop(registry.acquire(&sid("idle")).await.unwrap());
    registry.cleanup_sessions(Some(Duration::ZERO)).await;
    drop(registry.acquire(&sid("explicit")).await.unwrap());
    registry.remove_session(&sid("explicit")).await;
    let stats = registry.stats();
    assert_eq!(
        (
            stats.removed_broken,
            stats.removed_idle,
            stats.removed_explicit,
            stats.removed_limit
        ),
        (1, 1, 1, 0)
    );
    assert_eq!(stats.sessions, 0);
}
