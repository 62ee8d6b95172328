//! Both protocol eras end to end against servers no one here wrote: Python
//! `mcp` 2.x (it answers `server/discover`: modern), a legacy-only Python
//! `mcp` 1.x (it refuses the probe: the client falls back to
//! `initialize`), and `@modelcontextprotocol/server-everything` (a 2025-era
//! server). Install them with `cargo xtask fixtures`.
#![allow(clippy::unwrap_used)]

mod support;

use mcp_group::{FunctionGroup, McpClientConfig, ServerConfig, SessionId, core::Era};
use serde_json::json;
use support::{
    config, python_http_server, python_legacy_http_server, python_legacy_server, python_server,
    server_everything, server_everything_http,
};

/// Calls `multiply` from three sessions and returns the group's era.
async fn multiply_from_three_sessions(config: McpClientConfig) -> Option<Era> {
    let group = FunctionGroup::connect(config).await.unwrap();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        let out = group
            .call(
                Some(&SessionId::new(name)),
                "multiply",
                json!({"a": 6, "b": i + 1}),
            )
            .await
            .unwrap();
        assert_eq!(out.to_text(), (6 * (i + 1)).to_string());
    }
    let era = group.era();
    group.shutdown().await;
    era
}

#[tokio::test]
async fn python_mcp_2_is_reached_in_the_modern_era_over_stdio() {
    let era = multiply_from_three_sessions(config(python_server("py_server.py"))).await;
    assert_eq!(era, Some(Era::Modern));
}

#[tokio::test]
async fn python_mcp_2_is_reached_in_the_modern_era_over_streamable_http() {
    let server = python_http_server();
    let group = FunctionGroup::connect(config(ServerConfig::streamable_http(server.url("/mcp"))))
        .await
        .unwrap();
    for name in ["a", "b", "c"] {
        let out = group
            .call(Some(&SessionId::new(name)), "greet", json!({"name": name}))
            .await
            .unwrap();
        assert_eq!(out.to_text(), format!("Hello, {name}!"));
    }
    assert_eq!(group.era(), Some(Era::Modern));
    group.shutdown().await;
}

#[tokio::test]
async fn a_legacy_only_python_server_is_reached_by_falling_back_over_stdio() {
    let era = multiply_from_three_sessions(config(python_legacy_server())).await;
    assert_eq!(era, Some(Era::Legacy));
}

#[tokio::test]
async fn a_legacy_only_python_server_is_reached_by_falling_back_over_streamable_http() {
    let server = python_legacy_http_server();
    let era =
        multiply_from_three_sessions(config(ServerConfig::streamable_http(server.url("/mcp"))))
            .await;
    assert_eq!(era, Some(Era::Legacy));
}

#[tokio::test]
async fn pinning_the_modern_era_against_a_legacy_only_server_is_a_handshake_error() {
    let mut config = config(python_legacy_server());
    config.protocol_version = Some("2026-07-28".into());
    let err = FunctionGroup::connect(config).await.unwrap_err();
    assert!(
        matches!(
            &err,
            mcp_group::Error::Mcp(mcp_group::core::Error::Handshake { .. })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn server_everything_is_a_legacy_peer_over_stdio_and_streamable_http() {
    for (server, _process) in [(server_everything(), None), {
        let process = server_everything_http("streamableHttp");
        (
            ServerConfig::streamable_http(process.url("/mcp")),
            Some(process),
        )
    }] {
        let group = FunctionGroup::connect(config(server)).await.unwrap();
        let s = SessionId::new("alice");
        let sum = group
            .call(Some(&s), "get-sum", json!({"a": 20, "b": 22}))
            .await
            .unwrap();
        assert_eq!(sum.to_text(), "The sum of 20 and 22 is 42.");
        assert_eq!(group.era(), Some(Era::Legacy));
        group.shutdown().await;
    }
}
