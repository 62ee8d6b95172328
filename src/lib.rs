//! **mcp-group** connects to an MCP (Model Context Protocol) server and
//! exposes its tools to an agent as a *session-aware function group*: every
//! end-user session gets its own MCP client, created on first use, shared by
//! that session's concurrent calls, reaped when idle and bounded in number;
//! every tool can be renamed or re-described.
//!
//! ```no_run
//! use mcp_group::{FunctionGroup, McpClientConfig, ServerConfig, SessionId};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = McpClientConfig::new(ServerConfig::stdio(
//!     "npx",
//!     ["-y", "@modelcontextprotocol/server-everything"],
//! ));
//! let group = FunctionGroup::connect(config).await?;
//! for function in group.functions() {
//!     println!("{}: {}", function.name(), function.description().unwrap_or(""));
//! }
//! let alice = SessionId::new("alice");
//! let output = group
//!     .call(Some(&alice), "echo", serde_json::json!({ "message": "hi" }))
//!     .await?;
//! println!("{}", output.to_text());
//! group.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Protocol eras and what a session is
//! The MCP specification has two eras that deployed servers speak side by
//! side: 2025-11-25 and earlier (the `initialize` handshake, protocol
//! sessions with `Mcp-Session-Id`, server-to-client requests) and
//! 2026-07-28 (no handshake and no protocol session, `server/discover`,
//! self-contained `_meta` on every request, `input_required` results, cached
//! lists, `subscriptions/listen`). By default (`protocol_version = "auto"`)
//! the client probes with `server/discover` and falls back to `initialize`;
//! each transport remembers what it found, so only its first connection pays
//! (see [`core::era`]). [`FunctionGroup::era`] says which era was negotiated.
//! HTTP+SSE is of the 2025 era only (and deprecated).
//!
//! A session here is always the end user's conversation, never a protocol
//! object. What it holds depends on the era:
//!
//! | | 2025-11-25 (legacy) | 2026-07-28 (modern) |
//! |---|---|---|
//! | a new session's first call | `initialize` + `notifications/initialized` + the call (over stdio also a new process) | the call alone, once the server's era is known (over stdio a new process, with no handshake while the discovery is fresh) |
//! | protocol session | its own `Mcp-Session-Id` | none |
//! | MCP client (streamable HTTP) | its own rmcp client and worker | a share of one rmcp client per server ([`core::Connection::share`]): a small handle, about 13 KiB per idle session against about 63 KiB |
//! | HTTP connections | the group's pool | the group's pool |
//! | credentials and headers | the session's own | the session's own, on every request (the request carries its session's tag; nothing rmcp sends on its own carries any session's credentials) |
//! | server asks the user | `elicitation/create` requests on the session's connection | `input_required` results on the session's call; same [`core::Elicitation`] handler |
//! | tool list | the group's; changes by `notifications/tools/list_changed` | `public`: the group's; `private`: the session's own; by `ttlMs`, changes over `subscriptions/listen` |
//! | bounds | `max_sessions`, idle reaping, bound to its principal | the same |
//!
//! # Crates
//! This facade only composes them: [`core`] (the `Transport` trait and shared
//! types), [`registry`] (the session map), [`overrides`] (aliases and
//! descriptions) and one crate per transport.
//!
//! # Feature flags
//! - `stdio` (default): spawn servers as child processes.
//! - `http` (default): MCP streamable HTTP.
//! - `sse` (default): legacy HTTP+SSE.
//! - `otel` (off by default): each request's `_meta` carries the W3C trace
//!   context (`traceparent`, `tracestate`) of the call's `tracing` span, taken
//!   from `tracing-opentelemetry`; without it no OpenTelemetry crate is built.
//!   With or without it, every tool call runs in an `mcp.call` span recording
//!   the session, tool, protocol era and outcome.
//!
//! With `default-features = false, features = ["stdio"]` no HTTP client is built.
//!
//! # NeMo Agent Toolkit
//! The configuration keeps the field names and defaults of NeMo Agent
//! Toolkit's MCP client, and [`McpClientConfig::from_workflow`] reads one MCP
//! function group straight from one of its workflow files, auth provider
//! included; see [`nat`].
//! The `mcp-group` command-line tool is a package of its own (`mcp-group-cli`).

mod arguments;
mod backoff;
mod config;
mod error;
mod group;
mod listing;
pub mod nat;
mod reconnect;

pub use config::{
    AuthConfig, AuthMode, ConfigError, HttpServer, McpClientConfig, ParseError, ServerConfig,
    SessionLimitPolicy, SseServer, StdioServer, TransportKind,
};
pub use error::Error;
#[cfg(feature = "http")]
pub use group::build_transport_with_token_store;
pub use group::{
    Function, FunctionGroup, Functions, ToolsChanged, build_transport, build_transport_with,
};
pub use listing::{MAX_LIST_TTL, MIN_LIST_TTL};
#[doc(inline)]
pub use mcp_group_core as core;
pub use mcp_group_core::{ClientCredentials, SessionId, SessionKey, ToolDescriptor, ToolOutput};
#[doc(inline)]
pub use mcp_group_overrides as overrides;
pub use mcp_group_overrides::{ExposedTool, ToolOverride, UnusableTool};
#[doc(inline)]
pub use mcp_group_registry as registry;
pub use nat::FunctionGroupType;

/// The `stdio` transport.
#[cfg(feature = "stdio")]
#[doc(inline)]
pub use mcp_group_transport_stdio as stdio;

/// The streamable HTTP transport.
#[cfg(feature = "http")]
#[doc(inline)]
pub use mcp_group_transport_http as http;

/// The legacy HTTP+SSE transport.
#[cfg(feature = "sse")]
#[doc(inline)]
pub use mcp_group_transport_sse as sse;
