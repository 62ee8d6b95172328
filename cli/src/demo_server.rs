//! The bundled demo MCP server (`mcp-group demo-server`), built on rmcp's
//! server side. Its tools are small and deterministic so tests can check
//! exact results: `echo`, `add`, `sleep`, `fail` and `whoami`, whose
//! per-connection call counter and process id tell sessions apart.

use std::{
    process::ExitCode,
    sync::atomic::{AtomicU64, Ordering},
};

use rmcp::{
    ErrorData, ServerHandler, ServiceExt,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig},
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

/// The demo server: one instance per connection.
#[derive(Debug)]
pub(crate) struct DemoServer {
    calls: AtomicU64,
    tallies: AtomicU64,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl DemoServer {
    pub(crate) fn new() -> Self {
        Self {
            calls: AtomicU64::new(0),
            tallies: AtomicU64::new(0),
            tool_router: Self::tool_router(),
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
        description = "Report this connection's server process id and how many whoami calls it has served (a per-connection counter)."
    )]
    async fn whoami(&self) -> String {
        let calls = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        serde_json::json!({ "pid": std::process::id(), "calls": calls }).to_string()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "mcp-group's demo server: echo, add, sleep, fail, tally, tallied, whoami.",
        )
    }
}

/// `demo-server [--http ADDR]`: serves over stdio, or streamable HTTP on
/// `ADDR`.
pub(crate) async fn run(http: Option<&str>) -> Result<ExitCode, BoxError> {
    match http {
        Some(addr) => serve_http(addr).await,
        None => serve_stdio().await,
    }
    .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// Serves one connection over this process's stdin/stdout until it closes.
async fn serve_stdio() -> Result<(), Box<dyn std::error::Error>> {
    let service = DemoServer::new().serve(rmcp::transport::stdio()).await?;
    service.waiting().await?;
    Ok(())
}

/// Serves streamable HTTP on `addr` (one demo server instance per MCP
/// session) until interrupted. Prints the endpoint's URL on stdout first, so
/// that a parent that asked for port 0 learns the port.
async fn serve_http(addr: &str) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Write as _;

    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    };

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let service = StreamableHttpService::new(
        || Ok(DemoServer::new()),
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
