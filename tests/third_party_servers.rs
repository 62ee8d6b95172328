//! The function group against MCP servers no one here wrote:
//! `@modelcontextprotocol/server-everything` (npm) and a server built with
//! Python's `mcp` package. Install them with `cargo xtask fixtures`.
#![allow(clippy::unwrap_used)]

mod support;

use mcp_group::{FunctionGroup, McpError, SessionId};
use serde_json::json;
use support::{config, python_server, server_everything};

#[tokio::test]
async fn server_everything_lists_its_tools_over_stdio() {
    let group = FunctionGroup::connect(config(server_everything()))
        .await
        .unwrap();
    let names: Vec<&str> = group.functions().map(|f| f.name()).collect();
    for expected in [
        "echo",
        "get-sum",
        "get-tiny-image",
        "get-structured-content",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert_eq!(
        group.function("echo").unwrap().descriptor().input_schema["required"],
        json!(["message"])
    );
    group.shutdown().await;
}

#[tokio::test]
async fn server_everything_echo_and_get_sum_give_exact_results() {
    let group = FunctionGroup::connect(config(server_everything()))
        .await
        .unwrap();
    let s = SessionId::new("alice");
    let echo = group
        .call(Some(&s), "echo", json!({"message": "hello, world"}))
        .await
        .unwrap();
    assert_eq!(echo.to_text(), "Echo: hello, world");
    let sum = group
        .call(Some(&s), "get-sum", json!({"a": 2, "b": 40}))
        .await
        .unwrap();
    assert_eq!(sum.to_text(), "The sum of 2 and 40 is 42.");
    group.shutdown().await;
}

#[tokio::test]
async fn server_everything_rejects_bad_arguments_with_a_typed_error() {
    let group = FunctionGroup::connect(config(server_everything()))
        .await
        .unwrap();
    let err = group
        .call(None, "get-sum", json!({"a": "two"}))
        .await
        .unwrap_err();
    // The server validates with zod; its complaint comes back typed, not as a panic.
    assert!(
        matches!(err, McpError::Protocol { .. } | McpError::ToolError { .. }),
        "{err:?}"
    );
    group.shutdown().await;
}

#[tokio::test]
async fn python_mcp_server_tool_is_called_over_stdio() {
    let group = FunctionGroup::connect(config(python_server("py_server.py")))
        .await
        .unwrap();
    let names: Vec<&str> = group.functions().map(|f| f.name()).collect();
    assert_eq!(names, ["greet", "multiply"]);
    let hello = group
        .call(Some(&SessionId::new("py")), "greet", json!({"name": "Ada"}))
        .await
        .unwrap();
    assert_eq!(hello.to_text(), "Hello, Ada!");
    let product = group
        .call(
            Some(&SessionId::new("py")),
            "multiply",
            json!({"a": 6, "b": 7}),
        )
        .await
        .unwrap();
    assert_eq!(product.to_text(), "42");
    group.shutdown().await;
}
