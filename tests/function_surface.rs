//! The function surface against an in-memory server of ours that records
//! every `tools/call` it receives and sends whatever schemas a test wants.
#![allow(clippy::unwrap_used)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use mcp_group::{
    Error, FunctionGroup, McpClientConfig, ServerConfig, SessionId, core::DynTransport,
};
use mcp_group_test_kit::InMemoryTransport;
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
        PaginatedRequestParams, ServerCapabilities, ServerConfig as RmcpServerConfig, Tool,
    },
    service::RequestContext,
};
use serde_json::{Value, json};

/// What the server saw and what it serves.
#[derive(Default)]
struct State {
    calls: Vec<(String, Value)>,
    extra_tool: bool,
}

#[derive(Clone)]
struct Recorder(Arc<Mutex<State>>);

fn tool(name: &str, description: &str, schema: Value) -> Tool {
    Tool::new(
        name.to_owned(),
        description.to_owned(),
        Arc::new(schema.as_object().cloned().unwrap()),
    )
}

impl Recorder {
    fn tools(&self) -> Vec<Tool> {
        let mut tools = vec![
            tool(
                "echo",
                "Echo a message",
                json!({"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}),
            ),
            tool(
                "levels",
                "Integer enum, $defs and $ref",
                json!({"type": "object", "$defs": {"l": {"type": "integer", "enum": [1, 2, 3]}},
                       "properties": {"level": {"$ref": "#/$defs/l"}, "note": {"type": ["string", "null"]}},
                       "required": ["level", "note"]}),
            ),
            tool(
                "broken_schema",
                "Its schema does not compile",
                json!({"type": "object", "properties": {"x": {"type": 17}}}),
            ),
            tool(
                "bad/name",
                "A name no function-calling API accepts",
                json!({"type": "object"}),
            ),
            tool(
                "grow",
                "Adds a tool and announces it",
                json!({"type": "object"}),
            ),
            tool(
                "image",
                "Returns an image and structured content",
                json!({"type": "object"}),
            ),
        ];
        if self.0.lock().unwrap().extra_tool {
            tools.push(tool(
                "extra",
                "Appears after grow",
                json!({"type": "object"}),
            ));
        }
        tools
    }
}

impl ServerHandler for Recorder {
    fn get_info(&self) -> RmcpServerConfig {
        RmcpServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        // Two pages, to prove the group follows `nextCursor`.
        let tools = self.tools();
        let (page, next) = match request.and_then(|r| r.cursor) {
            None => (tools[..2].to_vec(), Some("page-2".to_owned())),
            Some(_) => (tools[2..].to_vec(), None),
        };
        let mut result = ListToolsResult::with_all_items(page);
        result.next_cursor = next;
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = Value::Object(request.arguments.clone().unwrap_or_default());
        self.0
            .lock()
            .unwrap()
            .calls
            .push((request.name.to_string(), arguments.clone()));
        let result = match &*request.name {
            "grow" => {
                self.0.lock().unwrap().extra_tool = true;
                let _ = context.peer.notify_tool_list_changed().await;
                CallToolResult::success(vec![ContentBlock::text("grown")])
            }
            "image" => {
                let mut result = CallToolResult::success(vec![
                    ContentBlock::text("a picture"),
                    ContentBlock::image("iVBORw0KGgo=", "image/png"),
                ]);
                result.structured_content = Some(json!({"width": 1}));
                result
            }
            _ => CallToolResult::success(vec![ContentBlock::text(arguments.to_string())]),
        };
        Ok(result.into())
    }
}

async fn group_with(
    configure: impl FnOnce(&mut McpClientConfig),
) -> (FunctionGroup, Arc<Mutex<State>>) {
    let state = Arc::new(Mutex::new(State::default()));
    let transport: DynTransport = Arc::new(InMemoryTransport::new(Recorder(state.clone())));
    let mut config = McpClientConfig::new(ServerConfig::stdio("unused", Vec::<String>::new()));
    config.tool_call_timeout = Duration::from_secs(10);
    configure(&mut config);
    (
        FunctionGroup::with_transport(transport, config)
            .await
            .unwrap(),
        state,
    )
}

fn calls(state: &Arc<Mutex<State>>) -> usize {
    state.lock().unwrap().calls.len()
}

#[tokio::test]
async fn every_page_is_listed_and_one_bad_name_or_schema_fails_nothing() {
    let (group, _) = group_with(|_| {}).await;
    let functions = group.functions();
    let names: Vec<&str> = functions.iter().map(|f| f.name()).collect();
    assert_eq!(names, ["broken_schema", "echo", "grow", "image", "levels"]);
    assert_eq!(functions.unusable()[0].original_name, "bad/name");
    assert!(
        !functions.validates_arguments("broken_schema"),
        "listed, not validated"
    );
    assert!(functions.validates_arguments("levels"));
    group.shutdown().await;
}

#[tokio::test]
async fn bad_arguments_are_rejected_locally_and_nothing_is_sent() {
    let (group, state) = group_with(|_| {}).await;
    let wrong_type = group
        .call(None, "echo", json!({"message": 5}))
        .await
        .unwrap_err();
    assert!(
        matches!(&wrong_type, Error::InvalidArguments { field: Some(f), .. } if f == "message"),
        "{wrong_type:?}"
    );
    let missing = group.call(None, "echo", json!({})).await.unwrap_err();
    assert!(
        matches!(&missing, Error::InvalidArguments { field: Some(f), reason, .. } if f == "message" && reason.contains("required")),
        "{missing:?}"
    );
    let enum_miss = group
        .call(None, "levels", json!({"level": 7, "note": "x"}))
        .await
        .unwrap_err();
    assert!(
        matches!(&enum_miss, Error::InvalidArguments { field: Some(f), .. } if f == "level"),
        "{enum_miss:?}"
    );
    assert_eq!(calls(&state), 0, "no request reached the server");

    group
        .call(None, "echo", json!({"message": "ok"}))
        .await
        .unwrap();
    assert_eq!(calls(&state), 1);
    group.shutdown().await;
}

#[tokio::test]
async fn a_tool_whose_schema_does_not_compile_is_still_callable() {
    let (group, state) = group_with(|_| {}).await;
    let out = group
        .call(None, "broken_schema", json!({"x": "anything"}))
        .await
        .unwrap();
    assert_eq!(out.to_text(), r#"{"x":"anything"}"#);
    assert_eq!(calls(&state), 1);
    group.shutdown().await;
}

#[tokio::test]
async fn nulls_reach_the_server_only_where_the_schema_allows_them() {
    let (group, state) = group_with(|_| {}).await;
    group
        .call(None, "levels", json!({"level": 2, "note": null}))
        .await
        .unwrap();
    let (_, sent) = state.lock().unwrap().calls[0].clone();
    assert_eq!(
        sent,
        json!({"level": 2, "note": null}),
        "a nullable required field arrives as null"
    );
    group
        .call(None, "echo", json!({"message": "m", "extra": null}))
        .await
        .unwrap();
    group.shutdown().await;
}

#[tokio::test]
async fn an_aliased_unusable_name_becomes_callable() {
    let (group, state) = group_with(|c| {
        c.tool_overrides.insert(
            "bad/name".into(),
            mcp_group::ToolOverride {
                alias: Some("good_name".into()),
                description: None,
            },
        );
    })
    .await;
    group.call(None, "good_name", json!({})).await.unwrap();
    assert_eq!(
        state.lock().unwrap().calls[0].0,
        "bad/name",
        "the server's name went on the wire"
    );
    group.shutdown().await;
}

#[tokio::test]
async fn results_keep_every_content_block() {
    let (group, _) = group_with(|_| {}).await;
    let out = group.call(None, "image", json!({})).await.unwrap();
    assert_eq!(out.to_text(), "a picture");
    assert_eq!(out.content().len(), 2);
    let image = out.content()[1].as_image().expect("the image is kept");
    assert_eq!(image.mime_type, "image/png");
    assert_eq!(out.structured_content(), Some(&json!({"width": 1})));
    group.shutdown().await;
}

#[tokio::test]
async fn a_tool_list_change_refreshes_the_functions_and_notifies_subscribers() {
    let (group, _) = group_with(|c| c.name_prefix = Some("rec_".into())).await;
    assert!(group.function("rec_extra").is_none());
    let mut changes = group.subscribe();
    group.call(None, "rec_grow", json!({})).await.unwrap();
    let changed = tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .expect("a refresh within 10 s")
        .unwrap();
    assert!(
        changed.functions.get("rec_extra").is_some(),
        "overrides re-applied"
    );
    assert!(group.function("rec_extra").is_some());
    group
        .call(Some(&SessionId::new("other")), "rec_extra", json!({}))
        .await
        .unwrap();
    group.shutdown().await;
}

#[tokio::test]
async fn a_function_handle_describes_and_calls_its_tool() {
    let (group, state) = group_with(|_| {}).await;
    let echo = group.get("echo").expect("echo is exposed");
    assert_eq!(echo.tool().name(), "echo");
    assert_eq!(echo.input_schema()["required"], json!(["message"]));
    assert!(echo.output_schema().is_none());
    let out = echo
        .call(Some(&SessionId::new("s")), json!({"message": "hi"}))
        .await
        .unwrap();
    assert_eq!(out.to_text(), r#"{"message":"hi"}"#);
    assert_eq!(calls(&state), 1);
    assert!(group.get("missing").is_none());
    group.shutdown().await;
}

#[tokio::test]
async fn a_caller_id_named_default_is_its_own_session_not_the_shared_one() {
    let (group, _) = group_with(|_| {}).await;
    assert_eq!(group.session_count(), 1, "the base session");
    let caller = SessionId::try_new("default").unwrap();
    group
        .call(Some(&caller), "echo", json!({"message": "hi"}))
        .await
        .unwrap();
    assert_eq!(group.session_count(), 2, "a session of its own");
    let base = group.peek_session(&SessionId::default_session()).unwrap();
    let named = group.peek_session(&caller).unwrap();
    assert_ne!(base.connection_id, named.connection_id);
    group.shutdown().await;
}

#[tokio::test]
async fn an_invalid_session_id_from_input_is_the_facades_typed_error() {
    let err: Error = SessionId::try_new("").unwrap_err().into();
    assert!(matches!(err, Error::InvalidSessionId { .. }), "{err:?}");
    let err: Error = SessionId::try_new("x".repeat(257)).unwrap_err().into();
    assert!(matches!(err, Error::InvalidSessionId { .. }), "{err:?}");
}
