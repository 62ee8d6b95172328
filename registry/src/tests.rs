//! Unit tests that force interleavings through the test hooks (`hooks`):
//! each hook runs, at a named point of one caller's code, what another
//! task would have done there.
#![allow(clippy::unwrap_used)]

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use mcp_group_core::{
    Connection, Error as CoreError, ServerDescription, SessionId, SessionKey, Transport,
};
use rmcp::{
    ServerHandler, ServiceExt,
    model::{ServerCapabilities, ServerConfig},
};

use crate::{
    Error, Registry, RegistryConfig,
    hooks::{self, Point},
};

/// A server with no tools: enough for the handshake.
#[derive(Clone)]
struct Empty;

impl ServerHandler for Empty {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// Connects to an in-memory server; counts connections.
#[derive(Default)]
struct InMemory {
    connects: AtomicUsize,
}

impl InMemory {
    fn connects(&self) -> usize {
        self.connects.load(Ordering::SeqCst)
    }
}

#[mcp_group_core::async_trait]
impl Transport for InMemory {
    async fn connect(&self, _session: &SessionKey) -> Result<Connection, CoreError> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        let (client, server) = tokio::io::duplex(16 * 1024);
        tokio::spawn(async move {
            if let Ok(running) = Empty.serve(server).await {
                let _ = running.waiting().await;
            }
        });
        let (read, write) = tokio::io::split(client);
        Connection::establish((read, write), "in-memory").await
    }

    fn description(&self) -> ServerDescription {
        ServerDescription {
            transport: "in-memory",
            endpoint: "in-memory".into(),
        }
    }
}

fn config() -> RegistryConfig {
    RegistryConfig::new(10, Duration::from_secs(60)).with_reap_interval(None)
}

fn sid(s: &str) -> SessionKey {
    SessionKey::new(SessionId::new(s))
}

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// Polls `task` once, as its own task's first turn would, without a waker
/// (a later `.await` on it registers the real one).
fn poll_once(task: &mut Task) -> Poll<()> {
    task.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

/// Defect 2: `insert` did not check `closed`; only a check before the map
/// lock did. A whole shutdown between that check and the insert (nothing to
/// wait for, so it drains and returns) let the caller insert, connect and get
/// a live lease after the registry was shut down.
#[tokio::test(start_paused = true)]
async fn shutdown_refuses_a_session_whose_insert_follows_the_shutdown_check() {
    let transport = Arc::new(InMemory::default());
    let registry = Registry::new(transport.clone(), config());
    let mut shutdown: Option<Task> = {
        let registry = registry.clone();
        Some(Box::pin(async move {
            registry.shutdown(Duration::from_secs(30)).await;
        }))
    };
    let _hook = hooks::set(move |point| {
        if point == Point::BeforeInsert {
            if let Some(mut shutdown) = shutdown.take() {
                assert!(poll_once(&mut shutdown).is_ready(), "shutdown completed");
            }
        }
    });
    let result = registry.acquire(&sid("s")).await;
    assert!(matches!(result, Err(Error::Shutdown)), "{result:?}");
    assert_eq!(transport.connects(), 0, "no connection opened");
    assert_eq!(registry.session_count(), 0);
}

/// A registry whose session `s` was used once and is now expired (idle
/// timeout 10 s, no reaper), with a shutdown ready to be polled.
async fn expired_session_and_a_shutdown() -> (Registry<Arc<InMemory>>, Task) {
    let registry = Registry::new(
        Arc::new(InMemory::default()),
        RegistryConfig::new(10, Duration::from_secs(10)).with_reap_interval(None),
    );
    drop(registry.acquire(&sid("s")).await.unwrap());
    tokio::time::sleep(Duration::from_secs(11)).await;
    let shutdown: Task = {
        let registry = registry.clone();
        Box::pin(async move { registry.shutdown(Duration::from_secs(30)).await })
    };
    (registry, shutdown)
}

/// Sets a hook that, at `at`, polls `shutdown` once: it finds the caller's
/// reference and waits (it is polled, registered and waiting, not merely
/// not yet run).
fn start_shutdown_at(
    at: Point,
    shutdown: Task,
) -> (hooks::Unset, std::rc::Rc<std::cell::Cell<Option<Task>>>) {
    let slot = std::rc::Rc::new(std::cell::Cell::new(Some(shutdown)));
    let hook_slot = slot.clone();
    let unset = hooks::set(move |point| {
        if point == at {
            if let Some(mut shutdown) = hook_slot.take() {
                assert!(
                    poll_once(&mut shutdown).is_pending(),
                    "shutdown waits for the reference"
                );
                hook_slot.set(Some(shutdown));
            }
        }
    });
    (unset, slot)
}

/// Defect 4: the expiry branch of `SessionHandle::acquire` released the
/// last reference without waking a waiting shutdown, which then waited out
/// its whole grace period (30 s here) instead of returning at once.
#[tokio::test(start_paused = true)]
async fn shutdown_is_woken_when_an_expired_handle_releases_the_last_reference() {
    let (registry, shutdown) = expired_session_and_a_shutdown().await;
    let mut handle = {
        // Resolving the handle refreshes the session; let it expire again.
        let handle = registry.handle(&sid("s")).await.unwrap();
        tokio::time::sleep(Duration::from_secs(11)).await;
        handle
    };
    let (unset, shutdown) = start_shutdown_at(Point::HandleAcquired, shutdown);
    let result = handle.acquire().await;
    assert!(matches!(result, Err(Error::Shutdown)), "{result:?}");
    drop(unset);
    let shutdown = shutdown.take().expect("shutdown was started by the hook");
    let started = tokio::time::Instant::now();
    shutdown.await;
    assert_eq!(started.elapsed(), Duration::ZERO, "woken, not timed out");
}

/// Defect 4: the lookup's expiry swap dropped the last reference without
/// waking a waiting shutdown, which then waited out its grace period.
#[tokio::test(start_paused = true)]
async fn shutdown_is_woken_when_the_expiry_swap_drops_the_last_reference() {
    let (registry, shutdown) = expired_session_and_a_shutdown().await;
    let (unset, shutdown) = start_shutdown_at(Point::LookupAcquired, shutdown);
    let result = registry.acquire(&sid("s")).await;
    assert!(matches!(result, Err(Error::Shutdown)), "{result:?}");
    drop(unset);
    let shutdown = shutdown.take().expect("shutdown was started by the hook");
    let started = tokio::time::Instant::now();
    shutdown.await;
    assert_eq!(started.elapsed(), Duration::ZERO, "woken, not timed out");
}
