//! The configuration: a serde mirror of the seed's `MCPClientConfig`, with the
//! same field names and defaults, loadable from TOML, YAML or JSON.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use mcp_group_overrides::ToolOverride;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
    /// The first retry's delay (default 500 ms); doubled for each further retry.
    #[serde(default = "defaults::reconnect_initial_backoff", with = "duration")]
    pub reconnect_initial_backoff: Duration,
    /// The longest retry delay (default 50 s).
    #[serde(default = "defaults::reconnect_max_backoff", with = "duration")]
    pub reconnect_max_backoff: Duration,
    /// The most sessions (connections) open at once (default 100).
    #[serde(default = "defaults::max_sessions")]
    pub max_sessions: usize,
    /// A session unused this long is closed (default 1 h).
    #[serde(default = "defaults::session_idle_timeout", with = "duration")]
    pub session_idle_timeout: Duration,
    /// What a new session gets when `max_sessions` are open: `"reject"` (the
    /// default, as the seed), `"evict-lru-idle"` (close the least recently
    /// used session with no call in flight) or `"wait"` (up to
    /// `session_limit_wait` for one to be removed).
    #[serde(default)]
    pub session_limit_policy: SessionLimitPolicy,
    /// How long the `"wait"` policy waits (default 5 s).
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
    /// The MCP protocol version offered in the handshake (default
    /// `"2025-11-25"`, which current servers and the conformance suite
    /// accept; rmcp's own default, 2026-07-28, is refused by many).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
}

/// Which server, over which transport. Fields that do not belong to the
/// chosen transport are rejected by [`McpClientConfig::validate`]. `Debug`
/// redacts the values of credential-like headers and environment variables.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The transport.
    pub transport: TransportKind,
    /// stdio: the program to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// stdio: its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// stdio: extra environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// stdio: the working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// streamable-http / sse: the server URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// streamable-http / sse: headers sent with every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_headers: Option<BTreeMap<String, String>>,
    /// streamable-http: authorize with OAuth client credentials (the
    /// authorization server is discovered from the MCP server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_client_credentials: Option<OAuthClientCredentials>,
}

/// OAuth client credentials (`[server.oauth_client_credentials]`). `Debug`
/// redacts the secret.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClientCredentials {
    /// The client id.
    pub client_id: String,
    /// The client secret (for `client_secret_basic` / `_post`).
    #[serde(default)]
    pub client_secret: String,
    /// An ES256 private key, PKCS#8 PEM: authenticate with a signed JWT
    /// assertion (`private_key_jwt`) instead of the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_pem: Option<String>,
    /// The scope to ask for (space-separated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl std::fmt::Debug for OAuthClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClientCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field(
                "private_key_pem",
                &self.private_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("scope", &self.scope)
            .finish()
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use mcp_group_core::Redacted;
        f.debug_struct("ServerConfig")
            .field("transport", &self.transport)
            .field("command", &self.command)
            .field("args", &self.args)
            .field("env", &self.env.as_ref().map(Redacted))
            .field("cwd", &self.cwd)
            .field("url", &self.url)
            .field(
                "custom_headers",
                &self.custom_headers.as_ref().map(Redacted),
            )
            .field("oauth_client_credentials", &self.oauth_client_credentials)
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
        Self {
            transport: TransportKind::Stdio,
            command: Some(command.into()),
            args: Some(args.into_iter().map(Into::into).collect()),
            ..Self::default()
        }
    }

    /// A server reached at `url` over `transport` (streamable HTTP or SSE).
    pub fn remote(transport: TransportKind, url: impl Into<String>) -> Self {
        Self {
            transport,
            url: Some(url.into()),
            ..Self::default()
        }
    }
}

/// What a full registry does with a new session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SessionLimitPolicy {
    /// Refuse it with `SessionLimitReached`.
    #[default]
    Reject,
    /// Evict the least recently used session that has no call in flight.
    EvictLruIdle,
    /// Wait up to `session_limit_wait` for a slot.
    Wait,
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
    /// The text does not parse, or has unknown or mistyped keys.
    #[error("cannot parse {format} config: {message}")]
    Parse {
        /// `TOML`, `YAML` or `JSON`.
        format: &'static str,
        /// The parser's message (it names the key and, where it can, the line).
        message: String,
    },
    /// A field's value is not allowed, or contradicts another field.
    #[error("invalid config field `{field}`: {reason}")]
    Invalid {
        /// The field, as a dotted path.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl McpClientConfig {
    /// The client options this configuration asks for (the offered protocol
    /// version); add an elicitation handler to them and pass them to
    /// [`crate::FunctionGroup::connect_with`].
    pub fn client_options(&self) -> mcp_group_core::ClientOptions {
        let options = mcp_group_core::ClientOptions::new();
        match &self.protocol_version {
            Some(version) => options
                .clone()
                .with_protocol_version(version)
                .unwrap_or(options),
            None => options,
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
        }
    }

    /// The presentation rules: overrides, filters and prefix.
    pub fn overrides(&self) -> mcp_group_overrides::Overrides {
        let mut overrides = mcp_group_overrides::Overrides::new(self.tool_overrides.clone());
        overrides.include = self.include.clone();
        overrides.exclude = self.exclude.clone();
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
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            format: "TOML",
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Parses and validates YAML.
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Parse {
            format: "YAML",
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Parses and validates JSON.
    pub fn from_json_str(text: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
            format: "JSON",
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the rules the seed's validators enforce, and a few more.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        let server = &self.server;
        match server.transport {
            TransportKind::Stdio => {
                if server.url.is_some() {
                    return invalid("server.url", "not allowed with transport \"stdio\"");
                }
                if server.custom_headers.is_some() {
                    return invalid(
                        "server.custom_headers",
                        "not allowed with transport \"stdio\"",
                    );
                }
                if server.oauth_client_credentials.is_some() {
                    return invalid(
                        "server.oauth_client_credentials",
                        "not allowed with transport \"stdio\"",
                    );
                }
                match &server.command {
                    None => return invalid("server.command", "required for transport \"stdio\""),
                    Some(c) if c.trim().is_empty() => {
                        return invalid("server.command", "must not be empty");
                    }
                    Some(_) => {}
                }
            }
            TransportKind::StreamableHttp | TransportKind::Sse => {
                let name = server.transport.as_str();
                let stdio_only = [
                    ("server.command", server.command.is_some()),
                    ("server.args", server.args.is_some()),
                    ("server.env", server.env.is_some()),
                    ("server.cwd", server.cwd.is_some()),
                ];
                for (field, present) in stdio_only {
                    if present {
                        return invalid(field, &format!("not allowed with transport \"{name}\""));
                    }
                }
                match &server.url {
                    None => {
                        return invalid(
                            "server.url",
                            &format!("required for transport \"{name}\""),
                        );
                    }
                    Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                        return invalid(
                            "server.url",
                            &format!("`{url}` is not an http:// or https:// URL"),
                        );
                    }
                    Some(_) => {}
                }
            }
        }
        if self.max_sessions == 0 {
            return invalid("max_sessions", "must be at least 1");
        }
        if self.tool_call_timeout.is_zero() {
            return invalid("tool_call_timeout", "must be greater than zero");
        }
        if let Some(version) = &self.protocol_version {
            if !mcp_group_core::PROTOCOL_VERSIONS.contains(&version.as_str()) {
                return Err(ConfigError::Invalid {
                    field: "protocol_version",
                    reason: format!(
                        "unknown version {version:?}; one of {}",
                        mcp_group_core::PROTOCOL_VERSIONS.join(", ")
                    ),
                });
            }
        }
        if let Err(error) = self.overrides().validate() {
            return Err(ConfigError::Invalid {
                field: "include/exclude",
                reason: error.to_string(),
            });
        }
        if let Some(problem) = self
            .name_prefix
            .as_deref()
            .filter(|p| !p.is_empty())
            .and_then(mcp_group_overrides::name_problem)
        {
            return Err(ConfigError::Invalid {
                field: "name_prefix",
                reason: problem,
            });
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
        100
    }
    pub(super) fn session_idle_timeout() -> Duration {
        Duration::from_secs(3600)
    }
    pub(super) fn session_limit_wait() -> Duration {
        Duration::from_secs(5)
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
