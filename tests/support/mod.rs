//! Shared helpers for the integration tests: the third-party servers
//! installed by `cargo xtask fixtures` and the Python fixture scripts, as
//! configs or as server processes on free ports (the test kit's
//! [`ServerProcess`]). The CLI package's tests include this file too.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::time::Duration;

use mcp_group::{McpClientConfig, ServerConfig};
pub use mcp_group_test_kit::ServerProcess;
use mcp_group_test_kit::fixtures::{
    PYTHON, PYTHON_LEGACY, SERVER_EVERYTHING, fixture, workspace_root,
};

/// `@modelcontextprotocol/server-everything` over stdio.
pub fn server_everything() -> ServerConfig {
    let entry = fixture(&format!("{SERVER_EVERYTHING}/dist/index.js"));
    ServerConfig::stdio(
        "node",
        [entry.to_string_lossy().into_owned(), "stdio".to_owned()],
    )
}

/// A Python `mcp` (2.x) server script from `tests/fixtures`, run with the venv's python.
pub fn python_server(script: &str) -> ServerConfig {
    let python = fixture(PYTHON);
    let script = workspace_root().join("tests/fixtures").join(script);
    ServerConfig::stdio(
        python.to_string_lossy().into_owned(),
        [script.to_string_lossy().into_owned()],
    )
}

/// A config with short timeouts suited to tests.
pub fn config(server: ServerConfig) -> McpClientConfig {
    let mut config = McpClientConfig::new(server);
    config.tool_call_timeout = Duration::from_secs(30);
    config
}

/// `@modelcontextprotocol/server-everything` in `streamableHttp` or `sse` mode.
pub fn server_everything_http(mode: &str) -> ServerProcess {
    let dir = fixture(SERVER_EVERYTHING);
    ServerProcess::start("node", &["dist/index.js", mode], Some(&dir))
}

/// The Python streamable HTTP fixture.
pub fn python_http_server() -> ServerProcess {
    let script = workspace_root().join("tests/fixtures/py_http_server.py");
    ServerProcess::start(
        fixture(PYTHON),
        &[script.to_str().expect("utf-8 path"), "{port}"],
        None,
    )
}

/// The legacy-only Python `mcp` 1.x server (2025-11-25; it refuses
/// `server/discover`) over stdio.
pub fn python_legacy_server() -> ServerConfig {
    let python = fixture(PYTHON_LEGACY);
    let script = workspace_root().join("tests/fixtures/py_legacy_server.py");
    ServerConfig::stdio(
        python.to_string_lossy().into_owned(),
        [script.to_string_lossy().into_owned()],
    )
}

/// The legacy-only Python `mcp` 1.x server over streamable HTTP.
pub fn python_legacy_http_server() -> ServerProcess {
    let script = workspace_root().join("tests/fixtures/py_legacy_server.py");
    ServerProcess::start(
        fixture(PYTHON_LEGACY),
        &[script.to_str().expect("utf-8 path"), "{port}"],
        None,
    )
}
