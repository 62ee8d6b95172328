//! Transports for testing the layers above `core`: one that always connects
//! to a fresh in-memory server, and one that answers each connect as the
//! test scripted it.

use std::{
    collections::VecDeque,
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use mcp_group_core::{
    Connection, Error, ServerDescription, SessionId, SessionKey, Transport, async_trait,
};
use rmcp::ServerHandler;

use crate::server::{EmptyServer, connect_in_memory};

const NAME: &str = "in-memory";

/// Opens, on every connect, a fresh in-memory server (a clone of the one it
/// was given) and completes the handshake with it. Counts its connects.
#[derive(Debug)]
pub struct InMemoryTransport<S = EmptyServer> {
    server: S,
    delay: Duration,
    connects: AtomicUsize,
}

impl InMemoryTransport {
    /// Connects to [`EmptyServer`]s.
    pub fn empty() -> Self {
        Self::new(EmptyServer)
    }
}

impl Default for InMemoryTransport {
    fn default() -> Self {
        Self::empty()
    }
}

impl<S> InMemoryTransport<S> {
    /// Connects to clones of `server`.
    pub fn new(server: S) -> Self {
        Self {
            server,
            delay: Duration::ZERO,
            connects: AtomicUsize::new(0),
        }
    }

    /// Waits `delay` (tokio time) at the start of every connect: a slow
    /// handshake.
    pub fn with_connect_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// How many connects have started.
    pub fn connects(&self) -> usize {
        self.connects.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl<S> Transport for InMemoryTransport<S>
where
    S: ServerHandler + Clone + Send + Sync + 'static,
{
    async fn connect(&self, _session: &SessionKey) -> Result<Connection, Error> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        connect_in_memory(self.server.clone(), NAME).await
    }

    fn description(&self) -> ServerDescription {
        ServerDescription {
            transport: NAME,
            endpoint: NAME.into(),
        }
    }
}

/// How a [`ScriptedTransport`] answers one connect.
pub enum Answer {
    /// Connect to a fresh [`EmptyServer`].
    Connect,
    /// Fail with this error.
    Fail(Error),
    /// Wait for this future, then connect.
    After(Pin<Box<dyn Future<Output = ()> + Send>>),
    /// Never finish.
    Never,
}

impl Answer {
    /// Fail with [`Error::Connect`] (a server that could not be reached).
    pub fn refused() -> Self {
        Self::Fail(Error::Connect {
            endpoint: "scripted".into(),
            source: "refused".into(),
        })
    }

    /// Wait for `ready`, then connect.
    pub fn after(ready: impl Future<Output = ()> + Send + 'static) -> Self {
        Self::After(Box::pin(ready))
    }
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect => f.write_str("Connect"),
            Self::Fail(error) => f.debug_tuple("Fail").field(error).finish(),
            Self::After(_) => f.write_str("After(..)"),
            Self::Never => f.write_str("Never"),
        }
    }
}

#[derive(Debug)]
struct Expected {
    /// The session the connect must be for; `None`: any.
    session: Option<SessionKey>,
    answer: Answer,
}

/// A transport that expects the connects a test scripted, in order, and
/// answers each one as scripted — in the spirit of tower-test's `mock`:
/// "expect this connect, answer that", then
/// [`assert_done`](ScriptedTransport::assert_done) checks that every
/// scripted connect came and nothing else did.
///
/// A connect beyond the script, or for another session than the one
/// scripted next, fails with [`Error::Connect`] and is remembered for
/// `assert_done` to report.
#[derive(Debug)]
pub struct ScriptedTransport {
    script: Mutex<VecDeque<Expected>>,
    unexpected: Mutex<Vec<String>>,
    connects: AtomicUsize,
    server: InMemoryTransport,
}

impl ScriptedTransport {
    /// Expects one connect, for any session, per answer.
    pub fn new(answers: impl IntoIterator<Item = Answer>) -> Self {
        let script = answers
            .into_iter()
            .map(|answer| Expected {
                session: None,
                answer,
            })
            .collect();
        Self {
            script: Mutex::new(script),
            unexpected: Mutex::new(Vec::new()),
            connects: AtomicUsize::new(0),
            server: InMemoryTransport::empty(),
        }
    }

    /// Then expects a connect for the session named `session`, without a
    /// principal, answered with `answer`.
    pub fn expect_for(self, session: impl AsRef<str>, answer: Answer) -> Self {
        self.expect_for_key(SessionKey::new(SessionId::new(session)), answer)
    }

    /// Then expects a connect for `key`, answered with `answer`.
    pub fn expect_for_key(self, key: SessionKey, answer: Answer) -> Self {
        lock(&self.script).push_back(Expected {
            session: Some(key),
            answer,
        });
        self
    }

    /// How many connects have started, expected or not.
    pub fn connects(&self) -> usize {
        self.connects.load(Ordering::SeqCst)
    }

    /// Panics unless every scripted connect came and no other did.
    #[track_caller]
    pub fn assert_done(&self) {
        let unexpected = lock(&self.unexpected);
        assert!(unexpected.is_empty(), "unexpected connects: {unexpected:?}");
        let left = lock(&self.script);
        assert!(
            left.is_empty(),
            "scripted connects that never came: {left:?}"
        );
    }

    /// The next scripted answer, if it is meant for `session`.
    fn next_for(&self, session: &SessionKey) -> Option<Answer> {
        let mut script = lock(&self.script);
        let fits = script
            .front()
            .is_some_and(|next| next.session.as_ref().is_none_or(|s| s == session));
        if fits {
            script.pop_front().map(|next| next.answer)
        } else {
            let expected = script.front().map(|next| format!("{next:?}"));
            lock(&self.unexpected).push(format!(
                "for session `{session}` (next in the script: {})",
                expected.as_deref().unwrap_or("nothing")
            ));
            None
        }
    }
}

#[async_trait]
impl Transport for ScriptedTransport {
    async fn connect(&self, session: &SessionKey) -> Result<Connection, Error> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        match self.next_for(session) {
            Some(Answer::Connect) => {}
            Some(Answer::Fail(error)) => return Err(error),
            Some(Answer::After(ready)) => ready.await,
            Some(Answer::Never) => std::future::pending().await,
            None => {
                return Err(Error::Connect {
                    endpoint: "scripted".into(),
                    source: format!("unexpected connect for session `{session}`").into(),
                });
            }
        }
        self.server.connect(session).await
    }

    fn description(&self) -> ServerDescription {
        ServerDescription {
            transport: "scripted",
            endpoint: "scripted".into(),
        }
    }
}

/// Locks `mutex`, through a poisoning panic (another test thread's failure
/// is reported there; the script itself is still consistent).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
