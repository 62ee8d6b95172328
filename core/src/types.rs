//! The shared value types: session ids, server descriptions, tools, call results.

use std::{fmt, sync::Arc};

use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool};
use serde::{Deserialize, Serialize};

/// The id of one end-user session (a conversation). Each session gets its own
/// MCP connection. Cheap to clone.
///
/// Its hash is computed once, at creation, with a randomly keyed SipHash (as
/// `std`'s `HashMap` does, so ids chosen by users cannot flood a map), and
/// `Hash` writes only that number: maps keyed by session ids, looked up on
/// every call, skip rehashing the string.
#[derive(Clone, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct SessionId {
    id: Arc<str>,
    hash: u64,
}

fn session_hash(id: &str) -> u64 {
    use std::hash::BuildHasher;
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    KEYS.get_or_init(Default::default).hash_one(id)
}

impl SessionId {
    /// The id used for calls made without a session id; they all share one connection.
    pub const DEFAULT: &'static str = "default";

    /// Creates a session id.
    pub fn new(id: impl AsRef<str>) -> Self {
        let id: Arc<str> = Arc::from(id.as_ref());
        let hash = session_hash(&id);
        Self { id, hash }
    }

    /// The shared default session.
    pub fn default_session() -> Self {
        Self::new(Self::DEFAULT)
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.id
    }
}

impl PartialEq for SessionId {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && (Arc::ptr_eq(&self.id, &other.id) || self.id == other.id)
    }
}

impl Eq for SessionId {}

impl std::hash::Hash for SessionId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for SessionId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SessionId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.id.cmp(&other.id)
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::default_session()
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.id, f)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl From<&str> for SessionId {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for SessionId {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

impl From<SessionId> for String {
    fn from(id: SessionId) -> Self {
        id.id.to_string()
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.id
    }
}

/// What a transport connects to, for logs and error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerDescription {
    /// The transport's configuration name: `"stdio"`, `"streamable-http"`, `"sse"`, ...
    pub transport: &'static str,
    /// The command line or URL of the server.
    pub endpoint: String,
}

impl fmt::Display for ServerDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.endpoint, self.transport)
    }
}

/// One tool as the server describes it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ToolDescriptor {
    /// The server's name of the tool.
    pub name: String,
    /// A human-readable title, if the server gave one.
    pub title: Option<String>,
    /// The server's description.
    pub description: Option<String>,
    /// The JSON Schema of the arguments, exactly as the server sent it.
    pub input_schema: Arc<JsonObject>,
    /// The JSON Schema of the structured result, if any.
    pub output_schema: Option<Arc<JsonObject>>,
}

impl ToolDescriptor {
    /// Creates a descriptor with an input schema and no description.
    pub fn new(name: impl Into<String>, input_schema: JsonObject) -> Self {
        Self {
            name: name.into(),
            title: None,
            description: None,
            input_schema: Arc::new(input_schema),
            output_schema: None,
        }
    }

    /// Sets the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
}

impl From<Tool> for ToolDescriptor {
    fn from(tool: Tool) -> Self {
        Self {
            name: tool.name.into_owned(),
            title: tool.title,
            description: tool.description.map(|d| d.into_owned()),
            input_schema: tool.input_schema,
            output_schema: tool.output_schema,
        }
    }
}

/// The result of one tool call, with every content block the server sent.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    result: CallToolResult,
}

impl ToolOutput {
    /// Wraps rmcp's result.
    pub fn new(result: CallToolResult) -> Self {
        Self { result }
    }

    /// Whether the server flagged the result as a tool error (`isError`).
    pub fn is_error(&self) -> bool {
        self.result.is_error.unwrap_or(false)
    }

    /// Every content block, in order.
    pub fn content(&self) -> &[ContentBlock] {
        &self.result.content
    }

    /// The structured content, if the server sent any.
    pub fn structured_content(&self) -> Option<&serde_json::Value> {
        self.result.structured_content.as_ref()
    }

    /// The text contents joined with newlines (the plain-string view of a result).
    /// When there is no text block but structured content, its JSON text.
    pub fn to_text(&self) -> String {
        let texts: Vec<&str> = self
            .result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
            .collect();
        if texts.is_empty() {
            if let Some(structured) = &self.result.structured_content {
                return structured.to_string();
            }
        }
        texts.join("\n")
    }

    /// The result as JSON, as it came over the wire.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.result).unwrap_or(serde_json::Value::Null)
    }

    /// The rmcp result.
    pub fn into_inner(self) -> CallToolResult {
        self.result
    }
}

/// Whether a header or environment variable named `name` holds a credential,
/// whose value must never be shown (`Debug`, logs): `authorization`,
/// `proxy-authorization`, `cookie`, and any name containing `token`,
/// `secret`, `key`, `auth` or `password` (case-insensitive).
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie"
    ) || ["token", "secret", "key", "auth", "password"]
        .iter()
        .any(|word| name.contains(word))
}

/// The arguments with secret-looking values replaced: the value after a
/// flag named like a secret (`--api-key VALUE`), and the value of
/// `--token=VALUE` or `AUTH_TOKEN=VALUE` forms.
pub fn redact_args(args: &[String]) -> Vec<String> {
    const REDACTED: &str = "<redacted>";
    let mut out = Vec::with_capacity(args.len());
    let mut next_is_secret = false;
    let mut next_is_header = false;
    for arg in args {
        if std::mem::take(&mut next_is_secret) {
            out.push(REDACTED.to_owned());
            continue;
        }
        if std::mem::take(&mut next_is_header) {
            // `-H "Authorization: Bearer …"`: the value of a secret header.
            match arg.split_once(':') {
                Some((name, _)) if is_secret_name(name.trim()) => {
                    out.push(format!("{name}: {REDACTED}"));
                }
                _ => out.push(arg.clone()),
            }
            continue;
        }
        if arg == "-H" || arg == "--header" {
            next_is_header = true;
            out.push(arg.clone());
            continue;
        }
        if arg.contains("://") {
            // `postgresql://admin:pw@db/prod`, `DATABASE_URL=postgres://…`.
            match arg.split_once('=') {
                Some((name, value)) if !name.contains("://") && value.contains("://") => {
                    out.push(format!("{name}={}", redact_url(value)));
                }
                _ => out.push(redact_url(arg)),
            }
            continue;
        }
        if let Some((name, _)) = arg.split_once('=') {
            if is_secret_name(name.trim_start_matches('-')) {
                out.push(format!("{name}={REDACTED}"));
                continue;
            }
        } else if arg.starts_with('-') && is_secret_name(arg.trim_start_matches('-')) {
            next_is_secret = true;
        }
        out.push(arg.clone());
    }
    out
}

/// `url` as logs, errors and descriptions show it: userinfo
/// (`user:password@`), the query and the fragment — where credentials
/// travel in URLs — are replaced by `<redacted>`.
pub fn redact_url(url: &str) -> String {
    const REDACTED: &str = "<redacted>";
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    // Userinfo ends at the last `@` (a password may hold `/`, `?`, `#` or
    // `@` unencoded; an `@` in a path or query only costs showing less).
    let (userinfo, rest) = match rest.rfind('@') {
        Some(at) => (format!("{REDACTED}@"), &rest[at + 1..]),
        None => (String::new(), rest),
    };
    let end_of_target = rest.find(['?', '#']).unwrap_or(rest.len());
    let (target, tail) = rest.split_at(end_of_target);
    let target = format!("{userinfo}{target}");
    let tail = match tail.chars().next() {
        Some(mark) => format!("{mark}{REDACTED}"),
        None => String::new(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{target}{tail}"),
        None => format!("{target}{tail}"),
    }
}

/// A map of names to values whose `Debug` redacts the secret ones.
pub struct Redacted<'a>(pub &'a std::collections::BTreeMap<String, String>);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                (
                    k.as_str(),
                    if is_secret_name(k) {
                        "<redacted>"
                    } else {
                        v.as_str()
                    },
                )
            }))
            .finish()
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn urls_and_header_values_in_arguments_are_redacted() {
        let args = strings(&[
            "postgresql://admin:hunter2@db/prod",
            "-H",
            "Authorization: Bearer sk-live-1",
            "DATABASE_URL=postgres://u:hunter3@h/db",
            "--header",
            "X-Team: search",
        ]);
        let shown = redact_args(&args).join(" ");
        for secret in ["hunter2", "sk-live-1", "hunter3"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            shown.contains("X-Team: search") && shown.contains("db/prod"),
            "{shown}"
        );
    }

    #[test]
    fn a_password_holding_url_delimiters_is_still_redacted() {
        assert_eq!(
            redact_url("https://bot:abc/def@host/mcp"),
            "https://<redacted>@host/mcp"
        );
        assert_eq!(
            redact_url("https://bot:abc#123@host"),
            "https://<redacted>@host"
        );
        assert_eq!(
            redact_url("https://bot:a?b@host/mcp?k=v"),
            "https://<redacted>@host/mcp?<redacted>"
        );
    }

    #[test]
    fn urls_lose_their_userinfo_query_and_fragment() {
        assert_eq!(
            redact_url("https://user:pa55@mcp.example.com:8443/mcp?api_key=k3y#t=1"),
            "https://<redacted>@mcp.example.com:8443/mcp?<redacted>"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:3001/mcp"),
            "http://127.0.0.1:3001/mcp"
        );
        assert_eq!(redact_url("http://h?token=x"), "http://h?<redacted>");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn secret_looking_arguments_are_redacted_and_the_rest_kept() {
        let args = strings(&[
            "--api-key",
            "k1",
            "--token=k2",
            "GITHUB_TOKEN=k3",
            "--port",
            "3000",
            "serve",
        ]);
        assert_eq!(
            redact_args(&args),
            strings(&[
                "--api-key",
                "<redacted>",
                "--token=<redacted>",
                "GITHUB_TOKEN=<redacted>",
                "--port",
                "3000",
                "serve",
            ])
        );
    }
}
