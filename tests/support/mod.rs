//! Shared helpers for the integration tests.
#![allow(dead_code, unreachable_pub, missing_docs)]
#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use mcp_group::{McpClientConfig, ServerConfig};

pub mod soak;

/// Where `cargo xtask fixtures` installed the third-party servers.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("MCP_GROUP_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target")
                .join("fixtures")
        })
}

fn require(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask fixtures` (or the whole suite with `cargo xtask test`)",
        path.display()
    );
    path
}

/// `@modelcontextprotocol/server-everything` over stdio.
pub fn server_everything() -> ServerConfig {
    let entry = require(
        fixtures_dir()
            .join("npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
    );
    ServerConfig::stdio(
        "node",
        [entry.to_string_lossy().into_owned(), "stdio".to_owned()],
    )
}

/// A Python `mcp` (2.x) server script from `tests/fixtures`, run with the venv's python.
pub fn python_server(script: &str) -> ServerConfig {
    let python = require(fixtures_dir().join("venv/bin/python"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(script);
    ServerConfig::stdio(
        python.to_string_lossy().into_owned(),
        [script.to_string_lossy().into_owned()],
    )
}

/// The bundled demo server (`mcp-group demo-server`).
pub fn demo_server() -> ServerConfig {
    ServerConfig::stdio(env!("CARGO_BIN_EXE_mcp-group"), ["demo-server"])
}

/// A config with short timeouts suited to tests.
pub fn config(server: ServerConfig) -> McpClientConfig {
    let mut config = McpClientConfig::new(server);
    config.tool_call_timeout = Duration::from_secs(30);
    config
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

/// A server process on a free loopback port, killed (and reaped) on drop.
pub struct ServerProcess {
    child: std::process::Child,
    pub port: u16,
}

impl ServerProcess {
    /// Starts `command` with `PORT` set (and `{port}` in its arguments
    /// replaced), then waits (bounded) until the port accepts connections.
    pub fn start(program: &Path, args: &[&str], cwd: Option<&Path>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Self::start_on(port, program, args, cwd)
    }

    /// Like [`ServerProcess::start`], on a given port (to restart a server
    /// where its clients expect it).
    pub fn start_on(port: u16, program: &Path, args: &[&str], cwd: Option<&Path>) -> Self {
        let mut command = std::process::Command::new(program);
        command
            .args(args.iter().map(|a| a.replace("{port}", &port.to_string())))
            .env("PORT", port.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let child = command.spawn().expect("the server starts");
        let server = Self { child, port };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "{program:?} never listened on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `@modelcontextprotocol/server-everything` in `streamableHttp` or `sse` mode.
pub fn server_everything_http(mode: &str) -> ServerProcess {
    let dir =
        require(fixtures_dir().join("npm/node_modules/@modelcontextprotocol/server-everything"));
    ServerProcess::start(Path::new("node"), &["dist/index.js", mode], Some(&dir))
}

/// The Python streamable HTTP fixture.
pub fn python_http_server() -> ServerProcess {
    let python = require(fixtures_dir().join("venv/bin/python"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/py_http_server.py");
    ServerProcess::start(
        &python,
        &[script.to_str().expect("utf-8 path"), "{port}"],
        None,
    )
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
#[cfg(feature = "cli")]
pub fn demo_http_server() -> ServerProcess {
    ServerProcess::start(
        Path::new(env!("CARGO_BIN_EXE_mcp-group")),
        &["demo-server", "--http", "127.0.0.1:{port}"],
        None,
    )
}

/// The demo HTTP server on `port`.
#[cfg(feature = "cli")]
pub fn demo_http_server_on(port: u16) -> ServerProcess {
    ServerProcess::start_on(
        port,
        Path::new(env!("CARGO_BIN_EXE_mcp-group")),
        &["demo-server", "--http", "127.0.0.1:{port}"],
        None,
    )
}
