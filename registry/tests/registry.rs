//! The registry's contract, driven by a scripted in-memory transport.
#![allow(clippy::unwrap_used)]

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use mcp_group_core::{
    Connection, Error as CoreError, ServerDescription, SessionId, SessionKey, Transport,
    async_trait,
};
use mcp_group_registry::{Error, Registry, RegistryConfig, SessionLimitPolicy};
use rmcp::{
    ServerHandler, ServiceExt,
    model::{ServerCapabilities, ServerConfig},
};
use tokio::sync::{Barrier, Semaphore};

/// A server with no tools: enough for the handshake and `ping`.
#[derive(Clone)]
struct Empty;

impl ServerHandler for Empty {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// What one `connect` does.
enum Step {
    /// Connect at once.
    Ok,
    /// Fail with the core `Error::Connect`.
    Fail,
    /// Wait for a permit of the gate, then connect.
    Gate(Arc<Semaphore>),
    /// Wait for a permit of the gate, then fail.
    GateThenFail(Arc<Semaphore>),
    /// Wait at the barrier, then connect.
    Barrier(Arc<Barrier>),
    /// Never finish.
    Never,
}

struct Scripted {
    steps: Mutex<VecDeque<Step>>,
    connects: AtomicUsize,
    /// A permit per server whose client closed the connection.
    servers_ended: Arc<Semaphore>,
}

impl Scripted {
    fn new(steps: impl IntoIterator<Item = Step>) -> Arc<Self> {
        Arc::new(Self {
            steps: Mutex::new(steps.into_iter().collect()),
            connects: AtomicUsize::new(0),
            servers_ended: Arc::new(Semaphore::new(0)),
        })
    }

    fn connects(&self) -> usize {
        self.connects.load(Ordering::SeqCst)
    }

    /// Waits until one more server saw its connection closed (paused time:
    /// the bound is virtual and only fires when nothing else can run).
    async fn server_ended(&self) {
        tokio::time::timeout(Duration::from_secs(60), self.servers_ended.acquire())
            .await
            .expect("a server saw its connection closed")
            .unwrap()
            .forget();
    }
}

#[async_trait]
impl Transport for Scripted {
    async fn connect(&self, _session: &SessionKey) -> Result<Connection, CoreError> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        let step = self.steps.lock().unwrap().pop_front().unwrap_or(Step::Ok);
        match step {
            Step::Ok => {}
            Step::Fail => {
                return Err(CoreError::Connect {
                    endpoint: "scripted".into(),
                    source: "refused".into(),
                });
            }
            Step::Gate(gate) => drop(gate.acquire().await.unwrap()),
            Step::GateThenFail(gate) => {
                drop(gate.acquire().await.unwrap());
                return Err(CoreError::Connect {
                    endpoint: "scripted".into(),
                    source: "refused".into(),
                });
            }
            Step::Barrier(barrier) => {
                barrier.wait().await;
            }
            Step::Never => std::future::pending::<()>().await,
        }
        let (client, server) = tokio::io::duplex(16 * 1024);
        let ended = self.servers_ended.clone();
        tokio::spawn(async move {
            if let Ok(running) = Empty.serve(server).await {
                let _ = running.waiting().await;
            }
            ended.add_permits(1);
        });
        let (read, write) = tokio::io::split(client);
        Connection::establish((read, write), "scripted").await
    }

    fn description(&self) -> ServerDescription {
        ServerDescription {
            transport: "scripted",
            endpoint: "scripted".into(),
        }
    }
}

/// Polls `future` once from the calling task, which it wakes when ready.
async fn poll_once<F: std::future::Future>(
    mut future: std::pin::Pin<&mut F>,
) -> std::task::Poll<F::Output> {
    std::future::poll_fn(|cx| std::task::Poll::Ready(future.as_mut().poll(cx))).await
}

fn config() -> RegistryConfig {
    RegistryConfig::new(100, Duration::from_secs(60)).with_reap_interval(None)
}

fn sid(s: &str) -> SessionKey {
    SessionKey::new(SessionId::new(s))
}

#[tokio::test]
async fn concurrent_first_uses_of_one_session_open_one_connection() {
    let gate = Arc::new(Semaphore::new(0));
    let transport = Scripted::new([Step::Gate(gate.clone())]);
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
    let stats = registry.stats();
    assert_eq!((stats.created, stats.reused), (1, 4));
    assert_eq!(registry.ref_count(&sid("s")), 0);
}

#[tokio::test(start_paused = true)]
async fn first_uses_of_different_sessions_connect_in_parallel() {
    // Each connect waits until all three are in progress: serialized
    // creation would never get there, and the timeout would fire.
    let barrier = Arc::new(Barrier::new(3));
    let transport = Scripted::new((0..3).map(|_| Step::Barrier(barrier.clone())));
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
}

#[tokio::test(start_paused = true)]
async fn lookups_of_existing_sessions_never_wait_on_a_creation() {
    let transport = Scripted::new([Step::Ok, Step::Never]);
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
}

#[tokio::test]
async fn a_failed_creation_leaves_no_entry_and_the_next_call_retries() {
    let transport = Scripted::new([Step::Fail]);
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
}

/// Defect 5: each caller queued on a failed creation's gate became the
/// creator in turn and tried again (with reconnect: N callers, N connect
/// sequences, the k-th waiting k of them). They now get that creation's
/// error.
#[tokio::test]
async fn callers_queued_behind_a_failed_creation_share_its_error() {
    let gate = Arc::new(Semaphore::new(0));
    let transport = Scripted::new([Step::GateThenFail(gate.clone())]);
    let registry = Registry::new(transport.clone(), config());
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let registry = registry.clone();
        tasks.push(tokio::spawn(async move {
            registry.acquire(&sid("s")).await.map(|_| ())
        }));
    }
    // One caller connects, four queue on the creation gate.
    while registry.ref_count(&sid("s")) < 5 {
        tokio::task::yield_now().await;
    }
    gate.add_permits(1);
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Connect {
                    source: CoreError::Connect { endpoint, .. }
                } if endpoint == "scripted"
            ),
            "{err:?}"
        );
        let cause = std::error::Error::source(&err)
            .and_then(std::error::Error::source)
            .map(ToString::to_string);
        assert_eq!(cause.as_deref(), Some("refused"), "the cause is kept");
    }
    assert_eq!(transport.connects(), 1, "one connect for five callers");
    assert_eq!(registry.stats().failed, 1);
    assert_eq!(registry.session_count(), 0, "no entry left behind");
    // A later call starts a new creation.
    let lease = registry.acquire(&sid("s")).await.unwrap();
    lease.ping(Duration::from_secs(5)).await.unwrap();
    assert_eq!(transport.connects(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_connect_that_never_finishes_times_out() {
    let transport = Scripted::new([Step::Never]);
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
    let registry = Registry::new(
        Scripted::new([]),
        RegistryConfig::new(2, Duration::from_secs(60)).with_reap_interval(None),
    );
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
    let registry = Registry::new(
        Scripted::new([]),
        RegistryConfig::new(1, Duration::from_secs(10)).with_reap_interval(None),
    );
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
    let registry = Registry::new(Scripted::new([]), config());
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
    let transport = Scripted::new([Step::Never]);
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
    let registry = Registry::new(Scripted::new([]), config());
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
    let transport = Scripted::new([]);
    let registry = Registry::new(
        transport.clone(),
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
    transport.server_ended().await;

    // The one task left is the registry's background task (the connection's
    // tasks ended with it); dropping the registry stops it.
    let tasks = tokio::runtime::Handle::current().metrics();
    assert_eq!(tasks.num_alive_tasks(), 1, "the background task runs");
    drop((registry, connection));
    for _ in 0..10 {
        if tasks.num_alive_tasks() == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(tasks.num_alive_tasks(), 0, "the background task stopped");
}

#[tokio::test]
async fn shutdown_waits_for_leases_closes_everything_and_refuses_new_calls() {
    let registry = Registry::new(Scripted::new([]), config());
    let lease = registry.acquire(&sid("a")).await.unwrap();
    let other = registry
        .acquire(&sid("b"))
        .await
        .unwrap()
        .connection()
        .clone();
    let connection = lease.connection().clone();
    let shutdown = registry.shutdown(Duration::from_secs(30));
    let mut shutdown = std::pin::pin!(shutdown);
    // Polled, not merely spawned: it has begun, and it is waiting.
    assert!(poll_once(shutdown.as_mut()).await.is_pending(), "waiting");
    assert!(matches!(
        registry.acquire(&sid("c")).await,
        Err(Error::Shutdown)
    ));
    // The leased connection still works meanwhile, and shutdown still waits.
    lease.ping(Duration::from_secs(5)).await.unwrap();
    assert!(
        poll_once(shutdown.as_mut()).await.is_pending(),
        "still waiting for the lease"
    );
    drop(lease);
    shutdown.await;
    assert!(connection.is_closed() && other.is_closed());
    assert_eq!(registry.session_count(), 0);
    assert!(matches!(
        registry.acquire(&sid("a")).await,
        Err(Error::Shutdown)
    ));
}

/// Defect 2: a creation still running when shutdown's grace period ended
/// handed out a live lease after the drain, on a connection nothing would
/// ever close.
#[tokio::test(start_paused = true)]
async fn a_creation_outliving_the_shutdown_grace_gets_shutdown_not_a_live_lease() {
    let gate = Arc::new(Semaphore::new(0));
    let transport = Scripted::new([Step::Gate(gate.clone())]);
    let registry = Registry::new(transport.clone(), config());
    let creating = {
        let registry = registry.clone();
        tokio::spawn(async move { registry.acquire(&sid("s")).await.map(|_| ()) })
    };
    while transport.connects() < 1 {
        tokio::task::yield_now().await;
    }
    // The creation's reference holds shutdown for its grace period; then
    // everything is drained.
    let started = tokio::time::Instant::now();
    registry.shutdown(Duration::from_secs(1)).await;
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(registry.session_count(), 0);

    gate.add_permits(1);
    let result = creating.await.unwrap();
    assert!(matches!(result, Err(Error::Shutdown)), "{result:?}");
    // The connection it opened was closed, not handed out.
    transport.server_ended().await;
    assert_eq!(registry.session_count(), 0);
}

#[tokio::test]
async fn an_invalidated_connection_is_replaced_on_the_next_acquire() {
    let transport = Scripted::new([]);
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
        Scripted::new([]),
        RegistryConfig::new(2, Duration::from_secs(3600))
            .with_reap_interval(None)
            .with_full_policy(SessionLimitPolicy::EvictLruIdle),
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
        Scripted::new([]),
        RegistryConfig::new(1, Duration::from_secs(3600))
            .with_reap_interval(None)
            .with_full_policy(SessionLimitPolicy::EvictLruIdle),
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
        Scripted::new([]),
        RegistryConfig::new(1, Duration::from_secs(3600))
            .with_reap_interval(None)
            .with_full_policy(SessionLimitPolicy::Wait)
            .with_limit_wait(Duration::from_secs(5)),
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

fn waiting(limit: usize, idle: Duration, wait: Duration) -> RegistryConfig {
    RegistryConfig::new(limit, idle)
        .with_reap_interval(None)
        .with_full_policy(SessionLimitPolicy::Wait)
        .with_limit_wait(wait)
}

/// Defect 6: a slot freed by expiry was never signalled (only the reaper
/// notified), so without a reaper a waiter timed out although an insert
/// would have evicted the expired session. The waiter now also wakes when
/// the earliest unleased session expires.
#[tokio::test(start_paused = true)]
async fn the_wait_policy_takes_a_slot_freed_by_expiry_without_a_reaper() {
    let registry = Registry::new(
        Scripted::new([]),
        waiting(1, Duration::from_secs(5), Duration::from_secs(30)),
    );
    drop(registry.acquire(&sid("a")).await.unwrap());
    let started = tokio::time::Instant::now();
    let b = registry.acquire(&sid("b")).await;
    assert!(b.is_ok(), "{b:?}");
    let waited = started.elapsed();
    assert!(
        waited <= Duration::from_secs(5) && waited >= Duration::from_millis(4800),
        "admitted when `a` expired: {waited:?}"
    );
    assert_eq!(registry.stats().removed_limit, 1);
}

/// Defect 6: no last insert attempt at the deadline. A lease released during
/// the wait signals nothing, yet its session is idle past the timeout by the
/// deadline: the last attempt evicts it.
#[tokio::test(start_paused = true)]
async fn the_wait_policy_makes_a_last_attempt_at_the_deadline() {
    let registry = Registry::new(
        Scripted::new([]),
        waiting(1, Duration::from_secs(5), Duration::from_secs(30)),
    );
    let held = registry.acquire(&sid("a")).await.unwrap();
    let waiter = {
        let registry = registry.clone();
        tokio::spawn(async move { registry.acquire(&sid("b")).await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiter.is_finished());
    let started = tokio::time::Instant::now();
    drop(held);
    let b = waiter.await.unwrap();
    assert!(b.is_ok(), "{b:?}");
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(29),
        "at the deadline"
    );
}

/// Defect 6: shutdown's drain did not wake waiters, who then waited out
/// their deadline and were refused with `SessionLimitReached`. They now get
/// `Shutdown`, at once.
#[tokio::test(start_paused = true)]
async fn shutdown_wakes_waiters_of_the_wait_policy_with_shutdown() {
    let registry = Registry::new(
        Scripted::new([]),
        waiting(1, Duration::from_secs(3600), Duration::from_secs(30)),
    );
    drop(registry.acquire(&sid("a")).await.unwrap());
    let waiter = {
        let registry = registry.clone();
        tokio::spawn(async move { registry.acquire(&sid("b")).await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiter.is_finished(), "waiting for a slot");
    let started = tokio::time::Instant::now();
    registry.shutdown(Duration::from_secs(10)).await;
    let b = waiter.await.unwrap();
    assert!(matches!(b, Err(Error::Shutdown)), "{b:?}");
    assert_eq!(started.elapsed(), Duration::ZERO);
}

fn as_principal(principal: Option<&str>, s: &str) -> SessionKey {
    SessionKey::with_principal(principal, SessionId::new(s))
}

#[tokio::test]
async fn two_principals_with_one_session_id_get_two_connections() {
    let registry = Registry::new(Scripted::new([]), config());
    let alice = as_principal(Some("alice"), "conversation-42");
    let bob = as_principal(Some("bob"), "conversation-42");
    let nobody = as_principal(None, "conversation-42");
    let a = registry.acquire(&alice).await.unwrap();
    let b = registry.acquire(&bob).await.unwrap();
    let n = registry.acquire(&nobody).await.unwrap();
    let ids = [
        a.connection().id(),
        b.connection().id(),
        n.connection().id(),
    ];
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );
    assert_eq!(registry.session_count(), 3);
    // Each principal keeps its own: never another's.
    for (key, id) in [(&alice, ids[0]), (&bob, ids[1]), (&nobody, ids[2])] {
        let again = registry.acquire(key).await.unwrap();
        assert_eq!(again.connection().id(), id, "{key}");
        assert_eq!(again.key(), key);
    }
    let mut handle = registry.handle(&bob).await.unwrap();
    assert_eq!(handle.acquire().await.unwrap().connection().id(), ids[1]);
}

#[tokio::test]
async fn a_session_reaped_or_evicted_then_used_by_another_principal_is_a_new_session() {
    // Reaped: alice's session goes idle and is cleaned up.
    let transport = Scripted::new([]);
    let registry = Registry::new(transport.clone(), config());
    let alice = as_principal(Some("alice"), "s");
    let mallory = as_principal(Some("mallory"), "s");
    let first = registry.acquire(&alice).await.unwrap().connection().id();
    assert_eq!(registry.cleanup_sessions(Some(Duration::ZERO)).await, 1);
    let claimed = registry.acquire(&mallory).await.unwrap().connection().id();
    assert_ne!(claimed, first);
    let back = registry.acquire(&alice).await.unwrap().connection().id();
    assert!(
        back != claimed && back != first,
        "alice gets a new session, not mallory's"
    );
    assert_eq!(transport.connects(), 3);

    // Evicted: with one slot, mallory's use of the id evicts alice's idle
    // session (LRU) and opens a new one; alice's next use evicts it in turn.
    let registry = Registry::new(
        Scripted::new([]),
        RegistryConfig::new(1, Duration::from_secs(60))
            .with_reap_interval(None)
            .with_full_policy(SessionLimitPolicy::EvictLruIdle),
    );
    let first = registry.acquire(&alice).await.unwrap().connection().id();
    let claimed = registry.acquire(&mallory).await.unwrap().connection().id();
    assert_ne!(claimed, first);
    let back = registry.acquire(&alice).await.unwrap().connection().id();
    assert!(back != claimed && back != first);
    assert_eq!(registry.peek(&mallory).map(|i| i.connection_id), None);
}

#[tokio::test]
async fn no_error_reveals_that_another_principals_session_id_exists() {
    // One slot, held by alice: a new session is refused for anyone, whether
    // or not the id exists under another principal — the same error.
    let registry = Registry::new(
        Scripted::new([]),
        RegistryConfig::new(1, Duration::from_secs(60))
            .with_reap_interval(None)
            .with_full_policy(SessionLimitPolicy::Reject),
    );
    let _held = registry
        .acquire(&as_principal(Some("alice"), "known"))
        .await
        .unwrap();
    let existing = registry
        .acquire(&as_principal(Some("mallory"), "known"))
        .await
        .unwrap_err();
    let unknown = registry
        .acquire(&as_principal(Some("mallory"), "never-used"))
        .await
        .unwrap_err();
    assert!(
        matches!(existing, Error::SessionLimitReached { limit: 1 }),
        "{existing:?}"
    );
    assert_eq!(format!("{existing:?}"), format!("{unknown:?}"));
    assert_eq!(existing.to_string(), unknown.to_string());
    // With room, the known id under another principal is just a new session.
    let registry = Registry::new(Scripted::new([]), config());
    let alice = registry
        .acquire(&as_principal(Some("alice"), "known"))
        .await
        .unwrap();
    let mallory = registry
        .acquire(&as_principal(Some("mallory"), "known"))
        .await
        .unwrap();
    assert_ne!(alice.connection().id(), mallory.connection().id());
}

#[tokio::test(start_paused = true)]
async fn an_expired_session_is_absent_on_lookup_before_any_reaper_runs() {
    let transport = Scripted::new([]);
    let registry = Registry::new(
        transport.clone(),
        RegistryConfig::new(10, Duration::from_secs(10)).with_reap_interval(None),
    );
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
    let registry = Registry::new(
        Scripted::new([]),
        RegistryConfig::new(10, Duration::from_secs(10)).with_reap_interval(None),
    );
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
    let transport = Scripted::new([]);
    let registry = Registry::new(transport.clone(), config());
    let mut handle = registry.handle(&sid("s")).await.unwrap();
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
    let registry = Registry::new(Scripted::new([]), config());
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

/// Every counter agrees with the map once the load is over: each connection
/// opened was either removed (for some cause) or is still in the map, and
/// no lease is left.
fn assert_settled(registry: &Registry<Arc<Scripted>>, transport: &Scripted, sessions: usize) {
    let stats = registry.stats();
    let removed =
        stats.removed_idle + stats.removed_explicit + stats.removed_limit + stats.removed_broken;
    assert_eq!(stats.created, transport.connects() as u64);
    assert_eq!(stats.created - removed, stats.sessions as u64, "{stats:?}");
    for s in 0..sessions {
        assert_eq!(registry.ref_count(&sid(&format!("s{s}"))), 0);
    }
}

/// Evict-lru-idle under many concurrent tasks (a multi-thread runtime, all
/// starting at a barrier): the limit holds at every acquisition, sessions
/// are evicted, every refusal is counted, nothing deadlocks, and the
/// counters agree at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evict_lru_idle_under_many_concurrent_tasks() {
    const TASKS: usize = 32;
    const SESSIONS: usize = 24;
    const LIMIT: usize = 8;
    let transport = Scripted::new([]);
    let registry = Registry::new(
        transport.clone(),
        RegistryConfig::new(LIMIT, Duration::from_secs(3600))
            .with_reap_interval(None)
            .with_full_policy(SessionLimitPolicy::EvictLruIdle),
    );
    let start = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let registry = registry.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let mut refused = 0;
                for round in 0..4 {
                    let session = sid(&format!("s{}", (task * 7 + round) % SESSIONS));
                    match registry.acquire(&session).await {
                        Ok(lease) => {
                            assert!(registry.session_count() <= LIMIT, "the limit holds");
                            tokio::task::yield_now().await;
                            drop(lease);
                        }
                        Err(Error::SessionLimitReached { limit }) => {
                            assert_eq!(limit, LIMIT);
                            refused += 1;
                        }
                        Err(other) => panic!("{other:?}"),
                    }
                }
                refused
            })
        })
        .collect();
    let mut refused = 0;
    for task in tasks {
        refused += task.await.unwrap();
    }
    assert_eq!(registry.stats().rejected, refused);
    assert!(registry.session_count() <= LIMIT);
    assert!(registry.stats().removed_limit > 0, "sessions were evicted");
    assert_settled(&registry, &transport, SESSIONS);
}

/// The wait policy under many concurrent tasks (a multi-thread runtime, all
/// starting at a barrier): each task leases its own session and removes it
/// when done, which lets a waiter in; with a wait far longer than the run,
/// no one is refused, the limit holds, and nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_wait_policy_under_many_concurrent_tasks() {
    const TASKS: usize = 32;
    const LIMIT: usize = 4;
    let transport = Scripted::new([]);
    let registry = Registry::new(
        transport.clone(),
        RegistryConfig::new(LIMIT, Duration::from_secs(3600))
            .with_reap_interval(None)
            .with_full_policy(SessionLimitPolicy::Wait)
            .with_limit_wait(Duration::from_secs(600)),
    );
    let start = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let registry = registry.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let session = sid(&format!("s{task}"));
                let lease = registry.acquire(&session).await.unwrap();
                assert!(registry.session_count() <= LIMIT, "the limit holds");
                lease.ping(Duration::from_secs(30)).await.unwrap();
                drop(lease);
                assert!(registry.remove_session(&session).await);
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let stats = registry.stats();
    assert_eq!((stats.rejected, stats.removed_explicit), (0, TASKS as u64));
    assert_eq!(registry.session_count(), 0);
    assert_settled(&registry, &transport, TASKS);
}
