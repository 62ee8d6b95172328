//! The core of [mcp-group]: the [`Transport`] trait and the types every other
//! crate shares.
//!
//! mcp-group gives every end-user session its own MCP client. This crate says
//! what a *transport* is — a connector that opens a new, initialized
//! [`Connection`] to one MCP server each time a session needs one — and
//! defines the values that cross crate boundaries: [`SessionId`] and
//! [`SessionKey`] (a session id under a principal),
//! [`ServerDescription`], [`ToolDescriptor`], [`ToolOutput`] and the
//! connection layer's [`Error`]. It depends on no transport; the stdio, streamable HTTP and
//! SSE transports are separate crates, and so can yours be.
//!
//! The protocol itself (model types, JSON-RPC, the `initialize` handshake,
//! request multiplexing, cancellation) is rmcp's, the official Rust MCP SDK:
//! [`Connection::establish`] runs rmcp's client over whatever byte or message
//! stream a transport opens. Nothing here re-implements the protocol.
//! [`ClientOptions`] set what the client side says and answers: the protocol
//! version offered in the handshake, and an [`Elicitation`] handler for
//! servers that ask for user input ([`AcceptDefaults`] answers with the
//! requested schema's defaults); [`Connection::establish_with`] takes them,
//! with the [`SessionKey`] of the connection, which the handler receives
//! with each question (at most [`MAX_SERVER_REQUESTS_PER_SESSION`] of one
//! session at once). For servers that demand OAuth, [`ClientOptions`] also
//! carry the application's [`Authorizer`], which signs a session's end user
//! in; the HTTP transport runs the flow.
//!
//! [`Connection::list_tools_with_hint`] returns a server's whole tool list
//! ([`ToolList`], within [`MAX_TOOL_LIST_PAGES`], [`MAX_TOOLS`] and
//! [`MAX_TOOL_LIST_BYTES`]) with the cache hint its pages carried
//! ([`CacheHint`]: `ttlMs`, `cacheScope`); the caching policy is the
//! caller's. [`Connection::tools_changed`] changes when the server announces
//! a tool-list change: as a notification in the 2025-11-25 era, on the
//! `subscriptions/listen` that [`Connection::subscribe_tool_changes`] opens
//! in the 2026-07-28 era.
//!
//! # Writing a transport
//!
//! 1. Depend on `mcp-group-core` (and on `rmcp` only if you need one of its
//!    transport features).
//! 2. Hold the configuration in a struct; implement [`Transport::connect`] to
//!    open the stream, then hand it to [`Connection::establish`]. Anything rmcp
//!    accepts as a client transport works: an `(AsyncRead, AsyncWrite)` pair,
//!    a `Sink + Stream` of JSON-RPC messages (WebSocket), or an
//!    `rmcp::transport::Transport` of your own.
//! 3. If the connection owns a resource that must be released (a process, a
//!    lease), attach it with [`Connection::with_cleanup`]: `close` calls its
//!    async [`Cleanup::cleanup`], and its `Drop` must release it synchronously
//!    for the cases where a connection is dropped without `close`.
//! 4. Map failures to [`Error`]: [`Error::Connect`] when the server cannot be
//!    reached (callers retry it), [`Error::Start`] when trying again cannot
//!    help (a program that will not start); keep your own error as the source.
//!
//! ```no_run
//! use mcp_group_core::{Connection, Error, ServerDescription, SessionId, SessionKey, Transport, async_trait};
//!
//! /// MCP as newline-delimited JSON over plain TCP.
//! struct TcpTransport {
//!     addr: String,
//! }
//!
//! #[async_trait]
//! impl Transport for TcpTransport {
//!     async fn connect(&self, _session: &SessionKey) -> Result<Connection, Error> {
//!         let stream = tokio::net::TcpStream::connect(&self.addr)
//!             .await
//!             .map_err(|e| Error::Connect { endpoint: self.addr.clone(), source: Box::new(e) })?;
//!         let (read, write) = stream.into_split();
//!         Connection::establish((read, write), self.addr.clone()).await
//!     }
//!
//!     fn description(&self) -> ServerDescription {
//!         ServerDescription { transport: "tcp", endpoint: self.addr.clone() }
//!     }
//! }
//!
//! # async fn run() -> Result<(), Error> {
//! let transport = TcpTransport { addr: "127.0.0.1:4000".into() };
//! let connection = transport.connect(&SessionId::new("alice").into()).await?;
//! let tools = connection.list_tools(std::time::Duration::from_secs(10)).await?;
//! println!("{} tools", tools.len());
//! connection.close().await;
//! # Ok(()) }
//! ```
//!
//! # Cancel safety
//! Every async method documents its cancel safety. In short: dropping a call
//! future sends `notifications/cancelled` and leaves the connection usable;
//! dropping a `connect` or `close` future leaves nothing running.
//!
//! [mcp-group]: https://docs.rs/mcp-group

mod authorization;
mod call;
mod connection;
mod credentials;
pub mod era;
mod error;
mod options;
mod tool_list;
mod trace;
mod transport;
mod types;

pub use async_trait::async_trait;
pub use authorization::{
    AuthorizationMode, AuthorizationRedirect, Authorizer, CredentialKey, UserAuthorization,
};
pub use call::{
    MAX_INPUT_REQUESTS_PER_ROUND, MAX_TASK_INPUT_REQUESTS, MAX_TASK_POLL_INTERVAL,
    MIN_TASK_POLL_INTERVAL,
};
pub use connection::{
    Cleanup, ClientAgent, Connection, Era, MAX_INPUT_ROUNDS, MAX_SERVER_REQUESTS_PER_SESSION,
    MAX_TOOL_LIST_BYTES, MAX_TOOL_LIST_PAGES, MAX_TOOLS, RequestTag,
};
pub use credentials::{ClientCredentials, EnterpriseIdentity};
pub use era::{EraMemory, negotiate};
pub use error::{BoxError, Error};
pub use options::{
    AUTO, AcceptDefaults, ClientOptions, Elicitation, ElicitationAnswer, PROTOCOL_VERSIONS,
    apply_defaults,
};
pub use rmcp;
pub use rmcp::model::{CacheScope, JsonObject};
pub use tool_list::{CacheHint, ToolList};
pub use transport::{DynTransport, Transport};
pub use types::{
    Redacted, ServerDescription, SessionId, SessionKey, ToolDescriptor, ToolOutput, is_secret_name,
    redact_args, redact_url,
};
