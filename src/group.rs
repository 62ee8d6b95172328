//! The function group: one server's tools, exposed per session.

use std::{sync::Arc, time::Duration};

use mcp_group_core::{DynTransport, SessionId, ToolOutput, Transport};
use mcp_group_overrides::{ExposedTool, ToolMap};
use mcp_group_registry::{FullPolicy, Lease, Registry, RegistryConfig, RegistryStats};
use serde_json::Value;

use crate::{Error, McpClientConfig, McpError, SessionLimitPolicy, TransportKind};

/// How long [`FunctionGroup::shutdown`] waits for calls in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// One MCP server's tools, exposed as functions that run in a session.
///
/// Each session id gets its own MCP connection (its own server process, for
/// stdio), opened on its first call and shared by its concurrent calls. Calls
/// without a session id share the default session, which is also the one the
/// tool list was read from.
pub struct FunctionGroup {
    registry: Registry<DynTransport>,
    tools: ToolMap,
    unknown_overrides: Vec<String>,
    config: McpClientConfig,
}

impl std::fmt::Debug for FunctionGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionGroup")
            .field("server", &self.registry.transport().description())
            .field("tools", &self.tools.len())
            .field("registry", &self.registry)
            .finish()
    }
}

impl FunctionGroup {
    /// Validates `config`, connects the default session, lists the server's
    /// tools (every page) and applies the tool overrides.
    pub async fn connect(config: McpClientConfig) -> Result<Self, Error> {
        config.validate()?;
        let transport = build_transport(&config)?;
        Self::with_transport(transport, config).await
    }

    /// Like [`FunctionGroup::connect`], with a transport of your own (the
    /// `server` section of `config` is then ignored).
    pub async fn with_transport(
        transport: DynTransport,
        config: McpClientConfig,
    ) -> Result<Self, Error> {
        config.validate()?;
        let transport: DynTransport =
            if config.reconnect_enabled && config.reconnect_max_attempts > 0 {
                Arc::new(crate::reconnect::Reconnecting::new(transport, &config))
            } else {
                transport
            };
        let full_policy = match config.session_limit_policy {
            SessionLimitPolicy::Reject => FullPolicy::Reject,
            SessionLimitPolicy::EvictLruIdle => FullPolicy::EvictLruIdle,
            SessionLimitPolicy::Wait => FullPolicy::Wait(config.session_limit_wait),
        };
        let registry_config = RegistryConfig::new(config.max_sessions, config.session_idle_timeout)
            .with_connect_timeout(config.tool_call_timeout)
            .with_full_policy(full_policy);
        let registry = Registry::new(transport, registry_config);
        let descriptors = {
            let lease = registry.acquire(&SessionId::default_session()).await?;
            lease.list_tools(config.tool_call_timeout).await?
        };
        let applied = mcp_group_overrides::apply(descriptors, &config.tool_overrides)?;
        Ok(Self {
            registry,
            tools: applied.tools,
            unknown_overrides: applied.unknown,
            config,
        })
    }

    /// The exposed functions, sorted by name.
    pub fn functions(&self) -> impl Iterator<Item = &ExposedTool> {
        self.tools.iter()
    }

    /// The function exposed as `name`.
    pub fn function(&self, name: &str) -> Option<&ExposedTool> {
        self.tools.get(name)
    }

    /// Override keys that named no tool of the server (ignored, as in the seed).
    pub fn unknown_overrides(&self) -> &[String] {
        &self.unknown_overrides
    }

    /// The configuration the group was built from.
    pub fn config(&self) -> &McpClientConfig {
        &self.config
    }

    /// Calls the function exposed as `tool` in `session` (`None`: the shared
    /// default session) with `arguments` (a JSON object, or `null` for none).
    ///
    /// A result the server flags with `isError` is returned as
    /// [`McpError::ToolError`]. A call that may have reached the server is
    /// never re-sent: if the connection broke, the error says so and the
    /// session's next call opens a new connection.
    ///
    /// # Cancel safety
    /// Dropping the future cancels the call (`notifications/cancelled` is
    /// sent) and releases the session lease.
    pub async fn call(
        &self,
        session: Option<&SessionId>,
        tool: &str,
        arguments: Value,
    ) -> Result<ToolOutput, McpError> {
        self.call_as(session, None, tool, arguments).await
    }

    /// Like [`FunctionGroup::call`], on behalf of `principal` (the end user
    /// as your application authenticated them): a session first used by one
    /// principal is refused to every other with [`McpError::SessionForbidden`],
    /// so a shared or guessed session id never reaches another user's client.
    #[tracing::instrument(level = "debug", skip(self, principal, arguments), fields(session))]
    pub async fn call_as(
        &self,
        session: Option<&SessionId>,
        principal: Option<&str>,
        tool: &str,
        arguments: Value,
    ) -> Result<ToolOutput, McpError> {
        let session = session.cloned().unwrap_or_default();
        tracing::Span::current().record("session", tracing::field::display(&session));
        let function = self.tools.get(tool).ok_or_else(|| McpError::ToolNotFound {
            name: tool.to_owned(),
        })?;
        let arguments = match arguments {
            Value::Object(map) => map,
            Value::Null => Default::default(),
            other => {
                return Err(McpError::InvalidArguments {
                    tool: tool.to_owned(),
                    field: None,
                    reason: format!("arguments must be a JSON object, not {}", json_kind(&other)),
                });
            }
        };
        let lease = self.registry.acquire_as(&session, principal).await?;
        let result = lease
            .call_tool(
                function.original_name(),
                arguments,
                self.config.tool_call_timeout,
            )
            .await;
        match result {
            Ok(output) if output.is_error() => Err(McpError::ToolError {
                tool: tool.to_owned(),
                message: output.to_text(),
            }),
            Ok(output) => Ok(output),
            Err(error) => {
                if error.is_connection_lost() {
                    lease.invalidate();
                }
                Err(error)
            }
        }
    }

    /// Leases `session`'s connection (opening it if needed) for direct use.
    pub async fn lease(&self, session: &SessionId) -> Result<Lease<DynTransport>, McpError> {
        self.registry.acquire(session).await
    }

    /// Pings the server in `session` and returns the round-trip time.
    pub async fn ping(&self, session: Option<&SessionId>) -> Result<Duration, McpError> {
        let session = session.cloned().unwrap_or_default();
        let lease = self.lease(&session).await?;
        let started = tokio::time::Instant::now();
        match lease.ping(self.config.tool_call_timeout).await {
            Ok(()) => Ok(started.elapsed()),
            Err(error) => {
                if error.is_connection_lost() {
                    lease.invalidate();
                }
                Err(error)
            }
        }
    }

    /// Closes sessions unused for `max_age` (`None`: `session_idle_timeout`)
    /// and returns how many were closed. Sessions with calls in flight are kept.
    pub async fn cleanup_sessions(&self, max_age: Option<Duration>) -> usize {
        self.registry.cleanup_sessions(max_age).await
    }

    /// The number of open sessions.
    pub fn session_count(&self) -> usize {
        self.registry.session_count()
    }

    /// The session registry's counters.
    pub fn stats(&self) -> RegistryStats {
        self.registry.stats()
    }

    /// Refuses new calls, waits briefly for calls in flight, and closes every
    /// session's connection (for stdio: every server process is reaped).
    pub async fn shutdown(&self) {
        self.registry.shutdown(SHUTDOWN_GRACE).await;
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Builds the transport the configuration names, if its feature is enabled.
pub fn build_transport(config: &McpClientConfig) -> Result<DynTransport, McpError> {
    let server = &config.server;
    match server.transport {
        TransportKind::Stdio => {
            #[cfg(feature = "stdio")]
            {
                use mcp_group_transport_stdio::{StdioConfig, StdioTransport};
                let mut stdio = StdioConfig::new(server.command.clone().unwrap_or_default())
                    .args(server.args.clone().unwrap_or_default());
                stdio.env = server.env.clone().unwrap_or_default();
                stdio.cwd = server.cwd.clone();
                Ok(Arc::new(StdioTransport::new(stdio)))
            }
            #[cfg(not(feature = "stdio"))]
            Err(McpError::TransportDisabled {
                transport: "stdio",
                feature: "stdio",
            })
        }
        TransportKind::StreamableHttp => {
            #[cfg(feature = "http")]
            {
                let http = http_config(server)?;
                Ok(Arc::new(
                    mcp_group_transport_http::StreamableHttpTransport::new(http),
                ))
            }
            #[cfg(not(feature = "http"))]
            Err(McpError::TransportDisabled {
                transport: "streamable-http",
                feature: "http",
            })
        }
        TransportKind::Sse => {
            #[cfg(feature = "sse")]
            {
                let http = http_config(server)?;
                Ok(Arc::new(mcp_group_transport_sse::SseTransport::new(http)))
            }
            #[cfg(not(feature = "sse"))]
            Err(McpError::TransportDisabled {
                transport: "sse",
                feature: "sse",
            })
        }
    }
}

#[cfg(any(feature = "http", feature = "sse"))]
fn http_config(
    server: &crate::ServerConfig,
) -> Result<mcp_group_transport_http::HttpConfig, McpError> {
    let url = server.url.clone().unwrap_or_default();
    let mut http =
        mcp_group_transport_http::HttpConfig::new(url.clone()).map_err(|e| McpError::Connect {
            endpoint: url,
            source: Box::new(e),
        })?;
    http.custom_headers = server.custom_headers.clone().unwrap_or_default();
    Ok(http)
}
