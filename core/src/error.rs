//! The error type of the connection layer: transports and the MCP protocol.

use std::time::Duration;

/// A boxed error used as the `source` of transport-specific failures.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong between a client and an MCP server: opening a
/// connection, the handshake, and requests on it.
///
/// Failures of the layers above (the session registry's limits, the
/// function group's argument checks) are those crates' own errors. Variants
/// are named for what the caller does next: retry later
/// ([`Error::Connect`], [`Error::Timeout`]), open a new connection
/// ([`Error::ServerGone`]) or give up on the server ([`Error::Start`]). The
/// cause, when there is one, is in [`std::error::Error::source`] and is not
/// repeated in `Display`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport could not start the server, and trying again will not
    /// help: a program that does not exist, a working directory that is not
    /// there, a transport configuration that cannot be used.
    #[error("could not start the MCP server {endpoint}")]
    Start {
        /// What was to be started (a command line or a URL).
        endpoint: String,
        /// The transport's own error (for stdio, its spawn error).
        #[source]
        source: BoxError,
    },
    /// The transport could not reach the server; a later attempt may succeed.
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
    /// The server sent more than this client accepts (pages of a list,
    /// items, bytes): a bound against servers that would grow our memory
    /// without end.
    #[error("the MCP server exceeded the limit of {limit} {what}")]
    LimitExceeded {
        /// What was counted: `"tools/list pages"`, `"tools"`, ...
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A session id given as input is not one: empty, or longer than
    /// [`crate::SessionId::MAX_LEN`] bytes.
    #[error("invalid session id: {reason}")]
    InvalidSessionId {
        /// Why it is refused.
        reason: &'static str,
    },
    /// The server demands OAuth and the session's user has not authorized
    /// this client yet: show them `url`. The authorization runs in the
    /// background ([`crate::AuthorizationMode::Fail`]); a later call uses
    /// its token.
    #[error("the user must authorize this client at {url}")]
    AuthorizationRequired {
        /// The authorization server's URL to send the user to.
        url: String,
    },
    /// Authorizing the session's user failed: discovery, registration, the
    /// [`crate::Authorizer`], or the token exchange.
    #[error("authorization with {endpoint} failed")]
    Authorization {
        /// The MCP server.
        endpoint: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The protocol version asked for is not one this client speaks.
    #[error("unsupported MCP protocol version `{version}`")]
    UnsupportedProtocolVersion {
        /// The version asked for.
        version: String,
    },
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
            S::TransportSend(source) => {
                let source: BoxError = Box::new(source);
                match Error::take_authorization(source) {
                    Ok(authorization) => authorization,
                    Err(source) => Error::ServerGone {
                        source: Some(source),
                    },
                }
            }
            S::TransportClosed => Error::ServerGone { source: None },
            S::Timeout { timeout } => Error::Timeout {
                operation,
                after: timeout,
            },
            S::Cancelled { .. } => Error::Cancelled,
            _ => Error::UnexpectedResponse,
        }
    }

    /// The authorization outcome a transport carried inside `error`
    /// through rmcp's transport error (as the inner error of an
    /// `io::Error`): [`Error::AuthorizationRequired`], a timeout of the
    /// `authorization` operation, [`Error::Authorization`] (whose cause,
    /// which rmcp's error types do not expose as a source, comes along as
    /// its text) or [`Error::LimitExceeded`]. Anything else is given back.
    ///
    /// A call whose request needed a new authorization thus says so,
    /// instead of [`Error::ServerGone`]: the connection itself is fine.
    pub fn take_authorization(error: BoxError) -> Result<Error, BoxError> {
        let found = match carried(error.as_ref()) {
            Some(Error::AuthorizationRequired { url }) => {
                Error::AuthorizationRequired { url: url.clone() }
            }
            Some(Error::Timeout {
                operation: operation @ "authorization",
                after,
            }) => Error::Timeout {
                operation,
                after: *after,
            },
            Some(Error::Authorization {
                endpoint,
                source: cause,
            }) => Error::Authorization {
                endpoint: endpoint.clone(),
                source: Box::new(Cause::of(cause.as_ref())),
            },
            // A bound the transport holds to (one user's requests in
            // flight): the connection itself is fine.
            Some(Error::LimitExceeded { what, limit }) => Error::LimitExceeded {
                what,
                limit: *limit,
            },
            _ => return Err(error),
        };
        Ok(found)
    }
}

/// The most characters of a carried cause's text.
const MAX_CAUSE_CHARS: usize = 1000;

/// The text of an error chain that could only be borrowed: the cause of a
/// carried [`Error::Authorization`].
#[derive(Debug)]
struct Cause(String);

impl Cause {
    fn of(error: &(dyn std::error::Error + 'static)) -> Self {
        let mut text = error.to_string();
        let mut next = error.source();
        while let Some(cause) = next {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            next = cause.source();
            if text.len() > MAX_CAUSE_CHARS {
                break;
            }
        }
        // A peer's words may be in it: bounded, and without control
        // characters.
        Cause(
            text.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(MAX_CAUSE_CHARS)
                .collect(),
        )
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Cause {}

/// The first of our errors in `error`'s chain, looking inside `io::Error`
/// (whose `source` skips its inner error) and rmcp's handshake error (which
/// does not name its transport error as the source).
fn carried<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(ours) = error.downcast_ref::<Error>() {
            return Some(ours);
        }
        if let Some(rmcp::service::ClientInitializeError::TransportError { error, .. }) =
            error.downcast_ref::<rmcp::service::ClientInitializeError>()
        {
            next = Some(error.error.as_ref());
            continue;
        }
        if let Some(inner) = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            next = Some(inner);
            continue;
        }
        next = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(inner: Box<dyn std::error::Error + Send + Sync>) -> rmcp::ServiceError {
        rmcp::ServiceError::TransportSend(rmcp::transport::DynamicTransportError::from_parts(
            "test",
            std::any::TypeId::of::<()>(),
            inner,
        ))
    }

    #[test]
    fn a_carried_limit_is_not_a_lost_connection() {
        let carried = std::io::Error::other(Error::LimitExceeded {
            what: "requests of one user in flight",
            limit: 256,
        });
        let error = Error::from_service(sent(Box::new(carried)), "tools/call");
        assert!(
            matches!(error, Error::LimitExceeded { limit: 256, .. }),
            "{error:?}"
        );
        assert!(!error.is_connection_lost());
    }

    #[test]
    fn a_carried_authorization_request_is_not_a_lost_connection() {
        let carried = std::io::Error::other(Error::AuthorizationRequired {
            url: "https://as/authorize".into(),
        });
        let error = Error::from_service(sent(Box::new(carried)), "tools/call");
        assert!(
            matches!(&error, Error::AuthorizationRequired { url } if url == "https://as/authorize"),
            "{error:?}"
        );
        assert!(!error.is_connection_lost());
    }

    #[test]
    fn a_carried_authorization_failure_keeps_its_cause() {
        let carried = std::io::Error::other(Error::Authorization {
            endpoint: "https://mcp".into(),
            source: "the issuer is not the one asked for".into(),
        });
        let error = Error::from_service(sent(Box::new(carried)), "tools/call");
        let Error::Authorization { endpoint, source } = &error else {
            panic!("expected Authorization, got {error:?}");
        };
        assert_eq!(endpoint, "https://mcp");
        assert_eq!(source.to_string(), "the issuer is not the one asked for");
    }

    #[test]
    fn other_send_failures_stay_a_lost_connection() {
        let error =
            Error::from_service(sent(Box::new(std::io::Error::other("reset"))), "tools/call");
        assert!(error.is_connection_lost(), "{error:?}");
    }
}
