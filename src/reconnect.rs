//! Retrying connection attempts with exponential backoff.

use std::time::Duration;

use mcp_group_core::{Connection, DynTransport, Error, ServerDescription, SessionId, Transport};

use crate::{McpClientConfig, backoff::Backoff};

/// Wraps a transport so that a failed `connect` is retried, with a delay that
/// starts at `reconnect_initial_backoff` and doubles up to
/// `reconnect_max_backoff`, at most `reconnect_max_attempts` times.
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
}

impl Reconnecting {
    pub(crate) fn new(inner: DynTransport, config: &McpClientConfig) -> Self {
        Self {
            inner,
            attempts: config.reconnect_max_attempts,
            initial: config.reconnect_initial_backoff,
            max: config.reconnect_max_backoff,
        }
    }
}

fn retryable(error: &Error) -> bool {
    matches!(error, Error::Connect { .. } | Error::ServerGone { .. })
}

#[mcp_group_core::async_trait]
impl Transport for Reconnecting {
    async fn connect(&self, session: &SessionId) -> Result<Connection, Error> {
        let mut backoff = Backoff::new(self.initial, self.max);
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
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mcp_group_test_kit::{Answer, ScriptedTransport};

    use super::*;
    use crate::{ServerConfig, config::McpClientConfig as Config};

    /// A server that cannot be started: not worth retrying.
    fn cannot_start() -> Answer {
        Answer::Fail(Error::Start {
            endpoint: "x".into(),
            source: Box::new(std::io::Error::from(std::io::ErrorKind::NotFound)),
        })
    }

    fn reconnecting(
        answers: impl IntoIterator<Item = Answer>,
    ) -> (Reconnecting, Arc<ScriptedTransport>) {
        let scripted = Arc::new(ScriptedTransport::new(answers));
        let config = Config::new(ServerConfig::stdio("x", Vec::<String>::new()));
        (Reconnecting::new(scripted.clone(), &config), scripted)
    }

    #[tokio::test(start_paused = true)]
    async fn connection_errors_are_retried_with_exponential_backoff() {
        let (transport, scripted) =
            reconnecting([Answer::refused(), Answer::refused(), Answer::Connect]);
        let started = tokio::time::Instant::now();
        let connection = transport.connect(&SessionId::new("s")).await.unwrap();
        assert_eq!(scripted.connects(), 3);
        scripted.assert_done();
        // 500 ms, then 1 s (the defaults).
        assert_eq!(started.elapsed(), Duration::from_millis(1500));
        connection.close().await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_attempt_budget_is_respected() {
        let (transport, scripted) = reconnecting((0..5).map(|_| Answer::refused()));
        let err = transport.connect(&SessionId::new("s")).await.unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
        assert_eq!(scripted.connects(), 3, "one try and two retries");
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_that_cannot_start_is_not_retried() {
        let (transport, scripted) = reconnecting((0..5).map(|_| cannot_start()));
        let err = transport.connect(&SessionId::new("s")).await.unwrap_err();
        assert!(matches!(err, Error::Start { .. }), "{err:?}");
        assert_eq!(scripted.connects(), 1);
    }
}
