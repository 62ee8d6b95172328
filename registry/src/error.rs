//! The registry's error.

/// Why a session could not be leased.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `max_sessions` sessions are open and none could be reclaimed.
    #[error("the session limit of {limit} is reached")]
    SessionLimitReached {
        /// The configured `max_sessions`.
        limit: usize,
    },
    /// The registry is shut down; no new leases are handed out.
    #[error("the session registry is shut down")]
    Shutdown,
    /// Opening the session's connection failed (the transport's error, or
    /// `mcp_group_core::Error::Timeout` with operation "connect").
    #[error("could not open the session's connection")]
    Connect {
        /// The transport's error.
        #[source]
        source: mcp_group_core::Error,
    },
}

/// A copy of a creation's failure for each caller queued behind it:
/// `mcp_group_core::Error` is not `Clone` (its causes are boxed errors), so
/// the copy keeps the variant and its fields, and each cause as a
/// [`Cause`] with the same message.
pub(crate) fn copy_failure(error: &mcp_group_core::Error, endpoint: &str) -> mcp_group_core::Error {
    use mcp_group_core::Error as E;
    let cause = || -> mcp_group_core::BoxError {
        match std::error::Error::source(error) {
            Some(source) => Box::new(Cause::of(source)),
            None => Box::new(Cause::of(error)),
        }
    };
    match error {
        E::Start { endpoint, .. } => E::Start {
            endpoint: endpoint.clone(),
            source: cause(),
        },
        E::Connect { endpoint, .. } => E::Connect {
            endpoint: endpoint.clone(),
            source: cause(),
        },
        E::Handshake { endpoint, .. } => E::Handshake {
            endpoint: endpoint.clone(),
            source: cause(),
        },
        E::ServerGone { source } => E::ServerGone {
            source: source.as_ref().map(|_| cause()),
        },
        E::Timeout { operation, after } => E::Timeout {
            operation,
            after: *after,
        },
        E::Cancelled => E::Cancelled,
        E::Protocol { code, message } => E::Protocol {
            code: *code,
            message: message.clone(),
        },
        E::UnexpectedResponse => E::UnexpectedResponse,
        E::UnsupportedProtocolVersion { version } => E::UnsupportedProtocolVersion {
            version: version.clone(),
        },
        // A variant added later: a connect failure caused by the whole error.
        _ => E::Connect {
            endpoint: endpoint.to_owned(),
            source: Box::new(Cause::of(error)),
        },
    }
}

/// A cause copied from another error: its message, and its own cause.
#[derive(Debug, Clone)]
pub(crate) struct Cause {
    message: String,
    source: Option<Box<Cause>>,
}

impl Cause {
    fn of(error: &(dyn std::error::Error + 'static)) -> Self {
        Self {
            message: error.to_string(),
            source: error.source().map(|s| Box::new(Self::of(s))),
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}
