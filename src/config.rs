//! The configuration, loadable from TOML, YAML or JSON. Its field names and
//! defaults are those of NeMo Agent Toolkit's `MCPClientConfig`, so its
//! files are accepted as they are.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use mcp_group_core::{ClientCredentials, Redacted, redact_args, redact_url};
use mcp_group_overrides::ToolOverride;
pub use mcp_group_registry::SessionLimitPolicy;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::nat::FunctionGroupType;

/// The configuration of one function group (one MCP server).
///
/// ```
/// let config: mcp_group::McpClientConfig = mcp_group::McpClientConfig::from_toml_str(r#"
///     tool_call_timeout = "30s"
///     [server]
///     transport = "stdio"
///     command = "node"
///     args = ["server.js"]
/// "#).unwrap();
/// assert_eq!(config.max_sessions, 100);
/// assert_eq!(config.tool_call_timeout, std::time::Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct McpClientConfig {
    /// The server to connect to.
    pub server: ServerConfig,
    /// Bound on each tool call (default 60 s), and on opening a session's connection.
    #[serde(default = "defaults::tool_call_timeout", with = "duration")]
    pub tool_call_timeout: Duration,
    /// Whether a failed connection attempt is retried (default true).
    #[serde(default = "defaults::yes")]
    pub reconnect_enabled: bool,
    /// Retries after a failed connection attempt (default 2).
    #[serde(default = "defaults::reconnect_max_attempts")]
    pub reconnect_max_attempts: u32,
    /// The first retry's delay (default 500 ms); doubled for each further
    /// retry. Each delay is jittered down by up to half, so that clients
    /// that failed together do not retry together.
    #[serde(default = "defaults::reconnect_initial_backoff", with = "duration")]
    pub reconnect_initial_backoff: Duration,
    /// The longest retry delay (default 50 s).
    #[serde(default = "defaults::reconnect_max_backoff", with = "duration")]
    pub reconnect_max_backoff: Duration,
    /// The most sessions (connections) open at once (default 100).
    #[serde(default = "defaults::max_sessions")]
    pub max_sessions: usize,
    /// A session unused this long is closed (default 1 h; must not be 0).
    #[serde(default = "defaults::session_idle_timeout", with = "duration")]
    pub session_idle_timeout: Duration,
    /// What a new session gets when `max_sessions` are open: `"reject"` (the
    /// default, as in NeMo Agent Toolkit), `"evict-lru-idle"` (close the least recently
    /// used session with no call in flight) or `"wait"` (up to
    /// `session_limit_wait` for one to be removed).
    #[serde(default)]
    pub session_limit_policy: SessionLimitPolicy,
    /// How long the `"wait"` policy waits (default 5 s; at most what an
    /// `Instant` can be moved forward by).
    #[serde(default = "defaults::session_limit_wait", with = "duration")]
    pub session_limit_wait: Duration,
    /// Per-tool alias and description, keyed by the server's tool name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tool_overrides: BTreeMap<String, ToolOverride>,
    /// If not empty, only server tools matching one of these names or globs
    /// (`search_*`) are exposed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Server tools matching one of these names or globs are not exposed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Prepended to every exposed name, so two servers' tools never collide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,
    /// The MCP protocol version: `"auto"` (the default) negotiates the era
    /// — `server/discover` offering 2026-07-28, falling back to the
    /// `initialize` handshake offering 2025-11-25 for a server of the
    /// 2025 era; a version pins it (`"2026-07-28"`: modern servers only;
    /// `"2025-11-25"` or earlier: the handshake only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// NeMo Agent Toolkit's function-group type (`_type`, or `type`):
    /// `mcp_client` or `per_user_mcp_client`. Optional; see
    /// [`FunctionGroupType`].
    #[serde(
        default,
        rename = "_type",
        alias = "type",
        skip_serializing_if = "Option::is_none"
    )]
    pub group_type: Option<FunctionGroupType>,
    /// Whether each session gets its own client (default true). False: every
    /// call, whatever its session, uses the default session's client.
    #[serde(default = "defaults::yes")]
    pub session_aware_tools: bool,
    /// How long a call may wait for an end user's sign-in (default 300 s):
    /// the wait of `server.auth` in mode `wait`.
    #[serde(default = "defaults::auth_flow_timeout", with = "duration")]
    pub auth_flow_timeout: Duration,
    /// NeMo Agent Toolkit's function middleware (names of its workflow's
    /// `middleware` section). Only an empty list is accepted: the middleware
    /// are Python code.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub middleware: Vec<String>,
}

/// Which server, over which transport: a table tagged by its `transport`
/// key, so a field that does not belong to the chosen transport (`url` with
/// `stdio`, `command` with `streamable-http`) is a parse error naming it.
/// `Debug` redacts credential-like headers, environment variables and OAuth
/// secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "transport")]
#[non_exhaustive]
pub enum ServerConfig {
    /// A child process speaking MCP over stdin/stdout.
    #[serde(rename = "stdio")]
    Stdio(StdioServer),
    /// MCP streamable HTTP.
    #[serde(rename = "streamable-http")]
    StreamableHttp(HttpServer),
    /// Legacy HTTP+SSE (deprecated by MCP).
    #[serde(rename = "sse")]
    Sse(SseServer),
}

/// A stdio server: the program to run.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StdioServer {
    /// The program to run (looked up in `PATH` when it has no slash).
    pub command: String,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables for the server. It also gets `HOME`, `LOGNAME`,
    /// `PATH`, `SHELL`, `TERM` and `USER` from this process, and nothing
    /// else of its environment unless `inherit_env` is set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Pass this process's whole environment (tokens included) to the
    /// server (default false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inherit_env: bool,
}

/// A streamable HTTP server.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpServer {
    /// The server URL (`http://` or `https://`).
    pub url: String,
    /// Headers sent with every request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_headers: BTreeMap<String, String>,
    /// Authorize with OAuth client credentials (the authorization server is
    /// discovered from the MCP server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_client_credentials: Option<ClientCredentials>,
    /// End-user authorization (`[server.auth]`): each session's user signs
    /// in with the OAuth authorization-code flow when the server demands it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Box<AuthConfig>>,
    /// The name of an auth provider in a NeMo Agent Toolkit workflow's
    /// `authentication` section; [`McpClientConfig::from_workflow`] resolves
    /// it (into `oauth_client_credentials` and `custom_headers`) and clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_provider: Option<String>,
    /// Send credentials (credential-like headers, OAuth) over plain
    /// `http://` to a host that is not loopback (default false: refused).
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_insecure_http: bool,
}

/// `[server.auth]`: how end users authorize this client (the OAuth
/// authorization-code flow). Registration follows the MCP specification's
/// order: `client_id` (pre-registered), else `client_metadata_url` (a Client
/// ID Metadata Document) when the authorization server supports it, else
/// dynamic registration. `Debug` redacts the secret.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AuthConfig {
    /// Where the authorization server sends the user back (required).
    pub redirect_url: String,
    /// A pre-registered client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The pre-registered client's secret (needs `client_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// The https URL of this client's metadata document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_metadata_url: Option<String>,
    /// Scopes to ask for; empty: the server's challenge or metadata decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Pins the authorization server by its issuer identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The client name sent in dynamic registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// What an unauthorized session's first call does: `wait` for the user
    /// (up to `auth_flow_timeout`, the default) or `fail` at once with the
    /// URL to show them.
    #[serde(default)]
    pub mode: AuthMode,
}

/// `server.auth.mode`.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AuthMode {
    /// Wait for the user, up to `auth_flow_timeout`.
    #[default]
    Wait,
    /// Fail at once with the authorization URL.
    Fail,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("redirect_url", &redact_url(&self.redirect_url))
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("client_metadata_url", &self.client_metadata_url)
            .field("scopes", &self.scopes)
            .field("issuer", &self.issuer)
            .field("client_name", &self.client_name)
            .field("mode", &self.mode)
            .finish()
    }
}

impl AuthConfig {
    /// The transport's view of it.
    pub fn user_authorization(&self) -> mcp_group_core::UserAuthorization {
        let mut user = mcp_group_core::UserAuthorization::new(self.redirect_url.clone())
            .with_scopes(self.scopes.iter().cloned());
        if let Some(id) = &self.client_id {
            user = user.with_client(id.clone(), self.client_secret.clone());
        }
        if let Some(url) = &self.client_metadata_url {
            user = user.with_client_metadata_url(url.clone());
        }
        if let Some(issuer) = &self.issuer {
            user = user.with_issuer(issuer.clone());
        }
        user.client_name = self.client_name.clone();
        user
    }

    /// `server.auth`'s problems, with the field named.
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        let http_url = |url: &str| url.starts_with("http://") || url.starts_with("https://");
        if !http_url(&self.redirect_url) {
            return invalid(
                "server.auth.redirect_url",
                "must be an http:// or https:// URL",
            );
        }
        // The code comes back on it: in the clear only to this machine.
        let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
            .iter()
            .any(|prefix| {
                self.redirect_url
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
            });
        if self.redirect_url.starts_with("http://") && !loopback {
            return invalid(
                "server.auth.redirect_url",
                "plain http is allowed only on a loopback host (127.0.0.1, localhost, [::1])",
            );
        }
        if self.client_secret.is_some() && self.client_id.is_none() {
            return invalid(
                "server.auth.client_secret",
                "needs `client_id`: a secret belongs to a pre-registered client",
            );
        }
        if let Some(url) = &self.client_metadata_url {
            if !url.starts_with("https://") {
                return invalid("server.auth.client_metadata_url", "must be an https:// URL");
            }
        }
        if let Some(issuer) = &self.issuer {
            if !http_url(issuer) {
                return invalid("server.auth.issuer", "must be an http:// or https:// URL");
            }
        }
        if self
            .scopes
            .iter()
            .any(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            return invalid(
                "server.auth.scopes",
                "each scope must be one non-empty word",
            );
        }
        Ok(())
    }
}

/// A legacy HTTP+SSE server.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SseServer {
    /// The URL of the event stream (`http://` or `https://`).
    pub url: String,
    /// Headers sent with every request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_headers: BTreeMap<String, String>,
    /// Send credential-like headers over plain `http://` to a host that is
    /// not loopback (default false: refused).
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_insecure_http: bool,
}

fn is_false(value: &bool) -> bool {
    !value
}

impl std::fmt::Debug for StdioServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioServer")
            .field("command", &self.command)
            .field("args", &redact_args(&self.args))
            .field("env", &Redacted(&self.env))
            .field("cwd", &self.cwd)
            .field("inherit_env", &self.inherit_env)
            .finish()
    }
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("url", &redact_url(&self.url))
            .field("custom_headers", &Redacted(&self.custom_headers))
            .field("oauth_client_credentials", &self.oauth_client_credentials)
            .field("auth", &self.auth)
            .field("auth_provider", &self.auth_provider)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish()
    }
}

impl std::fmt::Debug for SseServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseServer")
            .field("url", &redact_url(&self.url))
            .field("custom_headers", &Redacted(&self.custom_headers))
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish()
    }
}

impl ServerConfig {
    /// A stdio server running `command` with `args`.
    pub fn stdio<I, S>(command: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ServerConfig::Stdio(StdioServer {
            command: command.into(),
            args: args.into_iter().map(Into::into).collect(),
            ..StdioServer::default()
        })
    }

    /// A streamable HTTP server at `url`.
    pub fn streamable_http(url: impl Into<String>) -> Self {
        ServerConfig::StreamableHttp(HttpServer {
            url: url.into(),
            ..HttpServer::default()
        })
    }

    /// A legacy HTTP+SSE server at `url`.
    pub fn sse(url: impl Into<String>) -> Self {
        ServerConfig::Sse(SseServer {
            url: url.into(),
            ..SseServer::default()
        })
    }

    /// A server reached at `url` over `transport` (streamable HTTP or SSE);
    /// an error for `stdio`, which has no URL.
    pub fn remote(transport: TransportKind, url: impl Into<String>) -> Result<Self, ConfigError> {
        match transport {
            TransportKind::StreamableHttp => Ok(Self::streamable_http(url)),
            TransportKind::Sse => Ok(Self::sse(url)),
            TransportKind::Stdio => Err(ConfigError::Invalid {
                field: "server.transport",
                reason: "\"stdio\" has no URL; give a command instead".to_owned(),
            }),
        }
    }

    /// The transport.
    pub fn kind(&self) -> TransportKind {
        match self {
            ServerConfig::Stdio(_) => TransportKind::Stdio,
            ServerConfig::StreamableHttp(_) => TransportKind::StreamableHttp,
            ServerConfig::Sse(_) => TransportKind::Sse,
        }
    }

    /// The URL of an HTTP or SSE server.
    pub fn url(&self) -> Option<&str> {
        match self {
            ServerConfig::Stdio(_) => None,
            ServerConfig::StreamableHttp(server) => Some(&server.url),
            ServerConfig::Sse(server) => Some(&server.url),
        }
    }
}

/// The transports a server can be reached over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TransportKind {
    /// A child process speaking MCP over stdin/stdout.
    #[default]
    #[serde(rename = "stdio")]
    Stdio,
    /// MCP streamable HTTP.
    #[serde(rename = "streamable-http")]
    StreamableHttp,
    /// Legacy HTTP+SSE.
    #[serde(rename = "sse")]
    Sse,
}

impl TransportKind {
    /// The configuration name (`stdio`, `streamable-http`, `sse`).
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Stdio => "stdio",
            TransportKind::StreamableHttp => "streamable-http",
            TransportKind::Sse => "sse",
        }
    }
}

impl std::str::FromStr for TransportKind {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdio" => Ok(TransportKind::Stdio),
            "streamable-http" => Ok(TransportKind::StreamableHttp),
            "sse" => Ok(TransportKind::Sse),
            _ => Err(ConfigError::Invalid {
                field: "server.transport",
                reason: format!("`{s}` is not one of \"stdio\", \"streamable-http\", \"sse\""),
            }),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file's extension is not `.toml`, `.yaml`, `.yml` or `.json`.
    #[error("config file {} must end in .toml, .yaml, .yml or .json", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// TOML that does not parse, or has unknown or mistyped keys.
    #[error("cannot parse the TOML config")]
    Toml {
        /// Where and why.
        #[source]
        source: ParseError,
    },
    /// YAML that does not parse, or has unknown or mistyped keys.
    #[error("cannot parse the YAML config")]
    Yaml {
        /// Where and why.
        #[source]
        source: ParseError,
    },
    /// JSON that does not parse, or has unknown or mistyped keys.
    #[error("cannot parse the JSON config")]
    Json {
        /// Where and why.
        #[source]
        source: ParseError,
    },
    /// The `include`/`exclude` patterns cannot be used.
    #[error("invalid config field `include`/`exclude`")]
    Patterns {
        /// The pattern's error.
        #[source]
        source: mcp_group_overrides::OverrideError,
    },
    /// The `name_prefix` cannot start a function name.
    #[error("invalid config field `name_prefix`")]
    NamePrefix {
        /// Why.
        #[source]
        source: mcp_group_overrides::NameProblem,
    },
    /// The protocol version is not one this client speaks.
    #[error("invalid config field `protocol_version`")]
    ProtocolVersion {
        /// The connection layer's error, naming the version.
        #[source]
        source: mcp_group_core::Error,
    },
    /// A field's value is not allowed, or contradicts another field.
    #[error("invalid config field `{field}`: {reason}")]
    Invalid {
        /// The field, as a dotted path.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    // What reading NeMo Agent Toolkit's files adds (module `nat`).
    /// A setting this client cannot honour; refused rather than ignored.
    #[error("config field `{field}` cannot be honoured: {reason}")]
    Unsupported {
        /// The field, as a dotted path.
        field: String,
        /// Why.
        reason: String,
    },
    /// The auth provider signs end users in (OAuth authorization code),
    /// which this client does not implement.
    #[error(
        "auth provider `{provider}` (`_type: {provider_type}`) needs end-user authorization (an OAuth authorization-code sign-in), which mcp-group does not implement; use client credentials (`mcp_service_account`) or static `custom_headers`"
    )]
    EndUserAuthorization {
        /// The provider's name in the `authentication` section.
        provider: String,
        /// Its `_type`.
        provider_type: String,
    },
    /// A `_type` this client does not read.
    #[error("`{field}` is {}; expected {expected}", crate::nat::shown_type(found.as_deref()))]
    UnknownType {
        /// The `_type` field, as a dotted path.
        field: String,
        /// Its value (`None`: missing).
        found: Option<String>,
        /// The types read there.
        expected: &'static str,
    },
    /// The workflow has no MCP function group of that name, or none at all.
    #[error("{}", crate::nat::no_group(name.as_deref(), available))]
    GroupNotFound {
        /// The name asked for.
        name: Option<String>,
        /// The workflow's MCP function groups.
        available: Vec<String>,
    },
    /// The workflow has several MCP function groups and none was named.
    #[error(
        "the workflow has several MCP function groups ({}); choose one by name",
        crate::nat::names(available)
    )]
    GroupRequired {
        /// Their names.
        available: Vec<String>,
    },
    /// `server.auth_provider` names no provider of the workflow's
    /// `authentication` section (or the file has none).
    #[error(
        "`server.auth_provider` names `{name}`, which no `authentication` section defines ({})",
        crate::nat::names(available)
    )]
    AuthProviderNotFound {
        /// The name.
        name: String,
        /// The providers the workflow defines.
        available: Vec<String>,
    },
    /// A section of a workflow file does not parse, or has unknown or
    /// mistyped keys.
    #[error("cannot parse workflow section `{section}`")]
    Section {
        /// The section, as a dotted path (`function_groups.docs`).
        section: String,
        /// Why (with no line: the file was read as a whole first).
        #[source]
        source: ParseError,
    },
    /// A `${VAR}` reference cannot be expanded.
    #[error("cannot expand `${{{variable}}}`: {reason}")]
    Substitution {
        /// The variable.
        variable: String,
        /// Why.
        reason: String,
    },
}

/// Where and why a configuration file does not parse.
///
/// The parser's own error is not kept: it quotes the offending line (and,
/// for TOML, the whole input), and a value in the wrong place may be a
/// secret. What is kept is the location and the parser's message with every
/// quoted value replaced by `"…"`; key names (in backticks) stay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", location(*line, *column))]
pub struct ParseError {
    /// The line, counted from 1, when the parser knows it.
    pub line: Option<usize>,
    /// The column, counted from 1, when the parser knows it.
    pub column: Option<usize>,
    /// The parser's message, quoted values redacted.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(line: Option<usize>, column: Option<usize>, message: &str) -> Self {
        // serde_json and serde_yaml append " at line L column C": it is in
        // the fields already.
        let message = match message.rfind(" at line ") {
            Some(at) if line.is_some() => &message[..at],
            _ => message,
        };
        Self {
            line,
            column,
            message: redact_quoted(message),
        }
    }

    /// The YAML parser's error, located when the parser knows where.
    pub(crate) fn yaml(error: &serde_yaml_ng::Error) -> Self {
        let location = error.location();
        Self::new(
            location.as_ref().map(|l| l.line()),
            location.as_ref().map(|l| l.column()),
            &error.to_string(),
        )
    }
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!("line {line}, column {column}: "),
        (Some(line), None) => format!("line {line}: "),
        _ => String::new(),
    }
}

/// The parser's message with every value replaced by `…`: quoted strings
/// (`string "sk-…"`) and the backticked values serde writes for numbers,
/// booleans and characters (``integer `918…` ``). Backticked key names
/// (``unknown field `comand` ``) stay.
fn redact_quoted(message: &str) -> String {
    const VALUE_KINDS: [&str; 4] = ["integer ", "floating point ", "boolean ", "character "];
    let mut out = String::with_capacity(message.len());
    // The delimiter that ends the value being skipped, if any.
    let mut skipping: Option<char> = None;
    let mut escaped = false;
    for c in message.chars() {
        if let Some(end) = skipping {
            if escaped {
                escaped = false;
            } else if c == '\\' && end == '"' {
                escaped = true;
            } else if c == end {
                skipping = None;
                out.push('…');
                out.push(c);
            }
            continue;
        }
        let starts_value =
            c == '"' || (c == '`' && VALUE_KINDS.iter().any(|kind| out.ends_with(kind)));
        out.push(c);
        if starts_value {
            skipping = Some(c);
        }
    }
    if skipping.is_some() {
        out.push('…');
    }
    out
}

/// The 1-based line and column of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl McpClientConfig {
    /// The client options this configuration asks for (the offered protocol
    /// version); add an elicitation handler to them and pass them to
    /// [`crate::FunctionGroup::connect_with`].
    pub fn client_options(&self) -> Result<mcp_group_core::ClientOptions, ConfigError> {
        let options = mcp_group_core::ClientOptions::new();
        match &self.protocol_version {
            Some(version) => options
                .with_protocol_version(version)
                .map_err(|source| ConfigError::ProtocolVersion { source }),
            None => Ok(options),
        }
    }

    /// A configuration for `server` with every other field at its default.
    pub fn new(server: ServerConfig) -> Self {
        Self {
            server,
            tool_call_timeout: defaults::tool_call_timeout(),
            reconnect_enabled: true,
            reconnect_max_attempts: defaults::reconnect_max_attempts(),
            reconnect_initial_backoff: defaults::reconnect_initial_backoff(),
            reconnect_max_backoff: defaults::reconnect_max_backoff(),
            max_sessions: defaults::max_sessions(),
            session_idle_timeout: defaults::session_idle_timeout(),
            session_limit_policy: SessionLimitPolicy::Reject,
            session_limit_wait: defaults::session_limit_wait(),
            tool_overrides: BTreeMap::new(),
            include: Vec::new(),
            exclude: Vec::new(),
            name_prefix: None,
            protocol_version: None,
            group_type: None,
            session_aware_tools: true,
            auth_flow_timeout: defaults::auth_flow_timeout(),
            middleware: Vec::new(),
        }
    }

    /// The presentation rules: overrides, filters and prefix.
    pub fn overrides(&self) -> mcp_group_overrides::Overrides {
        let mut overrides = mcp_group_overrides::Overrides::new(self.tool_overrides.clone());
        overrides.include = crate::nat::filter_names(self, &self.include);
        overrides.exclude = crate::nat::filter_names(self, &self.exclude);
        overrides.prefix = self.name_prefix.clone();
        overrides
    }

    /// Loads and validates a file; the format follows its extension.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Self::from_toml_str(&text),
            Some("yaml" | "yml") => Self::from_yaml_str(&text),
            Some("json") => Self::from_json_str(&text),
            _ => Err(ConfigError::UnknownFormat {
                path: path.to_owned(),
            }),
        }
    }

    /// Parses and validates TOML.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|error: toml::de::Error| {
            let (line, column) = error
                .span()
                .map(|span| line_and_column(text, span.start))
                .unzip();
            ConfigError::Toml {
                source: ParseError::new(line, column, error.message()),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Parses and validates YAML.
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_yaml_ng::from_str(text).map_err(|error| ConfigError::Yaml {
            source: ParseError::yaml(&error),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Parses and validates JSON.
    pub fn from_json_str(text: &str) -> Result<Self, ConfigError> {
        let config: Self =
            serde_json::from_str(text).map_err(|error: serde_json::Error| ConfigError::Json {
                source: ParseError::new(
                    Some(error.line()),
                    Some(error.column()),
                    &error.to_string(),
                ),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types cannot say: non-empty command, HTTP(S) URLs,
    /// limits and timeouts in range, override patterns and the name prefix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        crate::nat::validate(self)?;
        match &self.server {
            ServerConfig::Stdio(server) => {
                if server.command.trim().is_empty() {
                    return invalid("server.command", "must not be empty");
                }
            }
            ServerConfig::StreamableHttp(HttpServer { url, .. })
            | ServerConfig::Sse(SseServer { url, .. }) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return invalid(
                        "server.url",
                        &format!("`{}` is not an http:// or https:// URL", redact_url(url)),
                    );
                }
            }
        }
        if let ServerConfig::StreamableHttp(HttpServer {
            auth: Some(auth),
            oauth_client_credentials,
            ..
        }) = &self.server
        {
            auth.validate()?;
            if oauth_client_credentials.is_some() {
                return invalid(
                    "server.auth",
                    "cannot be combined with `oauth_client_credentials`: a server gets one kind of token",
                );
            }
        }
        if let ServerConfig::StreamableHttp(server) = &self.server {
            if server.oauth_client_credentials.is_some()
                && (server.custom_headers.keys()).any(|k| k.eq_ignore_ascii_case("authorization"))
            {
                return invalid(
                    "server.custom_headers",
                    "an `Authorization` header cannot be combined with \
                     `oauth_client_credentials`, which sends its own",
                );
            }
        }
        if self.max_sessions == 0 {
            return invalid("max_sessions", "must be at least 1");
        }
        if self.tool_call_timeout.is_zero() {
            return invalid("tool_call_timeout", "must be greater than zero");
        }
        for (field, value) in [
            ("tool_call_timeout", self.tool_call_timeout),
            ("reconnect_initial_backoff", self.reconnect_initial_backoff),
            ("reconnect_max_backoff", self.reconnect_max_backoff),
            ("session_idle_timeout", self.session_idle_timeout),
        ] {
            // Far beyond any use, and safe to add to any instant.
            if value > Duration::from_secs(100 * 365 * 24 * 3600) {
                return invalid(field, "must be at most 100 years");
            }
        }
        if self.session_idle_timeout.is_zero() {
            // Every session would expire as soon as its call ended, and every
            // call would open a new connection.
            return invalid("session_idle_timeout", "must be greater than zero");
        }
        if std::time::Instant::now()
            .checked_add(self.session_limit_wait)
            .is_none()
        {
            return invalid(
                "session_limit_wait",
                "is too long to be a deadline (use a realistic wait)",
            );
        }
        self.client_options()?;
        self.overrides()
            .validate()
            .map_err(|source| ConfigError::Patterns { source })?;
        if let Some(source) = self
            .name_prefix
            .as_deref()
            .filter(|p| !p.is_empty())
            .and_then(mcp_group_overrides::name_problem)
        {
            return Err(ConfigError::NamePrefix { source });
        }
        if self.reconnect_max_backoff < self.reconnect_initial_backoff {
            return invalid(
                "reconnect_max_backoff",
                "must not be less than reconnect_initial_backoff",
            );
        }
        Ok(())
    }
}

mod defaults {
    use std::time::Duration;

    use mcp_group_registry::RegistryConfig;

    pub(super) fn tool_call_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub(super) fn yes() -> bool {
        true
    }
    pub(super) fn reconnect_max_attempts() -> u32 {
        2
    }
    pub(super) fn reconnect_initial_backoff() -> Duration {
        Duration::from_millis(500)
    }
    pub(super) fn reconnect_max_backoff() -> Duration {
        Duration::from_secs(50)
    }
    pub(super) fn max_sessions() -> usize {
        RegistryConfig::DEFAULT_MAX_SESSIONS
    }
    pub(super) fn session_idle_timeout() -> Duration {
        RegistryConfig::DEFAULT_IDLE_TIMEOUT
    }
    pub(super) fn session_limit_wait() -> Duration {
        RegistryConfig::DEFAULT_LIMIT_WAIT
    }
    pub(super) fn auth_flow_timeout() -> Duration {
        Duration::from_secs(300)
    }
}

/// Durations as humantime strings (`"500ms"`, `"1h"`) or plain seconds (`30`, `0.5`).
mod duration {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Seconds(f64),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        use serde::de::Error;
        match Raw::deserialize(d)? {
            Raw::Text(text) => parse(&text).map_err(D::Error::custom),
            Raw::Seconds(secs) => Duration::try_from_secs_f64(secs)
                .map_err(|_| D::Error::custom(format!("{secs} is not a valid number of seconds"))),
        }
    }

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Parses `"1.5"` (seconds) or a humantime string.
    fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        if let Ok(secs) = text.parse::<f64>() {
            return Duration::try_from_secs_f64(secs)
                .map_err(|_| format!("`{text}` is not a valid number of seconds"));
        }
        humantime::parse_duration(text)
            .map_err(|e| format!("`{text}` is not a duration like \"500ms\" or \"1h\": {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_redacted_and_key_names_kept() {
        assert_eq!(
            redact_quoted(r#"invalid type: string "sk-\"live\"", expected usize"#),
            r#"invalid type: string "…", expected usize"#
        );
        assert_eq!(
            redact_quoted("unknown field `comand`, expected `command`"),
            "unknown field `comand`, expected `command`"
        );
        assert_eq!(redact_quoted(r#"unterminated "secr"#), r#"unterminated "…"#);
        assert_eq!(
            redact_quoted("invalid type: integer `918273645`, expected a string"),
            "invalid type: integer `…`, expected a string"
        );
        assert_eq!(
            redact_quoted("invalid type: floating point `1.5`, expected `x`"),
            "invalid type: floating point `…`, expected `x`"
        );
    }

    #[test]
    fn offsets_become_lines_and_columns() {
        assert_eq!(line_and_column("ab\ncd\nef", 4), (2, 2));
        assert_eq!(line_and_column("ab", 0), (1, 1));
        assert_eq!(line_and_column("ab", 99), (1, 3));
    }
}
