//! Shared helpers for the CLI package's integration tests: the bundled demo
//! server (this package's binary) over stdio and streamable HTTP, process
//! checks, the fault-injecting HTTP server and the session churn soak. Server
//! processes and the test config come from the facade's `tests/support`.
#![allow(dead_code, unreachable_pub, missing_docs, unused_imports)]
#![allow(clippy::unwrap_used)]

use std::{path::Path, time::Duration};

use mcp_group::ServerConfig;

#[path = "../../../tests/support/mod.rs"]
mod facade;
pub mod soak;

pub use facade::{ServerProcess, config};

/// The bundled demo server (`mcp-group demo-server`).
pub fn demo_server() -> ServerConfig {
    ServerConfig::stdio(env!("CARGO_BIN_EXE_mcp-group"), ["demo-server"])
}

/// Whether a process with this pid exists (a zombie counts: it is not reaped).
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits (up to 10 s, polling the process table) until `pid` is gone and
/// reaped. Used where the kill is asynchronous by design (a dropped
/// connection), never to paper over a race in our own code.
pub async fn wait_gone(pid: u32) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while process_exists(pid) {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// The pid and per-connection call count reported by the demo server's `whoami`.
pub fn whoami(output: &mcp_group::ToolOutput) -> (u32, u64) {
    let value: serde_json::Value =
        serde_json::from_str(&output.to_text()).expect("whoami returns JSON");
    (
        value["pid"].as_u64().expect("pid") as u32,
        value["calls"].as_u64().expect("calls"),
    )
}

/// Whether `pid` has exited (it may still be an unreaped zombie).
pub fn process_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

/// Waits (up to 10 s) until `pid` has exited, reaped or not.
pub async fn wait_dead(pid: u32) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !process_dead(pid) {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Our fault-injecting streamable HTTP server (Python standard library only).
pub fn fault_server() -> ServerProcess {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fault_server.py");
    ServerProcess::start(
        Path::new("python3"),
        &[script.to_str().expect("utf-8 path"), "{port}"],
        None,
    )
}

/// The bundled demo server in streamable HTTP mode (`demo-server --http`).
pub fn demo_http_server() -> ServerProcess {
    ServerProcess::start(
        Path::new(env!("CARGO_BIN_EXE_mcp-group")),
        &["demo-server", "--http", "127.0.0.1:{port}"],
        None,
    )
}

/// The demo HTTP server on `port`.
pub fn demo_http_server_on(port: u16) -> ServerProcess {
    ServerProcess::start_on(
        port,
        Path::new(env!("CARGO_BIN_EXE_mcp-group")),
        &["demo-server", "--http", "127.0.0.1:{port}"],
        None,
    )
}
