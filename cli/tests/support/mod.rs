//! Shared helpers for the CLI package's integration tests (and its e2e
//! bench): the bundled demo server (this package's binary) over stdio and
//! streamable HTTP, the fault-injecting HTTP server and the session churn
//! soak. Server processes and process checks come from the test kit; the
//! test config and the third-party servers from the facade's `tests/support`.
#![allow(dead_code, unreachable_pub, missing_docs, unused_imports)]

use std::path::Path;

use mcp_group::ServerConfig;

#[path = "../../../tests/support/mod.rs"]
mod facade;
pub mod soak;

pub use facade::{config, server_everything_http};
use mcp_group_test_kit::ServerProcess;

/// The `mcp-group` binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_mcp-group");

/// The bundled demo server (`mcp-group demo-server`).
pub fn demo_server() -> ServerConfig {
    ServerConfig::stdio(BIN, ["demo-server"])
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

/// Our fault-injecting streamable HTTP server (Python standard library only).
pub fn fault_server() -> ServerProcess {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fault_server.py");
    ServerProcess::start(
        "python3",
        &[script.to_str().expect("utf-8 path"), "{port}"],
        None,
    )
}

/// The bundled demo server in streamable HTTP mode (`demo-server --http`).
pub fn demo_http_server() -> ServerProcess {
    ServerProcess::start(BIN, &["demo-server", "--http", "127.0.0.1:{port}"], None)
}

/// The bundled demo server in streamable HTTP mode accepting only `era`
/// (`legacy`, `modern` or `both`).
pub fn demo_http_server_era(era: &str) -> ServerProcess {
    ServerProcess::start(
        BIN,
        &["demo-server", "--http", "127.0.0.1:{port}", "--era", era],
        None,
    )
}

/// The demo HTTP server on `port`.
pub fn demo_http_server_on(port: u16) -> ServerProcess {
    ServerProcess::start_on(
        port,
        BIN,
        &["demo-server", "--http", "127.0.0.1:{port}"],
        None,
    )
}

/// The demo HTTP server on `port`, accepting protocol era `era`
/// (`legacy`, `modern` or `both`).
pub fn demo_http_server_on_era(port: u16, era: &str) -> ServerProcess {
    ServerProcess::start_on(
        port,
        BIN,
        &["demo-server", "--http", "127.0.0.1:{port}", "--era", era],
        None,
    )
}
