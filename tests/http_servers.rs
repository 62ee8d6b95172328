//! The streamable HTTP transport against servers no one here wrote:
//! `@modelcontextprotocol/server-everything` in its streamable-HTTP mode and
//! a Python `mcp` 2.x server.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used)]

mod support;

use std::{collections::HashSet, sync::Arc};

use mcp_group::{
    FunctionGroup, McpClientConfig, ServerConfig, SessionId, SessionKey,
    core::DynTransport,
    http::{HttpConfig, StreamableHttpTransport},
};
use mcp_group_test_kit::Captured;
use serde_json::json;
use support::{config, python_http_server, server_everything_http};

fn http(url: String) -> McpClientConfig {
    config(ServerConfig::streamable_http(url))
}

#[tokio::test]
async fn server_everything_over_streamable_http_gives_exact_results() {
    let server = server_everything_http("streamableHttp");
    let group = FunctionGroup::connect(http(server.url("/mcp")))
        .await
        .unwrap();
    let functions = group.functions();
    assert!(functions.get("echo").is_some() && functions.get("get-sum").is_some());
    let s = SessionId::new("alice");
    let echo = group
        .call(Some(&s), "echo", json!({"message": "over http"}))
        .await
        .unwrap();
    assert_eq!(echo.to_text(), "Echo: over http");
    let sum = group
        .call(Some(&s), "get-sum", json!({"a": 20, "b": 22}))
        .await
        .unwrap();
    assert_eq!(sum.to_text(), "The sum of 20 and 22 is 42.");
    group.shutdown().await;
}

#[tokio::test]
async fn three_sessions_get_three_distinct_mcp_session_ids() {
    let server = python_http_server();
    // Protocol sessions (`Mcp-Session-Id`) are the 2025 era's.
    let mut config = http(server.url("/mcp"));
    config.protocol_version = Some("2025-11-25".into());
    let group = Arc::new(FunctionGroup::connect(config).await.unwrap());
    let mut tasks = Vec::new();
    for name in ["a", "b", "c"] {
        let group = group.clone();
        tasks.push(tokio::spawn(async move {
            let s = SessionId::new(name);
            let first = group
                .call(Some(&s), "session_id", json!({}))
                .await
                .unwrap()
                .to_text();
            let again = group
                .call(Some(&s), "session_id", json!({}))
                .await
                .unwrap()
                .to_text();
            assert_eq!(first, again, "a session keeps its Mcp-Session-Id");
            first
        }));
    }
    let mut ids = HashSet::new();
    for task in tasks {
        let id = task.await.unwrap();
        assert!(!id.is_empty());
        ids.insert(id);
    }
    assert_eq!(ids.len(), 3, "{ids:?}");
    let default = group
        .call(None, "session_id", json!({}))
        .await
        .unwrap()
        .to_text();
    assert!(!ids.contains(&default), "the default session has its own");
    group.shutdown().await;
}

#[tokio::test]
async fn against_a_modern_server_sessions_have_no_protocol_session_and_negotiate_once() {
    let server = python_http_server();
    let group = Arc::new(
        FunctionGroup::connect(http(server.url("/mcp")))
            .await
            .unwrap(),
    );
    for name in ["a", "b"] {
        let id = group
            .call(Some(&SessionId::new(name)), "session_id", json!({}))
            .await
            .unwrap()
            .to_text();
        assert_eq!(id, "", "2026-07-28 has no Mcp-Session-Id");
    }
    assert_eq!(group.era(), Some(mcp_group::core::Era::Modern));
    group.shutdown().await;
}

#[tokio::test]
async fn per_session_headers_reach_the_server_and_never_cross_sessions() {
    let server = python_http_server();
    let transport = StreamableHttpTransport::new(HttpConfig::new(server.url("/mcp")).unwrap())
        .unwrap()
        .with_header_provider(Arc::new(|session: &SessionKey| {
            vec![(
                "authorization".to_owned(),
                format!("Bearer token-of-{session}"),
            )]
        }));
    let transport: DynTransport = Arc::new(transport);
    let group = FunctionGroup::with_transport(transport, http(server.url("/mcp")))
        .await
        .unwrap();
    for name in ["alice", "bob", "alice", "bob"] {
        let seen = group
            .call(Some(&SessionId::new(name)), "auth_header", json!({}))
            .await
            .unwrap()
            .to_text();
        assert_eq!(seen, format!("Bearer token-of-{name}"));
    }
    group.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn secret_header_values_never_appear_in_logs() {
    let server = python_http_server();
    let (captured, _default) = Captured::install(tracing::Level::TRACE);
    let mut config = http(server.url("/mcp"));
    let ServerConfig::StreamableHttp(server_config) = &mut config.server else {
        panic!("an HTTP config");
    };
    server_config.custom_headers.insert(
        "Authorization".to_owned(),
        "Bearer sup3r-s3cret-value".to_owned(),
    );
    let group = FunctionGroup::connect(config).await.unwrap();
    // (`auth_header` would echo the secret back as a result: the
    // per-session test checks delivery; here every request carries it.)
    let hello = group
        .call(None, "greet", json!({"name": "logs"}))
        .await
        .unwrap()
        .to_text();
    assert_eq!(hello, "Hello, logs!");
    tracing::debug!(config = ?group.config(), "the group's config, as a user might log it");
    group.shutdown().await;
    let text = captured.text();
    // The config line proves capture works (other tests of this binary, run
    // in parallel without a subscriber, can make tracing skip some callsites).
    assert!(
        text.contains("the group's config") && text.contains("<redacted>"),
        "{text}"
    );
    let leaks: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("sup3r-s3cret-value"))
        .collect();
    assert!(
        leaks.is_empty(),
        "a secret leaked into the logs: {leaks:#?}"
    );
}

#[cfg(feature = "sse")]
#[tokio::test]
async fn server_everything_over_legacy_sse_gives_exact_results() {
    let server = server_everything_http("sse");
    let group = FunctionGroup::connect(config(ServerConfig::sse(server.url("/sse"))))
        .await
        .unwrap();
    assert!(group.functions().get("get-sum").is_some());
    let a = SessionId::new("a");
    let b = SessionId::new("b");
    let echo = group
        .call(Some(&a), "echo", json!({"message": "over sse"}))
        .await
        .unwrap();
    assert_eq!(echo.to_text(), "Echo: over sse");
    let sum = group
        .call(Some(&b), "get-sum", json!({"a": 40, "b": 2}))
        .await
        .unwrap();
    assert_eq!(sum.to_text(), "The sum of 40 and 2 is 42.");
    assert_eq!(
        group.stats().created,
        3,
        "default + two sessions, one stream each"
    );
    group.shutdown().await;
}

#[tokio::test]
async fn credentials_in_a_url_stay_out_of_debug_and_errors() {
    let port = mcp_group_test_kit::free_port();
    let url = format!("http://user:pa55word@127.0.0.1:{port}/mcp?api_key=k3y-secret");
    let mut config = McpClientConfig::new(ServerConfig::streamable_http(url));
    config.reconnect_enabled = false;
    let debug = format!("{config:?}");
    let err = FunctionGroup::connect(config).await.unwrap_err();
    let mut shown = format!("{debug}\n{err:?}");
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    while let Some(cause) = source {
        shown.push('\n');
        shown.push_str(&cause.to_string());
        source = cause.source();
    }
    assert!(
        !shown.contains("pa55word") && !shown.contains("k3y-secret"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("127.0.0.1:{port}")),
        "the host is still named: {shown}"
    );
}
