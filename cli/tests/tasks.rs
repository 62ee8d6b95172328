//! The function group follows the demo server's `background` task (the
//! `io.modelcontextprotocol/tasks` extension) to its result, over stdio and
//! streamable HTTP in the modern era.
#![allow(clippy::unwrap_used)]

mod support;

use mcp_group::{FunctionGroup, ServerConfig, SessionId};
use mcp_group_test_kit::{ServerProcess, logs::Captured};
use serde_json::json;
use support::{BIN, config};

/// Calls `background` in a session of `server` and returns its text and
/// what the call logged.
async fn background(server: ServerConfig) -> (String, String) {
    let (logs, _guard) = Captured::install(tracing::Level::DEBUG);
    let group = FunctionGroup::connect(config(server)).await.unwrap();
    let output = group
        .call(
            Some(&SessionId::new("alice")),
            "background",
            json!({"ms": 300, "message": "done"}),
        )
        .await
        .unwrap();
    group.shutdown().await;
    (output.to_text(), logs.text())
}

fn assert_followed_a_task(logs: &str) {
    assert!(
        logs.contains("the server runs the call as a task"),
        "the call was answered with a task: {logs}"
    );
    assert!(logs.contains("era=\"modern\""), "{logs}");
}

#[tokio::test]
async fn a_background_task_over_stdio_is_followed_to_its_result() {
    let (text, logs) =
        background(ServerConfig::stdio(BIN, ["demo-server", "--era", "modern"])).await;
    assert_eq!(text, "done");
    assert_followed_a_task(&logs);
}

#[tokio::test]
async fn a_background_task_over_streamable_http_is_followed_to_its_result() {
    let server = ServerProcess::start(
        BIN,
        &[
            "demo-server",
            "--http",
            "127.0.0.1:{port}",
            "--era",
            "modern",
        ],
        None,
    );
    let (text, logs) = background(ServerConfig::streamable_http(server.url("/mcp"))).await;
    assert_eq!(text, "done");
    assert_followed_a_task(&logs);
}
