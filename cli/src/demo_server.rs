//! The bundled demo MCP server (`mcp-group demo-server`), built on rmcp's
//! server side. Its tools are small and deterministic so tests can check
//! exact results: `echo`, `add`, `sleep`, `fail` and `whoami`, whose
//! per-connection call counter and process id tell sessions apart; `ask`,
//! which asks the caller a question, and `background`, which runs as a task.
//!
//! # Protocol eras
//!
//! `--era` picks which eras it accepts ([`Era`]):
//!
//! - `legacy`: 2025-11-25 and older, with the `initialize` handshake (and,
//!   over HTTP, `Mcp-Session-Id` sessions). `server/discover` is answered
//!   with a JSON-RPC "method not found" error, as a 2025 server answers it,
//!   so a client that probes falls back to `initialize`.
//! - `modern`: 2026-07-28 only: `server/discover`, per-request `_meta`, no
//!   sessions. `initialize` is refused with an "unsupported protocol
//!   version" error listing 2026-07-28.
//! - `both` (the default): whichever the client opens with.
//!
//! In the modern era over HTTP every request is served by a fresh server
//! instance (there is no session to keep one in), so the per-connection
//! counters of `whoami` and `tally` count one request; the task table is
//! shared by the whole process.
//!
//! `ask` asks for an answer through elicitation: in the modern era as a
//! multi-round-trip result (`input_required` with one elicitation input
//! request and an opaque `requestState`, answered on the retry), in the
//! legacy era as an `elicitation/create` request to the client.
//! `background` answers with a task handle (the `io.modelcontextprotocol/tasks`
//! extension) when the request declares that extension, whose result
//! `tasks/get` returns once it has run; without it, it answers in place.

use std::{
    borrow::Cow,
    collections::{BTreeMap, VecDeque},
    process::ExitCode,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use rmcp::{
    ErrorData, RoleServer, ServerHandler, ServiceExt,
    handler::server::{
        router::tool::ToolRouter,
        tool::{InputResponses, RequestState},
        wrapper::Parameters,
    },
    model::{
        CallToolResponse, CallToolResult, CancelTaskParams, ClientResult, ContentBlock,
        CreateTaskResult, DetailedTask, DiscoverRequestMethod, DiscoverResult, ElicitRequest,
        ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationSchema, GetTaskParams,
        GetTaskResult, InitializeRequestParams, InitializeResult, InputRequest,
        InputRequiredResult, ProtocolVersion, ServerCapabilities, ServerConfig, ServerRequest,
        Task, TaskPayload, TaskStatus,
    },
    service::RequestContext,
    tool, tool_handler, tool_router,
};
use serde::Deserialize;

use crate::BoxError;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    /// The text to echo back.
    message: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct RegionArgs {
    /// A region name; in the 2026-07-28 era the client also sends it as
    /// the `Mcp-Param-Region` HTTP header (SEP-2243).
    #[schemars(extend("x-mcp-header" = "Region"))]
    region: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct AddArgs {
    /// The first addend.
    a: f64,
    /// The second addend.
    b: f64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct SleepArgs {
    /// How long to sleep, in milliseconds.
    ms: u64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct TallyArgs {
    /// How long to take before answering, in milliseconds.
    #[serde(default)]
    ms: u64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct FailArgs {
    /// The error text to return.
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct AskArgs {
    /// The question to ask the caller.
    #[serde(default)]
    question: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct BackgroundArgs {
    /// How long the work takes, in milliseconds.
    #[serde(default)]
    ms: u64,
    /// The text the finished task answers with.
    #[serde(default)]
    message: Option<String>,
}

/// Which protocol eras the demo server accepts (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Era {
    /// 2025-11-25 and older: `initialize`; `server/discover` is an error.
    Legacy,
    /// 2026-07-28: `server/discover` and per-request `_meta`; `initialize`
    /// is an error.
    Modern,
    /// Both.
    #[default]
    Both,
}

/// The versions of the modern era.
const MODERN_VERSIONS: &[ProtocolVersion] = &[ProtocolVersion::V_2026_07_28];

impl Era {
    /// The versions the server offers in `server/discover` and bounds
    /// `initialize` by.
    fn versions(self) -> &'static [ProtocolVersion] {
        match self {
            Self::Legacy => ProtocolVersion::known_up_to(&ProtocolVersion::LATEST_WITH_INITIALIZE),
            Self::Modern => MODERN_VERSIONS,
            Self::Both => ProtocolVersion::KNOWN_VERSIONS,
        }
    }

    /// The versions rmcp lets through to the handlers. rmcp checks the
    /// version in a request's `_meta` against these before any handler runs,
    /// so a legacy-only list would answer `server/discover` with
    /// "unsupported protocol version", which a probing client takes for a
    /// modern server's refusal rather than a legacy server: the legacy era
    /// lets 2026-07-28 through so that `discover` can refuse it with "method
    /// not found", as a 2025 server does. (`initialize` still never agrees
    /// to a version without a handshake.)
    fn accepted(self) -> &'static [ProtocolVersion] {
        match self {
            Self::Legacy | Self::Both => ProtocolVersion::KNOWN_VERSIONS,
            Self::Modern => MODERN_VERSIONS,
        }
    }
}

/// The `requestState` of `ask`'s question round: opaque to the client, and
/// carrying nothing the server trusts beyond "this is the retry".
const ASK_STATE: &str = "demo-ask/1";
/// The key of `ask`'s one input request.
const ASK_KEY: &str = "answer";
/// How many tasks the table keeps; past it the oldest finished one goes,
/// and with none finished a new task is refused.
const MAX_TASKS: usize = 256;

/// The tasks `background` started, shared by every server instance of the
/// process.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    next: AtomicU64,
    table: Mutex<VecDeque<(String, DetailedTask)>>,
}

impl Tasks {
    fn with<T>(&self, f: impl FnOnce(&mut VecDeque<(String, DetailedTask)>) -> T) -> T {
        f(&mut self.table.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Registers a working task and returns it.
    fn start(&self) -> Result<Task, ErrorData> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let id = format!("task-{n}-{nanos:08x}");
        let now = timestamp();
        let task = Task::new(id.clone(), TaskStatus::Working, now.clone(), now)
            .with_poll_interval_ms(25)
            .with_ttl_ms(60_000);
        self.with(|table| {
            if table.len() >= MAX_TASKS {
                let finished = table.iter().position(|(_, t)| t.status().is_terminal());
                match finished {
                    Some(index) => {
                        table.remove(index);
                    }
                    None => {
                        return Err(ErrorData::internal_error(
                            "too many tasks in progress",
                            None,
                        ));
                    }
                }
            }
            table.push_back((id, DetailedTask::new(task.clone(), TaskPayload::Working)));
            Ok(task)
        })
    }

    /// Moves `id` to `payload`'s state, unless it already ended (cancelled).
    fn finish(&self, id: &str, payload: TaskPayload) {
        self.with(|table| {
            if let Some((_, task)) = table.iter_mut().find(|(i, _)| i == id)
                && !task.status().is_terminal()
            {
                let mut inner = task.task.clone();
                inner.last_updated_at = timestamp();
                *task = DetailedTask::new(inner, payload);
            }
        });
    }

    fn get(&self, id: &str) -> Option<DetailedTask> {
        self.with(|table| {
            table
                .iter()
                .find(|(i, _)| i == id)
                .map(|(_, task)| task.clone())
        })
    }
}

/// Now, in RFC 3339.
fn timestamp() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// The demo server: one instance per connection (per request in the modern
/// era over HTTP).
#[derive(Debug)]
pub(crate) struct DemoServer {
    calls: AtomicU64,
    tallies: AtomicU64,
    era: Era,
    tasks: Arc<Tasks>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl DemoServer {
    /// A demo server accepting `era`, keeping its tasks in `tasks`.
    pub(crate) fn with_era(era: Era, tasks: Arc<Tasks>) -> Self {
        Self {
            calls: AtomicU64::new(0),
            tallies: AtomicU64::new(0),
            era,
            tasks,
            tool_router: Self::tool_router() + Self::era_router(),
        }
    }

    #[tool(description = "Echo the message back, prefixed with \"Echo: \".")]
    async fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> String {
        format!("Echo: {}", args.message)
    }

    #[tool(description = "Add two numbers and return the sum.")]
    async fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        (a + b).to_string()
    }

    #[tool(description = "Sleep for `ms` milliseconds, then answer.")]
    async fn sleep(&self, Parameters(SleepArgs { ms }): Parameters<SleepArgs>) -> String {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        format!("slept {ms} ms")
    }

    #[tool(description = "Always fail with a tool error (isError: true).")]
    async fn fail(
        &self,
        Parameters(FailArgs { message }): Parameters<FailArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let message = message.unwrap_or_else(|| "the fail tool always fails".to_owned());
        Ok(CallToolResult::error(vec![ContentBlock::text(message)]))
    }

    #[tool(
        description = "A non-idempotent tool: count one execution (at once), then take `ms` milliseconds to answer with the count."
    )]
    async fn tally(&self, Parameters(TallyArgs { ms }): Parameters<TallyArgs>) -> String {
        let count = self.tallies.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        count.to_string()
    }

    #[tool(description = "How many times `tally` has started executing on this connection.")]
    async fn tallied(&self) -> String {
        self.tallies.load(Ordering::SeqCst).to_string()
    }

    #[tool(
        description = "Answer with the region argument and the Mcp-Param-Region HTTP header the request carried (`none` over stdio or when absent)."
    )]
    async fn region(
        &self,
        Parameters(RegionArgs { region }): Parameters<RegionArgs>,
        context: RequestContext<RoleServer>,
    ) -> String {
        let header = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.headers.get("mcp-param-region"))
            .and_then(|value| value.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        format!("{region} header={header}")
    }

    #[tool(
        description = "Report this connection's server process id and how many whoami calls it has served (a per-connection counter)."
    )]
    async fn whoami(&self) -> String {
        let calls = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        serde_json::json!({ "pid": std::process::id(), "calls": calls }).to_string()
    }
}

#[tool_router(router = era_router)]
impl DemoServer {
    #[tool(
        description = "Ask the caller a question (elicitation: a multi-round-trip result in the 2026-07-28 era, an elicitation request before it) and answer with what they said."
    )]
    async fn ask(
        &self,
        Parameters(AskArgs { question }): Parameters<AskArgs>,
        RequestState(state): RequestState,
        InputResponses(responses): InputResponses,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let question = question.unwrap_or_else(|| "What is your answer?".to_owned());
        let request = ask_request(&question)?;
        let modern = context
            .protocol_version()
            .is_some_and(|v| !v.has_initialize());
        let answer = if modern {
            let answer = responses
                .as_ref()
                .and_then(|r| r.get(ASK_KEY))
                .filter(|_| state.as_deref() == Some(ASK_STATE));
            match answer {
                Some(answer) => serde_json::from_value::<ElicitResult>(answer.clone())
                    .map_err(|e| ErrorData::invalid_params(format!("bad answer: {e}"), None))?,
                None => {
                    let requests = BTreeMap::from([(
                        ASK_KEY.to_owned(),
                        InputRequest::Elicitation(ElicitRequest::new(request)),
                    )]);
                    return Ok(InputRequiredResult::new(
                        Some(requests),
                        Some(ASK_STATE.to_owned()),
                    )
                    .into());
                }
            }
        } else {
            let answer = context
                .peer
                .send_request(ServerRequest::ElicitRequest(ElicitRequest::new(request)))
                .await
                .map_err(|e| ErrorData::internal_error(format!("elicitation failed: {e}"), None))?;
            match answer {
                ClientResult::ElicitResult(answer) => answer,
                _ => {
                    return Err(ErrorData::internal_error(
                        "the client answered the elicitation with something else",
                        None,
                    ));
                }
            }
        };
        Ok(answer_text(&answer).into())
    }

    #[tool(
        description = "Take `ms` milliseconds to answer with `message`: as a task (tasks/get) when the caller declares the tasks extension, in place otherwise."
    )]
    async fn background(
        &self,
        Parameters(BackgroundArgs { ms, message }): Parameters<BackgroundArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let message = message.unwrap_or_else(|| format!("worked {ms} ms"));
        let wants_task = context
            .client_capabilities()
            .is_some_and(|c| c.supports_tasks());
        if !wants_task {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            return Ok(CallToolResult::success(vec![ContentBlock::text(message)]).into());
        }
        let task = self.tasks.start()?;
        let tasks = Arc::clone(&self.tasks);
        let id = task.task_id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let result = CallToolResult::success(vec![ContentBlock::text(message)]);
            let payload = match serde_json::to_value(result) {
                Ok(serde_json::Value::Object(result)) => TaskPayload::Completed { result },
                _ => TaskPayload::Failed {
                    error: serde_json::Map::from_iter([(
                        "message".to_owned(),
                        "the result could not be encoded".into(),
                    )]),
                },
            };
            tasks.finish(&id, payload);
        });
        Ok(CreateTaskResult::new(task).into())
    }
}

/// `ask`'s elicitation: one required string, `answer`.
fn ask_request(question: &str) -> Result<ElicitRequestParams, ErrorData> {
    let schema = ElicitationSchema::builder()
        .required_string_property("answer", |s| s)
        .build()
        .map_err(|e| ErrorData::internal_error(e, None))?;
    Ok(ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: question.to_owned(),
        requested_schema: schema,
    })
}

/// `ask`'s result for the caller's answer.
fn answer_text(answer: &ElicitResult) -> CallToolResult {
    match answer.action {
        ElicitationAction::Accept => {
            let text = answer
                .content
                .as_ref()
                .and_then(|c| c.get("answer"))
                .and_then(|a| a.as_str())
                .unwrap_or_default();
            CallToolResult::success(vec![ContentBlock::text(format!("You answered: {text}"))])
        }
        _ => CallToolResult::error(vec![ContentBlock::text("The question was not answered.")]),
    }
}

/// How long, in the modern era, the server's discovery result and tool
/// list hold (`ttlMs`).
const CACHE_TTL_MS: u64 = 300_000;

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tasks()
                .build(),
        )
        .with_instructions(
            "mcp-group's demo server: echo, add, sleep, fail, tally, tallied, whoami, region, ask, background.",
        )
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(self.era.accepted())
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        if self.era == Era::Modern {
            return Err(ErrorData::unsupported_protocol_version(
                request.protocol_version,
                self.era.versions(),
            ));
        }
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }

    async fn discover(
        &self,
        _context: RequestContext<RoleServer>,
    ) -> Result<DiscoverResult, ErrorData> {
        if self.era == Era::Legacy {
            return Err(ErrorData::method_not_found::<DiscoverRequestMethod>());
        }
        let mut result =
            DiscoverResult::from_server_info(self.era.versions().to_vec(), self.get_info());
        // The same for every client for a while: clients may reuse it.
        result.ttl_ms = CACHE_TTL_MS;
        result.cache_scope = rmcp::model::CacheScope::Public;
        Ok(result)
    }

    async fn list_tools(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListToolsResult, ErrorData> {
        // Every caller sees the same tools: in the modern era the list says
        // so (`public`) and may be reused for a while.
        let modern = context
            .protocol_version()
            .is_some_and(|version| !version.has_initialize());
        let mut result = rmcp::model::ListToolsResult::with_all_items(self.tool_router.list_all());
        if modern {
            result.ttl_ms = Some(CACHE_TTL_MS);
            result.cache_scope = Some(rmcp::model::CacheScope::Public);
        }
        Ok(result)
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        self.tasks
            .get(&request.task_id)
            .map(GetTaskResult::new)
            .ok_or_else(|| ErrorData::invalid_params("no such task", None))
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if self.tasks.get(&request.task_id).is_none() {
            return Err(ErrorData::invalid_params("no such task", None));
        }
        self.tasks.finish(&request.task_id, TaskPayload::Cancelled);
        Ok(())
    }
}

/// `demo-server [--http ADDR] [--era legacy|modern|both]`: serves over
/// stdio, or streamable HTTP on `ADDR`, accepting `era`.
pub(crate) async fn run(http: Option<&str>, era: Era) -> Result<ExitCode, BoxError> {
    match http {
        Some(addr) => serve_http(addr, era).await,
        None => serve_stdio(era).await,
    }
    .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// Serves one connection over this process's stdin/stdout until it closes.
async fn serve_stdio(era: Era) -> Result<(), Box<dyn std::error::Error>> {
    let service = DemoServer::with_era(era, Arc::default())
        .serve(rmcp::transport::stdio())
        .await?;
    service.waiting().await?;
    Ok(())
}

/// Serves streamable HTTP on `addr` (one demo server instance per MCP
/// session) until interrupted. Prints the endpoint's URL on stdout first, so
/// that a parent that asked for port 0 learns the port.
async fn serve_http(addr: &str, era: Era) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Write as _;

    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    };

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let tasks = Arc::<Tasks>::default();
    let service = StreamableHttpService::new(
        move || Ok(DemoServer::with_era(era, Arc::clone(&tasks))),
        std::sync::Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_sse_keep_alive(None),
    );
    let service = hyper_util::service::TowerToHyperService::new(service);
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "http://{local}/mcp")?;
        stdout.flush()?;
    }
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                // Answers are small and written in pieces (headers, SSE
                // frames): without this, Nagle's algorithm holds each piece
                // back for the client's delayed ACK, ~40 ms per call.
                stream.set_nodelay(true)?;
                let service = service.clone();
                tokio::spawn(async move {
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "demo server: HTTP connection ended");
                    }
                });
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
