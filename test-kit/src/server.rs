//! MCP servers that run inside the test process, and the in-memory pipe
//! that connects a client to one.

use mcp_group_core::{Connection, Error, JsonObject};
use rmcp::{
    ServerHandler, ServiceExt,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{ServerCapabilities, ServerConfig},
    tool, tool_handler, tool_router,
};

/// The size of the in-memory pipe: large enough for any message a test
/// sends in one piece (a long tool list).
const PIPE_BYTES: usize = 64 * 1024;

/// A server with the tools capability and no tools: enough for the
/// handshake and `ping`.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyServer;

impl ServerHandler for EmptyServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// The arguments of [`EchoServer`]'s tool.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// What to echo.
    pub message: String,
}

/// A server with one tool, `echo` ("Echo the message"), which answers
/// `Echo: <message>`.
#[derive(Debug, Clone)]
pub struct EchoServer {
    tool_router: ToolRouter<Self>,
}

impl Default for EchoServer {
    fn default() -> Self {
        Self::new()
    }
}

#[tool_router]
impl EchoServer {
    /// A new server.
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    /// The arguments of an `echo` call: `{"message": message}`.
    pub fn arguments(message: &str) -> JsonObject {
        JsonObject::from_iter([("message".to_owned(), message.into())])
    }

    #[tool(description = "Echo the message")]
    async fn echo(&self, Parameters(EchoArgs { message }): Parameters<EchoArgs>) -> String {
        format!("Echo: {message}")
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for EchoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// Starts `server` in a task on one end of a [`tokio::io::duplex`] pipe and
/// returns the other end, for a client to speak MCP over. The server task
/// ends when the client's end is closed.
pub fn serve_in_memory<S: ServerHandler>(server: S) -> tokio::io::DuplexStream {
    let (client, server_end) = tokio::io::duplex(PIPE_BYTES);
    tokio::spawn(async move {
        if let Ok(running) = server.serve(server_end).await {
            let _ = running.waiting().await;
        }
    });
    client
}

/// A [`Connection`] to `server`, over an in-memory pipe, after the MCP
/// handshake. `endpoint` names it in errors and logs.
pub async fn connect_in_memory<S: ServerHandler>(
    server: S,
    endpoint: &str,
) -> Result<Connection, Error> {
    let (read, write) = tokio::io::split(serve_in_memory(server));
    Connection::establish((read, write), endpoint).await
}
