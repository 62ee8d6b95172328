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
//! # Crates
//! This facade only composes them: [`core`] (the `Transport` trait and shared
//! types), [`registry`] (the session map), [`overrides`] (aliases and
//! descriptions) and one crate per transport.
//!
//! # Feature flags
//! - `stdio` (default): spawn servers as child processes.
//! - `http` (default): MCP streamable HTTP.
//! - `sse` (default): legacy HTTP+SSE.
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
