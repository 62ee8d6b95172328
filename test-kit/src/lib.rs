//! Test support for the mcp-group workspace: what its tests and benchmarks
//! need again and again, written once. A dev-dependency only, never
//! published.
//!
//! - [`server`]: MCP servers that run in the test's own process — one with
//!   no tools ([`EmptyServer`]), one with an `echo` tool ([`EchoServer`]) —
//!   served over a [`tokio::io::duplex`] pipe ([`connect_in_memory`]).
//! - [`lists`]: a server whose tool list, cache hint (`ttlMs`,
//!   `cacheScope`) and change announcements the test drives, counting its
//!   listings ([`ListServer`]).
//! - [`transport`]: [`Transport`](mcp_group_core::Transport)s for the layers
//!   above `core`: [`InMemoryTransport`] opens a fresh in-memory server per
//!   connect and counts the connects; [`ScriptedTransport`] answers each
//!   connect as the test scripted it ("expect this connect, answer that"),
//!   then [`ScriptedTransport::assert_done`] checks that nothing is left.
//! - [`process`]: a server process on a free loopback port, stopped in
//!   `Drop` ([`ServerProcess`]); the free-port probe; bounded waits for a
//!   process to be gone or dead, or for any condition ([`wait_for`]); what
//!   this process holds (RSS, open file descriptors); running a command with
//!   input.
//! - [`fixtures`]: where `cargo xtask fixtures` installed the third-party
//!   servers.
//! - [`logs`]: a `tracing` writer that keeps what was logged ([`Captured`]).
//!
//! The kit depends on `mcp-group-core` only, so every crate of the workspace
//! — the facade's unit tests included — can use it without a dependency
//! cycle. Its helpers panic with a message instead of returning errors: they
//! run inside tests, where a panic is the failure report.
//!
//! ```no_run
//! use std::sync::Arc;
//! use mcp_group_core::{SessionId, SessionKey, Transport};
//! use mcp_group_test_kit::{Answer, ScriptedTransport};
//!
//! # async fn example() {
//! let transport = Arc::new(ScriptedTransport::new([Answer::refused(), Answer::Connect]));
//! let s = SessionKey::new(SessionId::new("s"));
//! assert!(transport.connect(&s).await.is_err());
//! assert!(transport.connect(&s).await.is_ok());
//! transport.assert_done();
//! # }
//! ```

pub mod fixtures;
pub mod lists;
pub mod logs;
pub mod process;
pub mod server;
pub mod transport;

pub use lists::ListServer;
pub use logs::Captured;
pub use process::{
    ServerProcess, eventually, free_port, process_dead, process_exists, wait_dead, wait_for,
    wait_gone,
};
pub use server::{EchoServer, EmptyServer, connect_in_memory, serve_in_memory};
pub use transport::{Answer, InMemoryTransport, ScriptedTransport};
