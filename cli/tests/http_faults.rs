//! The streamable HTTP transport against our fault server: expired sessions,
//! dropped connections, servers that never answer, and answers that are not MCP.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    io::{Read, Write},
    time::Duration,
};

use mcp_group::core::Error as CoreError;
use mcp_group::{Error, FunctionGroup, McpClientConfig, ServerConfig, SessionId};
use mcp_group_test_kit::ServerProcess;
use serde_json::{Value, json};
use support::{config, fault_server};

fn http(url: String) -> McpClientConfig {
    let mut config = config(ServerConfig::streamable_http(url));
    config.reconnect_initial_backoff = Duration::from_millis(20);
    config.reconnect_max_backoff = Duration::from_millis(50);
    config
}

/// A plain HTTP/1.0 request to the fault server's admin endpoints.
fn admin(server: &ServerProcess, method: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

fn log(server: &ServerProcess) -> Vec<Value> {
    serde_json::from_str(&admin(server, "GET", "/admin/log")).unwrap()
}

#[tokio::test]
async fn an_expired_session_is_re_initialized_transparently() {
    let server = fault_server();
    let group = FunctionGroup::connect(http(server.url("/mcp")))
        .await
        .unwrap();
    let s = SessionId::new("s");
    assert_eq!(
        group
            .call(Some(&s), "echo", json!({"message": "one"}))
            .await
            .unwrap()
            .to_text(),
        "Echo: one"
    );
    admin(&server, "POST", "/admin/forget");
    // The server now answers 404 to the old Mcp-Session-Id: the client starts
    // a new MCP session and sends the request again, once.
    assert_eq!(
        group
            .call(Some(&s), "echo", json!({"message": "two"}))
            .await
            .unwrap()
            .to_text(),
        "Echo: two"
    );
    let initializes = log(&server)
        .iter()
        .filter(|e| e["rpc"] == "initialize")
        .count();
    assert_eq!(initializes, 3, "default + s + s's new session");
    let calls: Vec<Value> = log(&server)
        .into_iter()
        .filter(|e| e["rpc"] == "tools/call")
        .collect();
    assert_eq!(
        calls.len(),
        3,
        "one call, one refused by 404, one retried after re-initializing"
    );
    group.shutdown().await;
}

/// The fault server's log after a group served sessions `a` and `b` (one
/// call each) and shut down.
async fn two_sessions_then_shutdown() -> Vec<Value> {
    let server = fault_server();
    let group = FunctionGroup::connect(http(server.url("/mcp")))
        .await
        .unwrap();
    for name in ["a", "b"] {
        group
            .call(Some(&SessionId::new(name)), "echo", json!({}))
            .await
            .unwrap();
    }
    group.shutdown().await;
    log(&server)
}

#[tokio::test]
async fn a_graceful_close_deletes_every_mcp_session() {
    let entries = two_sessions_then_shutdown().await;
    let deletes = entries.iter().filter(|e| e["http"] == "DELETE").count();
    assert_eq!(deletes, 3, "default + a + b: {entries:#?}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = fault_server();
    let mut config = http(server.url("/mcp"));
    config.tool_call_timeout = Duration::from_millis(500);
    let group = FunctionGroup::connect(config).await.unwrap();
    let err = group
        .call(Some(&SessionId::new("s")), "hang", json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Mcp(CoreError::Timeout {
                operation: "tools/call",
                ..
            })
        ),
        "{err:?}"
    );
    // The abandoned request is cancelled on the wire.
    let mut cancelled = false;
    for _ in 0..100 {
        if log(&server)
            .iter()
            .any(|e| e["rpc"] == "notifications/cancelled")
        {
            cancelled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        cancelled,
        "notifications/cancelled was sent: {:#?}",
        log(&server)
    );
    // The session is still usable.
    let out = group
        .call(
            Some(&SessionId::new("s")),
            "echo",
            json!({"message": "after"}),
        )
        .await
        .unwrap();
    assert_eq!(out.to_text(), "Echo: after");
    group.shutdown().await;
}

#[tokio::test]
async fn a_connection_closed_mid_call_is_a_typed_error_and_the_session_recovers() {
    let server = fault_server();
    let group = FunctionGroup::connect(http(server.url("/mcp")))
        .await
        .unwrap();
    let s = SessionId::new("s");
    let err = group.call(Some(&s), "drop", json!({})).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Mcp(
                CoreError::ServerGone { .. }
                    | CoreError::UnexpectedResponse
                    | CoreError::Protocol { .. }
            )
        ),
        "{err:?}"
    );
    // Never re-sent: the drop tool was called exactly once.
    let drops = log(&server)
        .iter()
        .filter(|e| e["rpc"] == "tools/call")
        .count();
    assert_eq!(drops, 1);
    let out = group
        .call(Some(&s), "echo", json!({"message": "back"}))
        .await
        .unwrap();
    assert_eq!(out.to_text(), "Echo: back");
    group.shutdown().await;
}

#[tokio::test]
async fn answers_that_are_not_mcp_are_typed_errors() {
    let server = fault_server();
    for path in ["/mcp-500", "/mcp-html", "/mcp-garbage"] {
        let mut config = http(server.url(path));
        config.reconnect_enabled = false;
        let err = FunctionGroup::connect(config).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Mcp(CoreError::Connect { .. } | CoreError::Handshake { .. })
            ),
            "{path}: {err:?}"
        );
    }
}

#[tokio::test]
async fn per_user_sessions_open_no_standalone_get_stream() {
    let entries = two_sessions_then_shutdown().await;
    let user_sessions: Vec<&Value> = entries
        .iter()
        .filter(|e| e["rpc"] == "tools/call")
        .map(|e| &e["session"])
        .collect();
    assert_eq!(user_sessions.len(), 2, "{entries:#?}");
    let gets_of_user_sessions = entries
        .iter()
        .filter(|e| e["http"] == "GET" && user_sessions.contains(&&e["session"]))
        .count();
    assert_eq!(
        gets_of_user_sessions, 0,
        "only the default session may hold a standalone stream: {entries:#?}"
    );
}

#[tokio::test]
async fn a_client_is_never_left_permanently_dead() {
    let server = support::demo_http_server();
    let port = server.port();
    let mut config = http(server.url("/mcp"));
    config.reconnect_max_attempts = 2;
    let group = FunctionGroup::connect(config).await.unwrap();
    let s = SessionId::new("s");
    group
        .call(Some(&s), "echo", json!({"message": "up"}))
        .await
        .unwrap();

    drop(server); // killed and reaped
    for _ in 0..2 {
        // Retries exhausted, every time: a typed error, not a hang.
        let err = group
            .call(Some(&s), "echo", json!({"message": "down"}))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Mcp(
                    CoreError::Connect { .. }
                        | CoreError::ServerGone { .. }
                        | CoreError::Handshake { .. }
                )
            ),
            "{err:?}"
        );
    }

    let _server = support::demo_http_server_on(port);
    let out = group
        .call(Some(&s), "echo", json!({"message": "back"}))
        .await
        .unwrap();
    assert_eq!(out.to_text(), "Echo: back", "the session works again");
    group.shutdown().await;
}
