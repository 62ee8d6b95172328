//! The function group against MCP servers no one here wrote:
//! `@modelcontextprotocol/server-everything` (npm) and a server built with
//! Python's `mcp` package. Install them with `cargo xtask fixtures`.
#![allow(clippy::unwrap_used)]

mod support;

use mcp_group::{Error, FunctionGroup, SessionId, ToolOverride};
use serde_json::json;
use support::{config, python_server, server_everything};

#[tokio::test]
async fn server_everything_lists_its_tools_over_stdio() {
    let group = FunctionGroup::connect(config(server_everything()))
        .await
        .unwrap();
    let functions = group.functions();
    let names: Vec<&str> = functions.iter().map(|f| f.name()).collect();
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
async fn server_everything_bad_arguments_are_rejected_locally_naming_the_field() {
    let group = FunctionGroup::connect(config(server_everything()))
        .await
        .unwrap();
    let wrong_type = group
        .call(None, "get-sum", json!({"a": "two", "b": 2}))
        .await
        .unwrap_err();
    assert!(
        matches!(&wrong_type, Error::InvalidArguments { tool, field: Some(f), .. } if tool == "get-sum" && f == "a"),
        "{wrong_type:?}"
    );
    let missing = group.call(None, "echo", json!({})).await.unwrap_err();
    assert!(
        matches!(&missing, Error::InvalidArguments { field: Some(f), .. } if f == "message"),
        "{missing:?}"
    );
    assert!(missing.to_string().contains("message"), "{missing}");
    group.shutdown().await;
}

#[tokio::test]
async fn server_everything_alias_and_description_overrides_apply() {
    let mut config = config(server_everything());
    config.tool_overrides.insert(
        "get-sum".into(),
        ToolOverride {
            alias: Some("add_numbers".into()),
            description: Some("Add two numbers".into()),
        },
    );
    config.tool_overrides.insert(
        "no-such-tool".into(),
        ToolOverride {
            alias: Some("x".into()),
            description: None,
        },
    );
    let group = FunctionGroup::connect(config).await.unwrap();
    let add = group.function("add_numbers").expect("aliased tool listed");
    assert_eq!(add.original_name(), "get-sum");
    assert_eq!(add.description(), Some("Add two numbers"));
    assert!(group.function("get-sum").is_none());
    assert_eq!(group.unknown_overrides(), ["no-such-tool"]);
    let sum = group
        .call(None, "add_numbers", json!({"a": 1, "b": 2}))
        .await
        .unwrap();
    assert_eq!(sum.to_text(), "The sum of 1 and 2 is 3.");
    group.shutdown().await;
}

#[tokio::test]
async fn server_everything_image_results_keep_the_image() {
    let group = FunctionGroup::connect(config(server_everything()))
        .await
        .unwrap();
    let out = group.call(None, "get-tiny-image", json!({})).await.unwrap();
    let image = out
        .content()
        .iter()
        .find_map(|c| c.as_image())
        .expect("an image block");
    assert_eq!(image.mime_type, "image/png");
    assert!(!image.data.is_empty());
    assert!(out.to_text().contains("MCP logo"), "{}", out.to_text());
    group.shutdown().await;
}

#[tokio::test]
async fn server_everything_tool_failure_is_a_typed_tool_error() {
    let group = FunctionGroup::connect(config(server_everything()))
        .await
        .unwrap();
    // Nothing listens on port 1 of the loopback: the server's fetch fails.
    let err = group
        .call(
            None,
            "gzip-file-as-resource",
            json!({"name": "x.gz", "data": "http://127.0.0.1:1/x"}),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ToolError { tool, message } if tool == "gzip-file-as-resource" && message.contains("fetch failed")),
        "{err:?}"
    );
    group.shutdown().await;
}

#[tokio::test]
async fn python_mcp_server_tool_is_called_over_stdio() {
    let group = FunctionGroup::connect(config(python_server("py_server.py")))
        .await
        .unwrap();
    let functions = group.functions();
    let names: Vec<&str> = functions.iter().map(|f| f.name()).collect();
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
