//! Shared helpers for the integration tests: the third-party servers
//! installed by `cargo xtask fixtures`, the Python fixture scripts, server
//! processes on free ports. The CLI package's tests include this file too.
#![allow(dead_code, unreachable_pub, missing_docs)]
#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use mcp_group::{McpClientConfig, ServerConfig};

/// The workspace's root folder (the one with `Cargo.lock`), whichever of its
/// packages includes this file.
pub fn workspace_root() -> PathBuf {
    let package = Path::new(env!("CARGO_MANIFEST_DIR"));
    package
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .unwrap_or(package)
        .to_path_buf()
}

/// Where `cargo xtask fixtures` installed the third-party servers: the
/// workspace's `target/fixtures`, or `MCP_GROUP_FIXTURES`.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("MCP_GROUP_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target").join("fixtures"))
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
    let script = workspace_root().join("tests/fixtures/py_http_server.py");
    ServerProcess::start(
        &python,
        &[script.to_str().expect("utf-8 path"), "{port}"],
        None,
    )
}
