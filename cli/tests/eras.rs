//! The bundled demo server in each protocol era (`demo-server --era
//! legacy|modern|both`), and the Python fixture servers of each era, against
//! a bare rmcp client that picks its lifecycle: `Initialize` (2025-11-25),
//! `Discover` (2026-07-28) or `Auto` (discover, fall back to `initialize`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{process::Stdio, time::Duration};

use mcp_group_test_kit::{
    ServerProcess,
    fixtures::{PYTHON, PYTHON_LEGACY, fixture, workspace_root},
};
use rmcp::{
    ClientHandler, ErrorData, RoleClient,
    model::{
        CallToolRequestParams, CallToolResponse, ClientCapabilities, ClientConfig,
        ElicitRequestParams, ElicitResult, ElicitationAction, GetTaskParams, Implementation,
        ProtocolVersion, TaskPayload,
    },
    service::{ClientLifecycleMode, ClientServiceExt, RequestContext, RunningService},
    transport::StreamableHttpClientTransport,
};
use serde_json::json;
use support::BIN;
use tokio::process::{Child, Command};

/// A client that declares elicitation and tasks and answers every
/// elicitation with `{"answer": "42"}`.
#[derive(Debug, Clone, Default)]
struct Answerer;

impl ClientHandler for Answerer {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder()
                .enable_elicitation()
                .enable_tasks()
                .build(),
            Implementation::new("eras-test", "0.0.0"),
        )
    }

    async fn create_elicitation(
        &self,
        _request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(json!({"answer": "42"})))
    }
}

type Client = RunningService<RoleClient, Answerer>;

fn initialize() -> ClientLifecycleMode {
    ClientLifecycleMode::Initialize
}

fn discover() -> ClientLifecycleMode {
    ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    }
}

fn auto() -> ClientLifecycleMode {
    ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: Some(ProtocolVersion::V_2025_11_25),
    }
}

/// A stdio server process (killed on drop) and a client connected to it in
/// `mode`, or the handshake's error.
async fn over_stdio(
    program: impl AsRef<std::ffi::OsStr>,
    args: &[&str],
    mode: ClientLifecycleMode,
) -> (Child, Result<Client, String>) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the server starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let stdin = child.stdin.take().expect("piped stdin");
    let client = tokio::time::timeout(
        Duration::from_secs(20),
        Answerer.serve_with_lifecycle((stdout, stdin), mode),
    )
    .await
    .expect("the handshake ends in time")
    .map_err(|e| e.to_string());
    (child, client)
}

/// The bundled demo server over stdio in `era`.
async fn demo_stdio(era: &str, mode: ClientLifecycleMode) -> (Child, Result<Client, String>) {
    over_stdio(BIN, &["demo-server", "--era", era], mode).await
}

/// The bundled demo server over streamable HTTP in `era`.
fn demo_http(era: &str) -> ServerProcess {
    ServerProcess::start(
        BIN,
        &["demo-server", "--http", "127.0.0.1:{port}", "--era", era],
        None,
    )
}

/// A client connected to `url` over streamable HTTP in `mode`.
async fn over_http(url: String, mode: ClientLifecycleMode) -> Result<Client, String> {
    tokio::time::timeout(
        Duration::from_secs(20),
        Answerer.serve_with_lifecycle(StreamableHttpClientTransport::from_uri(url), mode),
    )
    .await
    .expect("the handshake ends in time")
    .map_err(|e| e.to_string())
}

/// The protocol version the client ended up speaking.
fn negotiated(client: &Client) -> String {
    client
        .peer()
        .peer_info()
        .map(|info| info.protocol_version.to_string())
        .unwrap_or_default()
}

async fn echo(client: &Client) -> String {
    let result = client
        .call_tool(
            CallToolRequestParams::new("echo")
                .with_arguments(json!({"message": "hi"}).as_object().cloned().unwrap()),
        )
        .await
        .unwrap();
    text(&result)
}

fn text(result: &rmcp::model::CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect()
}

#[tokio::test]
async fn a_modern_only_demo_server_refuses_initialize() {
    let (_child, client) = demo_stdio("modern", initialize()).await;
    let Err(error) = client else {
        panic!("initialize is refused")
    };
    assert!(error.contains("nsupported protocol version"), "{error}");

    let server = demo_http("modern");
    let Err(error) = over_http(server.url("/mcp"), initialize()).await else {
        panic!("initialize is refused over HTTP too")
    };
    assert!(!error.is_empty());
}

#[tokio::test]
async fn a_legacy_only_demo_server_refuses_discover_as_a_2025_server_does() {
    let (_child, client) = demo_stdio("legacy", discover()).await;
    let Err(error) = client else {
        panic!("discover is refused")
    };
    assert!(
        error.contains("-32601") || error.contains("ethod not found"),
        "{error}"
    );

    let server = demo_http("legacy");
    let Err(error) = over_http(server.url("/mcp"), discover()).await else {
        panic!("discover is refused over HTTP too")
    };
    assert!(!error.is_empty());
}

#[tokio::test]
async fn auto_connects_to_every_era_over_stdio_and_speaks_the_newest_it_accepts() {
    for (era, version) in [
        ("legacy", "2025-11-25"),
        ("modern", "2026-07-28"),
        ("both", "2026-07-28"),
    ] {
        let (_child, client) = demo_stdio(era, auto()).await;
        let client = client.unwrap_or_else(|e| panic!("{era}: {e}"));
        assert_eq!(negotiated(&client), version, "{era}");
        assert_eq!(echo(&client).await, "Echo: hi", "{era}");
        client.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn auto_connects_to_every_era_over_streamable_http() {
    for (era, version) in [
        ("legacy", "2025-11-25"),
        ("modern", "2026-07-28"),
        ("both", "2026-07-28"),
    ] {
        let server = demo_http(era);
        let client = over_http(server.url("/mcp"), auto())
            .await
            .unwrap_or_else(|e| panic!("{era}: {e}"));
        assert_eq!(negotiated(&client), version, "{era}");
        assert_eq!(echo(&client).await, "Echo: hi", "{era}");
        client.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn both_eras_of_one_demo_server_take_either_handshake() {
    let (_child, client) = demo_stdio("both", initialize()).await;
    assert_eq!(negotiated(&client.unwrap()), "2025-11-25");
    let (_child, client) = demo_stdio("both", discover()).await;
    assert_eq!(negotiated(&client.unwrap()), "2026-07-28");
}

async fn ask(client: &Client) -> String {
    let result = client
        .call_tool(
            CallToolRequestParams::new("ask").with_arguments(
                json!({"question": "The answer?"})
                    .as_object()
                    .cloned()
                    .unwrap(),
            ),
        )
        .await
        .unwrap();
    text(&result)
}

#[tokio::test]
async fn ask_is_answered_through_mrtr_in_the_modern_era_and_by_elicitation_in_the_legacy_one() {
    let (_child, modern) = demo_stdio("both", discover()).await;
    let modern = modern.unwrap();
    // Without the client's answer the tool asks: input_required, with the
    // elicitation and an opaque state.
    let first = modern
        .peer()
        .call_tool_once(CallToolRequestParams::new("ask"))
        .await
        .unwrap();
    let CallToolResponse::InputRequired(first) = first else {
        panic!("expected input_required, got {first:?}");
    };
    assert!(first.request_state.is_some());
    assert_eq!(first.input_requests.map(|r| r.len()), Some(1));
    // rmcp's call_tool answers it through the handler and retries.
    assert_eq!(ask(&modern).await, "You answered: 42");

    let (_child, legacy) = demo_stdio("both", initialize()).await;
    assert_eq!(ask(&legacy.unwrap()).await, "You answered: 42");

    let server = demo_http("both");
    let modern_http = over_http(server.url("/mcp"), discover()).await.unwrap();
    assert_eq!(ask(&modern_http).await, "You answered: 42");
    let legacy_http = over_http(server.url("/mcp"), initialize()).await.unwrap();
    assert_eq!(ask(&legacy_http).await, "You answered: 42");
}

/// Calls `background` and follows its task with `tasks/get` to the end.
async fn background_task(client: &Client) -> String {
    let response = client
        .peer()
        .call_tool_once(
            CallToolRequestParams::new("background").with_arguments(
                json!({"ms": 50, "message": "done"})
                    .as_object()
                    .cloned()
                    .unwrap(),
            ),
        )
        .await
        .unwrap();
    let CallToolResponse::Task(created) = response else {
        panic!("expected a task, got {response:?}");
    };
    let id = created.task.task_id;
    let poll = Duration::from_millis(created.task.poll_interval_ms.unwrap_or(25));
    let finished = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let task = client
                .peer()
                .get_task(GetTaskParams::new(id.clone()))
                .await
                .unwrap();
            if task.task.status().is_terminal() {
                return task.task.payload;
            }
            // The protocol's own polling interval: the task runs on the server.
            tokio::time::sleep(poll).await;
        }
    })
    .await
    .expect("the task ends");
    let TaskPayload::Completed { result } = finished else {
        panic!("expected a completed task, got {finished:?}");
    };
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn background_answers_with_a_task_that_tasks_get_follows_to_its_result() {
    let (_child, client) = demo_stdio("modern", discover()).await;
    assert_eq!(background_task(&client.unwrap()).await, "done");

    // Over HTTP each modern request has a server instance of its own: the
    // task outlives the one that created it.
    let server = demo_http("modern");
    let client = over_http(server.url("/mcp"), discover()).await.unwrap();
    assert_eq!(background_task(&client).await, "done");
}

#[tokio::test]
async fn an_unknown_task_is_an_error() {
    let (_child, client) = demo_stdio("modern", discover()).await;
    let result = client
        .unwrap()
        .peer()
        .get_task(GetTaskParams::new("task-that-never-was"))
        .await;
    assert!(result.is_err());
}

// The Python fixture servers (installed by `cargo xtask fixtures`).

fn python_script(name: &str) -> String {
    workspace_root()
        .join("tests/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// What the Python fixture servers' `greet` answers for Ada.
async fn greet_ada(client: &Client) -> String {
    let result = client
        .call_tool(
            CallToolRequestParams::new("greet")
                .with_arguments(json!({"name": "Ada"}).as_object().cloned().unwrap()),
        )
        .await
        .unwrap();
    text(&result)
}

#[tokio::test]
async fn the_legacy_python_server_refuses_discover_and_auto_falls_back_to_initialize() {
    let python = fixture(PYTHON_LEGACY);
    let script = python_script("py_legacy_server.py");
    let (_child, client) = over_stdio(&python, &[&script], discover()).await;
    assert!(client.is_err(), "a legacy-only server has no discover");

    let (_child, client) = over_stdio(&python, &[&script], auto()).await;
    let client = client.unwrap();
    assert_eq!(negotiated(&client), "2025-11-25");
    assert_eq!(greet_ada(&client).await, "Hello, Ada!");
}

#[tokio::test]
async fn the_modern_python_server_answers_discover_over_stdio_and_streamable_http() {
    let python = fixture(PYTHON);
    let (_child, client) = over_stdio(&python, &[&python_script("py_server.py")], discover()).await;
    let client = client.unwrap();
    assert_eq!(negotiated(&client), "2026-07-28");
    assert_eq!(greet_ada(&client).await, "Hello, Ada!");

    let server = ServerProcess::start(
        &python,
        &[&python_script("py_http_server.py"), "{port}"],
        None,
    );
    let client = over_http(server.url("/mcp"), discover()).await.unwrap();
    assert_eq!(negotiated(&client), "2026-07-28");
    assert_eq!(greet_ada(&client).await, "Hello, Ada!");
}
