//! Retrying connection attempts with exponential backoff.

use std::time::Duration;

use mcp_group_core::{Connection, DynTransport, Error, ServerDescription, SessionId, Transport};

use crate::McpClientConfig;

/// Wraps a transport so that a failed `connect` is retried, with a delay that
/// starts at `reconnect_initial_backoff` and doubles up to
/// `reconnect_max_backoff`, at most `reconnect_max_attempts` times.
///
/// Only opening a connection is retried — never a tool call, which may have
/// reached the server (a retried non-idempotent tool would run twice). A
/// command that cannot be spawned is not retried either: it will not appear.
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
        let mut delay = self.initial;
        let mut retries = 0;
        loop {
            match self.inner.connect(session).await {
                Err(error) if retryable(&error) && retries < self.attempts => {
                    retries += 1;
                    tracing::info!(%session, %error, retry = retries, ?delay, "connect failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.max);
                }
                other => return other,
            }
        }
    }

    fn description(&self) -> ServerDescription {
        self.inner.description()
    }
}
