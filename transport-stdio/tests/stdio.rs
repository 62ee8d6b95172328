//! The stdio transport's process handling: spawn errors, environment and
//! working directory, stderr forwarding, and no orphans — grandchildren
//! included — when a connection attempt is abandoned.
#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use mcp_group_core::{Error, SessionId, Transport};
use mcp_group_test_kit::{Captured, eventually, process_exists, wait_for, wait_gone};
use mcp_group_transport_stdio::{self as stdio, StdioConfig, StdioTransport};

/// How long a test waits for what a child process writes.
const PATIENCE: Duration = Duration::from_secs(5);

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-group-stdio-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits (bounded) until `path` has a whole line; the child writes it
/// asynchronously.
async fn read_when_written(path: &Path) -> String {
    wait_for(PATIENCE, || {
        std::fs::read_to_string(path)
            .ok()
            .filter(|text| text.ends_with('\n'))
    })
    .await
    .unwrap_or_else(|| panic!("{} was never written", path.display()))
}

/// A "server" that never answers `initialize` and leaves a grandchild running.
fn silent_server(dir: &Path) -> StdioConfig {
    let script = format!(
        "echo $$ > '{d}/pid'; sleep 600 & echo $! > '{d}/grandchild'; exec cat > /dev/null",
        d = dir.display()
    );
    StdioConfig::new("sh").arg("-c").arg(script)
}

#[tokio::test]
async fn an_abandoned_connect_kills_the_server_and_its_children() {
    let dir = scratch("abandon");
    let transport = StdioTransport::new(silent_server(&dir));
    let attempt = tokio::spawn(async move {
        transport
            .connect(&SessionId::new("s").into())
            .await
            .map(|_| ())
    });
    let pid: u32 = read_when_written(&dir.join("pid"))
        .await
        .trim()
        .parse()
        .unwrap();
    let grandchild: u32 = read_when_written(&dir.join("grandchild"))
        .await
        .trim()
        .parse()
        .unwrap();
    assert!(process_exists(pid) && process_exists(grandchild));
    attempt.abort();
    assert!(attempt.await.unwrap_err().is_cancelled());
    assert!(wait_gone(pid).await, "server {pid} killed and reaped");
    assert!(
        wait_gone(grandchild).await,
        "grandchild {grandchild} killed too"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error_naming_the_command() {
    let transport = StdioTransport::new(StdioConfig::new("/nonexistent/server").arg("--flag"));
    let err = transport
        .connect(&SessionId::new("s").into())
        .await
        .unwrap_err();
    let Error::Start { endpoint, source } = err else {
        panic!("expected a start error, got {err:?}");
    };
    assert_eq!(endpoint, "/nonexistent/server --flag");
    match source.downcast_ref::<mcp_group_transport_stdio::Error>() {
        Some(mcp_group_transport_stdio::Error::Spawn { command, source }) => {
            assert_eq!(command, "/nonexistent/server --flag");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected a spawn error as the source, got {other:?}"),
    }
}

#[tokio::test]
async fn a_server_that_exits_at_once_fails_the_handshake() {
    let transport = StdioTransport::new(StdioConfig::new("sh").arg("-c").arg("exit 7"));
    let err = transport
        .connect(&SessionId::new("s").into())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Handshake { .. }), "{err:?}");
}

#[tokio::test]
async fn env_and_cwd_reach_the_server() {
    let dir = scratch("env");
    let out = dir.join("seen");
    let script = format!(
        "echo \"$MCP_GROUP_TEST $(pwd)\" > '{}'; exec cat > /dev/null",
        out.display()
    );
    let config = StdioConfig::new("sh")
        .arg("-c")
        .arg(script)
        .env("MCP_GROUP_TEST", "hello")
        .cwd(&dir);
    let transport = StdioTransport::new(config);
    let attempt = tokio::spawn(async move {
        transport
            .connect(&SessionId::new("s").into())
            .await
            .map(|_| ())
    });
    let seen = read_when_written(&out).await;
    attempt.abort();
    let canonical = dir.canonicalize().unwrap();
    assert_eq!(seen.trim_end(), format!("hello {}", canonical.display()));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn server_stderr_is_forwarded_to_tracing() {
    let (captured, _default) = Captured::install(tracing::Level::INFO);
    let transport = StdioTransport::new(
        StdioConfig::new("sh")
            .arg("-c")
            .arg("echo 'warming up the flux capacitor' >&2; exec cat > /dev/null"),
    );
    // The current-thread runtime runs the forwarding task on this thread,
    // under the default subscriber set above.
    let attempt = tokio::spawn(async move {
        transport
            .connect(&SessionId::new("s").into())
            .await
            .map(|_| ())
    });
    eventually(PATIENCE, || captured.text().contains("flux capacitor")).await;
    attempt.abort();
    let text = captured.text();
    assert!(text.contains("warming up the flux capacitor"), "{text}");
    assert!(text.contains("mcp_group::server_stderr"), "{text}");
}

#[test]
fn command_lines_split_like_a_shell() {
    let config = StdioConfig::from_command_line("node 'my server.js' --port 3").unwrap();
    assert_eq!(config.command, "node");
    assert_eq!(config.args, ["my server.js", "--port", "3"]);
    assert_eq!(config.command_line(), "node 'my server.js' --port 3");
    assert!(matches!(
        StdioConfig::from_command_line("  "),
        Err(stdio::Error::EmptyCommandLine)
    ));
    assert!(matches!(
        StdioConfig::from_command_line("node 'unclosed"),
        Err(stdio::Error::UnparsableCommandLine { .. })
    ));
}

/// A minimal MCP server of the 2025 era in `sh`: it refuses
/// `server/discover` (so the client falls back), answers `initialize` and every
/// `tools/call` (with "still here"), and runs `on_message` (shell code)
/// before each answer.
fn sh_server(on_message: &str) -> StdioConfig {
    let script = format!(
        r#"while IFS= read -r line; do
  {on_message}
  id=$(printf '%s' "$line" | sed -n 's/^{{"jsonrpc":"2.0","id":\([0-9]*\),.*/\1/p')
  case "$line" in
    *'"method":"server/discover"'*) printf '{{"jsonrpc":"2.0","id":%s,"error":{{"code":-32601,"message":"Method not found"}}}}\n' "$id" ;;
    *'"method":"initialize"'*) printf '{{"jsonrpc":"2.0","id":%s,"result":{{"protocolVersion":"2025-11-25","capabilities":{{"tools":{{}}}},"serverInfo":{{"name":"sh","version":"0"}}}}}}\n' "$id" ;;
    *'"method":"tools/call"'*) printf '{{"jsonrpc":"2.0","id":%s,"result":{{"content":[{{"type":"text","text":"still here"}}]}}}}\n' "$id" ;;
  esac
done"#
    );
    StdioConfig::new("sh").arg("-c").arg(script)
}

#[tokio::test]
async fn invalid_utf8_on_stderr_does_not_kill_the_server() {
    // Every message makes the server write bytes that are not UTF-8 to
    // stderr; a closed stderr pipe would kill it (SIGPIPE).
    let transport = StdioTransport::new(sh_server(r"printf 'caf\351 \377\376\n' >&2"));
    let connection = transport
        .connect(&SessionId::new("s").into())
        .await
        .unwrap();
    for _ in 0..3 {
        let output = connection
            .call_tool("anything", serde_json::Map::new(), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(output.to_text(), "still here");
    }
    connection.close().await;
}

/// This process's peak resident set size since the last reset, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_50_mib_stderr_line_keeps_memory_bounded() {
    let (captured, _default) = Captured::install(tracing::Level::INFO);
    // 50 MiB without a newline, then a short line: the reader must cap the
    // first and still get to the second.
    let transport = StdioTransport::new(StdioConfig::new("sh").arg("-c").arg(
        "head -c 52428800 /dev/zero | tr '\\0' x >&2; printf '\\nafter the flood\\n' >&2; exec cat > /dev/null",
    ));
    // Reset the peak (Linux: "5" to clear_refs), then measure from here.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = peak_rss_kib();
    let attempt = tokio::spawn(async move {
        transport
            .connect(&SessionId::new("s").into())
            .await
            .map(|_| ())
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = captured.text();
        if text.contains("after the flood") {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reader never got past the long line"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    attempt.abort();
    let grown_kib = peak_rss_kib().saturating_sub(before);
    assert!(
        grown_kib < 16 * 1024,
        "peak memory grew by {grown_kib} KiB reading 50 MiB of stderr"
    );
    let longest = text.lines().map(str::len).max().unwrap();
    assert!(longest < 9 * 1024, "a log line of {longest} bytes");
    assert!(
        text.contains("the rest dropped"),
        "the cut is marked: {}",
        &text[..text.len().min(500)]
    );
}

/// The names of the environment variables a stdio server sees.
async fn server_env(config: StdioConfig) -> Vec<String> {
    let transport = StdioTransport::new(config);
    let connection = transport
        .connect(&SessionId::new("env").into())
        .await
        .unwrap();
    let output = connection
        .call_tool("env", Default::default(), Duration::from_secs(10))
        .await
        .unwrap();
    connection.close().await;
    output.to_text().lines().map(str::to_owned).collect()
}

fn env_server() -> StdioConfig {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/env_server.py");
    StdioConfig::new("python3").arg(script.display().to_string())
}

#[tokio::test]
async fn a_server_gets_a_short_allowlist_of_the_parent_environment_not_its_secrets() {
    // cargo runs tests with CARGO_MANIFEST_DIR (and more) in the environment:
    // a stand-in for the tokens a real parent holds.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let names = server_env(env_server().env("MCP_GROUP_PROBE", "set")).await;
    assert!(names.iter().any(|n| n == "PATH"), "{names:?}");
    assert!(
        names.iter().any(|n| n == "MCP_GROUP_PROBE"),
        "the config's own env: {names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("CARGO")),
        "the parent's other variables stay out: {names:?}"
    );
}

#[tokio::test]
async fn inherit_env_passes_the_whole_parent_environment() {
    let mut config = env_server();
    config.inherit_env = true;
    let names = server_env(config).await;
    assert!(names.iter().any(|n| n == "CARGO_MANIFEST_DIR"), "{names:?}");
}

#[tokio::test]
async fn secrets_stay_out_of_debug_descriptions_and_spawn_errors() {
    let config = StdioConfig::new("/nonexistent/server")
        .args([
            "--api-key",
            "sk-arg-1",
            "--token=sk-arg-2",
            "AUTH_TOKEN=sk-arg-3",
            "--verbose",
        ])
        .env("GITHUB_TOKEN", "sk-env-4");
    let debug = format!("{config:?}");
    let transport = StdioTransport::new(config);
    let description = format!("{:?}", transport.description());
    let err = transport
        .connect(&SessionId::new("s").into())
        .await
        .unwrap_err();
    let mut shown = format!("{debug}\n{description}\n{err:?}");
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    while let Some(cause) = source {
        shown.push('\n');
        shown.push_str(&cause.to_string());
        source = cause.source();
    }
    for secret in ["sk-arg-1", "sk-arg-2", "sk-arg-3", "sk-env-4"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(
        shown.contains("--verbose") && shown.contains("--api-key"),
        "{shown}"
    );
}
