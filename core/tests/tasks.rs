//! Tool calls a server answers with a task (the `io.modelcontextprotocol/tasks`
//! extension): followed with `tasks/get` to the end, within poll bounds a
//! hostile hint cannot move, fed with `tasks/update`, and cancelled with
//! `tasks/cancel` when the call times out. Tokio's clock is paused: the
//! waits cost no real time and the poll counts are exact.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use mcp_group_core::{
    ClientOptions, Connection, Elicitation, ElicitationAnswer, Era, Error, JsonObject,
    MAX_TASK_POLL_INTERVAL, MIN_TASK_POLL_INTERVAL, SessionId, SessionKey, async_trait,
    rmcp::{
        ErrorData, RoleServer, ServerHandler,
        model::{
            CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams,
            ContentBlock, CreateTaskResult, DetailedTask, ElicitRequest, ElicitRequestParams,
            ElicitationSchema, GetTaskParams, GetTaskResult, InputRequest, ServerCapabilities,
            ServerConfig, Task, TaskPayload, TaskStatus, UpdateTaskParams,
        },
        service::RequestContext,
    },
};
use mcp_group_test_kit::serve_in_memory;
use serde_json::json;
use tokio::sync::watch;

/// What `tasks/get` answers.
#[derive(Clone, Copy)]
enum Script {
    /// `working`, forever.
    Never,
    /// `completed` from the `n`th poll on (1-based).
    CompleteAt(usize),
    /// `input_required` (one elicitation, key `q`) until `tasks/update`
    /// answers it, and once more after that (the server has not caught up);
    /// then `completed` with the answer.
    AskFirst,
}

/// A server whose one tool answers with a task, scripted by [`Script`].
#[derive(Clone)]
struct TaskServer {
    script: Script,
    hint: Option<u64>,
    polls: Arc<AtomicUsize>,
    cancelled: Arc<watch::Sender<Vec<String>>>,
    updates: Arc<Mutex<Vec<UpdateTaskParams>>>,
    /// Polls seen since the last update.
    since_update: Arc<AtomicUsize>,
}

impl TaskServer {
    fn new(script: Script, hint: Option<u64>) -> Self {
        Self {
            script,
            hint,
            polls: Arc::default(),
            cancelled: Arc::new(watch::Sender::new(Vec::new())),
            updates: Arc::default(),
            since_update: Arc::default(),
        }
    }

    fn task(&self, status: TaskStatus) -> Task {
        let task = Task::new(
            "t-1",
            status,
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
        );
        match self.hint {
            Some(hint) => task.with_poll_interval_ms(hint),
            None => task,
        }
    }

    fn completed(&self, text: &str) -> TaskPayload {
        let result = CallToolResult::success(vec![ContentBlock::text(text)]);
        let serde_json::Value::Object(result) = serde_json::to_value(result).unwrap() else {
            unreachable!()
        };
        TaskPayload::Completed { result }
    }
}

impl ServerHandler for TaskServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tasks()
                .build(),
        )
    }

    async fn call_tool(
        &self,
        _request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        assert!(
            context
                .client_capabilities()
                .is_some_and(|c| c.supports_tasks()),
            "the client declares the tasks extension"
        );
        Ok(CreateTaskResult::new(self.task(TaskStatus::Working)).into())
    }

    async fn get_task(
        &self,
        _request: GetTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        let poll = self.polls.fetch_add(1, Ordering::SeqCst) + 1;
        let since_update = self.since_update.fetch_add(1, Ordering::SeqCst);
        let payload = match self.script {
            Script::Never => TaskPayload::Working,
            Script::CompleteAt(n) if poll >= n => self.completed("done"),
            Script::CompleteAt(_) => TaskPayload::Working,
            Script::AskFirst => {
                let updates = self.updates.lock().unwrap();
                match updates.first() {
                    Some(update) if since_update >= 1 => {
                        let answer = update.input_responses["q"]["content"]["answer"]
                            .as_str()
                            .unwrap_or("?")
                            .to_owned();
                        self.completed(&answer)
                    }
                    _ => {
                        let schema = ElicitationSchema::builder()
                            .required_string_property("answer", |s| s)
                            .build()
                            .unwrap();
                        let request =
                            ElicitRequest::new(ElicitRequestParams::FormElicitationParams {
                                meta: None,
                                message: "what?".into(),
                                requested_schema: schema,
                            });
                        TaskPayload::InputRequired {
                            input_requests: [("q".to_owned(), InputRequest::Elicitation(request))]
                                .into_iter()
                                .collect(),
                        }
                    }
                }
            }
        };
        let status = payload.status();
        Ok(GetTaskResult::new(DetailedTask::new(
            self.task(status),
            payload,
        )))
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.updates.lock().unwrap().push(request);
        self.since_update.store(0, Ordering::SeqCst);
        Ok(())
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.cancelled.send_modify(|ids| ids.push(request.task_id));
        Ok(())
    }
}

/// Answers every question with `{"answer": "42"}`, counting them.
#[derive(Default)]
struct FortyTwo {
    asked: AtomicUsize,
    sessions: Mutex<Vec<SessionKey>>,
}

#[async_trait]
impl Elicitation for FortyTwo {
    async fn elicit(
        &self,
        session: &SessionKey,
        _message: &str,
        _schema: &JsonObject,
    ) -> ElicitationAnswer {
        self.asked.fetch_add(1, Ordering::SeqCst);
        self.sessions.lock().unwrap().push(session.clone());
        let serde_json::Value::Object(answer) = json!({"answer": "42"}) else {
            unreachable!()
        };
        ElicitationAnswer::Accept(answer)
    }
}

async fn connect(server: TaskServer, options: &ClientOptions) -> Connection {
    let (read, write) = tokio::io::split(serve_in_memory(server));
    let connection = Connection::establish_with(
        (read, write),
        "tasks",
        options,
        &SessionKey::from(SessionId::new("alice")),
    )
    .await
    .unwrap();
    assert_eq!(connection.era(), Some(Era::Modern));
    connection
}

#[tokio::test(start_paused = true)]
async fn a_task_that_never_ends_is_cancelled_when_the_call_times_out() {
    let server = TaskServer::new(Script::Never, Some(1_000));
    let mut cancelled = server.cancelled.subscribe();
    let polls = Arc::clone(&server.polls);
    let connection = connect(server, &ClientOptions::new()).await;

    let err = connection
        .call_tool("slow", JsonObject::new(), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                operation: "tools/call",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(polls.load(Ordering::SeqCst) > 1, "the task was polled");
    // A bound on the wait, so a missing cancel fails the test rather than
    // hanging it (the clock is paused: it costs no real time).
    let ids = tokio::time::timeout(
        Duration::from_secs(60),
        cancelled.wait_for(|ids| !ids.is_empty()),
    )
    .await
    .expect("the server saw tasks/cancel")
    .unwrap()
    .clone();
    assert_eq!(ids, ["t-1"]);
    connection.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_poll_hint_of_zero_cannot_make_the_client_spin() {
    let server = TaskServer::new(Script::Never, Some(0));
    let polls = Arc::clone(&server.polls);
    let connection = connect(server, &ClientOptions::new()).await;
    let limit = Duration::from_secs(2);

    let err = connection
        .call_tool("slow", JsonObject::new(), limit)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    let polls = polls.load(Ordering::SeqCst);
    let most = (limit.as_millis() / MIN_TASK_POLL_INTERVAL.as_millis()) as usize;
    assert!(
        (1..=most).contains(&polls),
        "{polls} polls in {limit:?}: at most {most}"
    );
    connection.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_huge_poll_hint_cannot_stall_the_call() {
    let server = TaskServer::new(Script::CompleteAt(1), Some(u64::MAX));
    let connection = connect(server, &ClientOptions::new()).await;

    let started = tokio::time::Instant::now();
    let output = connection
        .call_tool("slow", JsonObject::new(), Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(output.to_text(), "done");
    assert!(
        started.elapsed() <= MAX_TASK_POLL_INTERVAL + Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    connection.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_finished_task_is_not_cancelled() {
    let server = TaskServer::new(Script::CompleteAt(3), None);
    let cancelled = Arc::clone(&server.cancelled);
    let connection = connect(server, &ClientOptions::new()).await;

    let output = connection
        .call_tool("slow", JsonObject::new(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(output.to_text(), "done");
    // Another call on the same connection runs after anything the first
    // could have spawned.
    connection
        .call_tool("slow", JsonObject::new(), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(cancelled.borrow().is_empty(), "{:?}", cancelled.borrow());
    connection.close().await;
}

#[tokio::test(start_paused = true)]
async fn task_input_goes_to_the_sessions_handler_once_and_back_with_tasks_update() {
    let server = TaskServer::new(Script::AskFirst, Some(200));
    let updates = Arc::clone(&server.updates);
    let handler = Arc::new(FortyTwo::default());
    let options = ClientOptions::new().with_elicitation(handler.clone());
    let connection = connect(server, &options).await;

    let output = connection
        .call_tool("slow", JsonObject::new(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(output.to_text(), "42");
    assert_eq!(
        handler.asked.load(Ordering::SeqCst),
        1,
        "a request still listed after its answer is not asked again"
    );
    assert_eq!(
        handler.sessions.lock().unwrap().as_slice(),
        [SessionKey::from(SessionId::new("alice"))]
    );
    let updates = updates.lock().unwrap().clone();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].task_id, "t-1");
    assert_eq!(updates[0].input_responses["q"]["action"], "accept");
    connection.close().await;
}
