//! The [`Transport`] trait: how a new connection to one MCP server is opened.

use std::sync::Arc;

use crate::{Connection, Era, Error, ServerDescription, SessionKey};

/// Opens new, initialized connections to one MCP server.
///
/// A transport is a *connector*, not a connection: the registry calls
/// [`Transport::connect`] once per end-user session, possibly many times
/// concurrently, and shares the returned [`Connection`] among that session's
/// calls. Implementations hold only configuration (a command line, a URL,
/// headers) and must be cheap to share (`Send + Sync`).
///
/// The trait is object safe: an `Arc<dyn Transport>` lets one group hold
/// transports chosen at run time.
///
/// # Cancel safety
/// `connect` must be cancel safe: if its future is dropped (a timeout, a
/// cancelled caller), every resource it started (a process, a socket) must be
/// released by `Drop`. Attach such resources with [`Connection::with_cleanup`]
/// and give them a `Drop` that frees them synchronously.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Opens a new connection for `session` and completes the MCP handshake.
    ///
    /// The key (session id and principal) lets a transport vary per session
    /// (the end user's credentials in headers, say). Pass it on to
    /// [`crate::Connection::establish_with`], so that the elicitation handler
    /// knows which end user a server's question is for.
    async fn connect(&self, session: &SessionKey) -> Result<Connection, Error>;

    /// What this transport connects to.
    fn description(&self) -> ServerDescription;

    /// The protocol era the server was found to speak, once a connection
    /// has found out (see [`crate::era`]); `None` until then, or if the
    /// transport does not keep track.
    fn era(&self) -> Option<Era> {
        None
    }
}

#[async_trait::async_trait]
impl<T: Transport + ?Sized> Transport for Arc<T> {
    async fn connect(&self, session: &SessionKey) -> Result<Connection, Error> {
        (**self).connect(session).await
    }

    fn description(&self) -> ServerDescription {
        (**self).description()
    }

    fn era(&self) -> Option<Era> {
        (**self).era()
    }
}

#[async_trait::async_trait]
impl<T: Transport + ?Sized> Transport for Box<T> {
    async fn connect(&self, session: &SessionKey) -> Result<Connection, Error> {
        (**self).connect(session).await
    }

    fn description(&self) -> ServerDescription {
        (**self).description()
    }

    fn era(&self) -> Option<Era> {
        (**self).era()
    }
}

/// A transport chosen at run time.
pub type DynTransport = Arc<dyn Transport>;
