//! The error type shared by every mcp-group crate.

use std::time::Duration;

/// A boxed error used as the `source` of transport-specific failures.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong between a caller and an MCP server.
///
/// Variants are named for what the caller does next: fix the input
/// ([`Error::ToolNotFound`], [`Error::InvalidArguments`]), retry later
/// ([`Error::SessionLimitReached`], [`Error::Timeout`]), or give up on the
/// server ([`Error::Spawn`], [`Error::ServerGone`]). The cause, when there is
/// one, is in [`std::error::Error::source`] and is not repeated in `Display`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server's process could not be started (missing binary, bad `cwd`, ...).
    #[error("could not start the MCP server `{command}`")]
    Spawn {
        /// The command that was run.
        command: String,
        /// Why the operating system refused.
        #[source]
        source: std::io::Error,
    },
    /// The transport could not reach the server.
    #[error("could not connect to the MCP server at {endpoint}")]
    Connect {
        /// Where the server was expected (a command line or a URL).
        endpoint: String,
        /// The transport's own error.
        #[source]
        source: BoxError,
    },
    /// The server was reached but the MCP `initialize` handshake failed
    /// (the server exited, answered garbage, or refused the protocol version).
    #[error("the MCP handshake with {endpoint} failed")]
    Handshake {
        /// Where the server was expected.
        endpoint: String,
        /// What rmcp reported.
        #[source]
        source: BoxError,
    },
    /// The connection to the server is closed: the process exited or the
    /// stream ended. The session's next call opens a new connection.
    #[error("the MCP server closed the connection")]
    ServerGone {
        /// The transport's error, if it reported one.
        #[source]
        source: Option<BoxError>,
    },
    /// An operation did not finish in time.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// What timed out: `"connect"`, `"tools/call"`, `"tools/list"`, `"ping"`, ...
        operation: &'static str,
        /// The limit that was exceeded.
        after: Duration,
    },
    /// The request was cancelled before an answer arrived.
    #[error("the request was cancelled")]
    Cancelled,
    /// No tool of that name is exposed.
    #[error("unknown tool `{name}`")]
    ToolNotFound {
        /// The name the caller asked for.
        name: String,
    },
    /// The arguments do not fit the tool (not a JSON object, or rejected by its schema).
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
    /// The server answered with a JSON-RPC error.
    #[error("the MCP server answered with error {code}: {message}")]
    Protocol {
        /// The JSON-RPC error code.
        code: i32,
        /// The server's message.
        message: String,
    },
    /// The server answered with something that is not what the request expects.
    #[error("the MCP server sent an unexpected response")]
    UnexpectedResponse,
    /// The transport exists as a name but is not built yet.
    #[error("the `{transport}` transport is not implemented yet")]
    NotImplemented {
        /// The transport's configuration name.
        transport: &'static str,
    },
    /// The transport was compiled out (a cargo feature is off).
    #[error("the `{transport}` transport is not enabled in this build (cargo feature `{feature}`)")]
    TransportDisabled {
        /// The transport's configuration name.
        transport: &'static str,
        /// The cargo feature that enables it.
        feature: &'static str,
    },
    /// A new session was refused because `max_sessions` sessions are open and
    /// none could be reclaimed.
    #[error("the session limit of {limit} is reached")]
    SessionLimitReached {
        /// The configured `max_sessions`.
        limit: usize,
    },
    /// The session id is bound to another principal; it is not served to this one.
    #[error("session `{session}` belongs to another principal")]
    SessionForbidden {
        /// The session id presented.
        session: String,
    },
    /// The function group was shut down; no new calls are accepted.
    #[error("the function group is shut down")]
    Shutdown,
}

impl Error {
    /// Whether this error says the connection itself is unusable, so the
    /// session should drop it and open a new one on its next call.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Error::ServerGone { .. })
    }

    /// Maps an rmcp service error to ours.
    pub fn from_service(error: rmcp::ServiceError, operation: &'static str) -> Self {
        use rmcp::ServiceError as S;
        match error {
            S::McpError(data) => Error::Protocol {
                code: data.code.0,
                message: data.message.into_owned(),
            },
            S::TransportSend(source) => Error::ServerGone {
                source: Some(Box::new(source)),
            },
            S::TransportClosed => Error::ServerGone { source: None },
            S::Timeout { timeout } => Error::Timeout {
                operation,
                after: timeout,
            },
            S::Cancelled { .. } => Error::Cancelled,
            _ => Error::UnexpectedResponse,
        }
    }
}
