//! Retrying connection attempts with exponential backoff.

use std::time::Duration;

use mcp_group_core::{Connection, DynTransport, Error, ServerDescription, SessionKey, Transport};

use crate::{
    McpClientConfig,
    backoff::{Backoff, Random, entropy},
};

/// Wraps a transport so that a failed `connect` is retried, with a delay that
/// starts at `reconnect_initial_backoff` and doubles up to
/// `reconnect_max_backoff`, each jittered down by up to half, at most
/// `reconnect_max_attempts` times.
///
/// Only opening a connection is retried — never a tool call, which may have
/// reached the server (a retried non-idempotent tool would run twice). A
/// server that cannot be started ([`Error::Start`]: a command that cannot
/// be spawned, a header that cannot be sent) is not retried either.
pub(crate) struct Reconnecting {
    inner: DynTransport,
    attempts: u32,
    initial: Duration,
    max: Duration,
    random: Random,
}

impl Reconnecting {
    pub(crate) fn new(inner: DynTransport, config: &McpClientConfig) -> Self {
        Self {
            inner,
            attempts: config.reconnect_max_attempts,
            initial: config.reconnect_initial_backoff,
            max: config.reconnect_max_backoff,
            random: entropy(),
        }
    }

    /// Jitters the delays with `random` instead of the process's source.
    #[cfg(test)]
    fn with_random(mut self, random: Random) -> Self {
        self.random = random;
        self
    }
}

fn retryable(error: &Error) -> bool {
    matches!(error, Error::Connect { .. } | Error::ServerGone { .. })
}

#[mcp_group_core::async_trait]
impl Transport for Reconnecting {
    async fn connect(&self, session: &SessionKey) -> Result<Connection, Error> {
        let mut backoff = Backoff::with_random(self.initial, self.max, self.random.clone());
        let mut retries = 0;
        loop {
            match self.inner.connect(session).await {
                Err(error) if retryable(&error) && retries < self.attempts => {
                    retries += 1;
                    let delay = backoff.next_delay();
                    tracing::info!(%session, %error, retry = retries, ?delay, "connect failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }

    fn description(&self) -> ServerDescription {
        self.inner.description()
    }

    fn era(&self) -> Option<mcp_group_core::Era> {
        self.inner.era()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use mcp_group_core::async_trait;
    use rmcp::{
        ServerHandler, ServiceExt,
        model::{ServerCapabilities, ServerConfig as RmcpServerConfig},
    };

    use mcp_group_core::SessionId;

    use super::*;
    use crate::{ServerConfig, config::McpClientConfig as Config};

    #[derive(Clone)]
    struct Empty;

    impl ServerHandler for Empty {
        fn get_info(&self) -> RmcpServerConfig {
            RmcpServerConfig::new(ServerCapabilities::builder().enable_tools().build())
        }
    }

    /// Fails the first `failures` connects with `error`, then connects.
    struct Flaky {
        failures: usize,
        spawn_error: bool,
        attempts: AtomicUsize,
    }

    #[async_trait]
    impl Transport for Flaky {
        async fn connect(&self, _session: &SessionKey) -> Result<Connection, Error> {
            let attempt = self.attempts.fetch_add(1, Ordering::SeqCst);
            if attempt < self.failures {
                return Err(if self.spawn_error {
                    Error::Start {
                        endpoint: "x".into(),
                        source: Box::new(std::io::Error::from(std::io::ErrorKind::NotFound)),
                    }
                } else {
                    Error::Connect {
                        endpoint: "flaky".into(),
                        source: "refused".into(),
                    }
                });
            }
            let (client, server) = tokio::io::duplex(4096);
            tokio::spawn(async move {
                if let Ok(running) = Empty.serve(server).await {
                    let _ = running.waiting().await;
                }
            });
            let (read, write) = tokio::io::split(client);
            Connection::establish((read, write), "flaky").await
        }

        fn description(&self) -> ServerDescription {
            ServerDescription {
                transport: "flaky",
                endpoint: "flaky".into(),
            }
        }
    }

    fn reconnecting(failures: usize, spawn_error: bool) -> (Reconnecting, Arc<Flaky>) {
        let flaky = Arc::new(Flaky {
            failures,
            spawn_error,
            attempts: AtomicUsize::new(0),
        });
        let config = Config::new(ServerConfig::stdio("x", Vec::<String>::new()));
        // No jitter: the delays are exactly the configured steps.
        let transport = Reconnecting::new(flaky.clone(), &config)
            .with_random(crate::backoff::tests::no_jitter());
        (transport, flaky)
    }

    #[tokio::test(start_paused = true)]
    async fn connection_errors_are_retried_with_exponential_backoff() {
        let (transport, flaky) = reconnecting(2, false);
        let started = tokio::time::Instant::now();
        let connection = transport
            .connect(&SessionId::new("s").into())
            .await
            .unwrap();
        assert_eq!(flaky.attempts.load(Ordering::SeqCst), 3);
        // 500 ms, then 1 s (the defaults).
        assert_eq!(started.elapsed(), Duration::from_millis(1500));
        connection.close().await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_attempt_budget_is_respected() {
        let (transport, flaky) = reconnecting(5, false);
        let err = transport
            .connect(&SessionId::new("s").into())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
        assert_eq!(
            flaky.attempts.load(Ordering::SeqCst),
            3,
            "one try and two retries"
        );
    }

    /// Defect 5: callers queued on one session's creation each retried the
    /// whole connect sequence in turn (N callers, N x 3 attempts, the k-th
    /// waiting about k sequences); they now share the first one's failure.
    #[tokio::test(start_paused = true)]
    async fn callers_queued_on_a_dead_server_cost_one_connect_sequence() {
        use mcp_group_registry::{Error as RegistryError, Registry, RegistryConfig};

        let (transport, flaky) = reconnecting(usize::MAX, false);
        let registry = Registry::new(
            transport,
            RegistryConfig::new(10, Duration::from_secs(60)).with_reap_interval(None),
        );
        let session = SessionKey::new(SessionId::new("s"));
        let started = tokio::time::Instant::now();
        let results = futures::future::join_all((0..5).map(|_| registry.acquire(&session))).await;
        for result in results {
            assert!(
                matches!(
                    result,
                    Err(RegistryError::Connect {
                        source: Error::Connect { .. }
                    })
                ),
                "{result:?}"
            );
        }
        assert_eq!(
            flaky.attempts.load(Ordering::SeqCst),
            3,
            "one try and two retries, for all five callers"
        );
        assert!(
            started.elapsed() <= Duration::from_millis(1500),
            "all five answered after one sequence: {:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_that_cannot_start_is_not_retried() {
        let (transport, flaky) = reconnecting(5, true);
        let err = transport
            .connect(&SessionId::new("s").into())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Start { .. }), "{err:?}");
        assert_eq!(flaky.attempts.load(Ordering::SeqCst), 1);
    }
}
