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
    /// The session id is bound to another principal.
    #[error("session `{session}` belongs to another principal")]
    SessionForbidden {
        /// The session id presented.
        session: String,
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
