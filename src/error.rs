//! The facade's one public error: every layer's failure, composed.

use crate::ConfigError;

/// Everything a [`crate::FunctionGroup`] can report.
///
/// Variants are named for what the caller does next: fix the input
/// ([`Error::Config`], [`Error::ToolNotFound`], [`Error::InvalidArguments`]),
/// retry later ([`Error::SessionLimitReached`]), stop
/// ([`Error::Shutdown`]). Transport and protocol failures (a server that
/// cannot be reached or started, a timeout, a JSON-RPC error) are
/// [`Error::Mcp`], holding the connection layer's
/// [`mcp_group_core::Error`]. The cause, when there is one, is in
/// [`std::error::Error::source`] and is not repeated in `Display`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    /// The tool overrides cannot be applied to the server's tools.
    #[error("the tool overrides cannot be applied")]
    Overrides(#[from] mcp_group_overrides::OverrideError),
    /// The configured transport was compiled out (a cargo feature is off).
    #[error("the `{transport}` transport is not enabled in this build (cargo feature `{feature}`)")]
    TransportDisabled {
        /// The transport's configuration name.
        transport: &'static str,
        /// The cargo feature that enables it.
        feature: &'static str,
    },
    /// No tool of that name is exposed.
    #[error("unknown tool `{name}`")]
    ToolNotFound {
        /// The name the caller asked for.
        name: String,
    },
    /// The arguments do not fit the tool (not a JSON object, or rejected by
    /// its schema); nothing was sent.
    #[error("invalid arguments for tool `{tool}`: {reason}")]
    InvalidArguments {
        /// The tool's exposed name.
        tool: String,
        /// The offending field, when one can be named.
        field: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// The tool ran and reported failure (`isError: true`).
    #[error("tool `{tool}` reported an error: {message}")]
    ToolError {
        /// The tool's exposed name.
        tool: String,
        /// The server's text contents, joined by newlines.
        message: String,
    },
    /// A new session was refused: `max_sessions` sessions are open and none
    /// could be reclaimed.
    #[error("the session limit of {limit} is reached")]
    SessionLimitReached {
        /// The configured `max_sessions`.
        limit: usize,
    },
    /// A session id given as input is not one (empty, or longer than
    /// [`crate::SessionId::MAX_LEN`] bytes); nothing was sent.
    #[error("invalid session id: {reason}")]
    InvalidSessionId {
        /// Why it is refused.
        reason: &'static str,
    },
    /// The function group was shut down; no new calls are accepted.
    #[error("the function group is shut down")]
    Shutdown,
    /// Another failure of the session registry.
    #[error("the session registry failed")]
    Registry(#[source] mcp_group_registry::Error),
    /// The server could not be reached, started or understood, or a request
    /// failed: the connection layer's error.
    #[error(transparent)]
    Mcp(mcp_group_core::Error),
}

impl Error {
    /// Whether this error says the session's connection is unusable (its next
    /// call opens a new one).
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Error::Mcp(error) if error.is_connection_lost())
    }
}

impl From<mcp_group_core::Error> for Error {
    fn from(error: mcp_group_core::Error) -> Self {
        match error {
            mcp_group_core::Error::InvalidSessionId { reason } => {
                Error::InvalidSessionId { reason }
            }
            other => Error::Mcp(other),
        }
    }
}

impl From<mcp_group_registry::Error> for Error {
    fn from(error: mcp_group_registry::Error) -> Self {
        use mcp_group_registry::Error as R;
        match error {
            R::SessionLimitReached { limit } => Error::SessionLimitReached { limit },
            R::Shutdown => Error::Shutdown,
            R::Connect { source } => source.into(),
            other => Error::Registry(other),
        }
    }
}
