//! The shared value types: session ids, server descriptions, tools, call results.

use std::{fmt, sync::Arc};

use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The id of one end-user session (a conversation). Each session gets its own
/// MCP connection. Cheap to clone.
///
/// An id is either a name — 1 to [`SessionId::MAX_LEN`] bytes, made with
/// [`SessionId::try_new`] (or [`SessionId::new`] for names the program
/// chooses) — or the group's shared default session,
/// [`SessionId::default_session`], which no string maps to: a caller that
/// sends `"default"` gets a session named `default`, not the shared one.
///
/// `Display` and `Debug` escape control characters, so an id cannot forge
/// a log line.
///
/// Its hash is computed once, at creation, with a randomly keyed SipHash (as
/// `std`'s `HashMap` does, so ids chosen by users cannot flood a map), and
/// `Hash` writes only that number: maps keyed by session ids, looked up on
/// every call, skip rehashing the string.
#[derive(Clone)]
pub struct SessionId {
    /// `None`: the default session.
    name: Option<Arc<str>>,
    hash: u64,
}

/// The process's random hash keys for session ids and keys.
fn hash_keys() -> &'static std::collections::hash_map::RandomState {
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    KEYS.get_or_init(Default::default)
}

fn session_hash(name: Option<&str>) -> u64 {
    use std::hash::BuildHasher;
    hash_keys().hash_one(name)
}

impl SessionId {
    /// The longest session id accepted, in bytes.
    pub const MAX_LEN: usize = 256;

    /// A session named `name`: 1 to [`SessionId::MAX_LEN`] bytes, or
    /// [`Error::InvalidSessionId`]. Use it for ids that come from input.
    pub fn try_new(name: impl AsRef<str>) -> Result<Self, Error> {
        let name = name.as_ref();
        let reason = if name.is_empty() {
            "it is empty"
        } else if name.len() > Self::MAX_LEN {
            "it is longer than 256 bytes"
        } else {
            let name: Arc<str> = Arc::from(name);
            let hash = session_hash(Some(&name));
            return Ok(Self {
                name: Some(name),
                hash,
            });
        };
        Err(Error::InvalidSessionId { reason })
    }

    /// A session named `name`, for ids the program itself chooses.
    ///
    /// # Panics
    /// If `name` is empty or longer than [`SessionId::MAX_LEN`] bytes; ids
    /// from input go through [`SessionId::try_new`].
    #[track_caller]
    pub fn new(name: impl AsRef<str>) -> Self {
        match Self::try_new(name) {
            Ok(id) => id,
            Err(error) => panic!("{error}"),
        }
    }

    /// The shared default session: calls made without a session id. No
    /// string names it.
    pub fn default_session() -> Self {
        static DEFAULT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        Self {
            name: None,
            hash: *DEFAULT.get_or_init(|| session_hash(None)),
        }
    }

    /// Whether this is the shared default session.
    pub fn is_default(&self) -> bool {
        self.name.is_none()
    }

    /// The session's name, as given (unescaped); `None` for the default session.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl PartialEq for SessionId {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && match (&self.name, &other.name) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                (None, None) => true,
                _ => false,
            }
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
        self.name.cmp(&other.name)
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::default_session()
    }
}

/// Writes `text` with control characters (and the Unicode line and
/// paragraph separators) escaped as `\n`, `\u{1b}`, ...: user-chosen text
/// in a log line stays on that line.
pub(crate) fn write_escaped(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    for c in text.chars() {
        if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            write!(f, "{}", c.escape_default())?;
        } else {
            fmt::Write::write_char(f, c)?;
        }
    }
    Ok(())
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => fmt::Debug::fmt(&**name, f),
            None => f.write_str("<default>"),
        }
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write_escaped(f, name),
            None => f.write_str("<default>"),
        }
    }
}

impl TryFrom<&str> for SessionId {
    type Error = Error;

    fn try_from(s: &str) -> Result<Self, Error> {
        Self::try_new(s)
    }
}

impl TryFrom<String> for SessionId {
    type Error = Error;

    fn try_from(s: String) -> Result<Self, Error> {
        Self::try_new(s)
    }
}

/// A named session serializes as its name, the default session as `null`.
impl Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.name.as_deref().serialize(serializer)
    }
}

/// Only names deserialize (as [`SessionId::try_new`] checks them): input
/// never reaches the default session.
impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::try_new(name).map_err(serde::de::Error::custom)
    }
}

/// Which session a connection serves: the principal it acts for and the
/// session id within that principal's sessions. The session registry is
/// keyed by it, and transports receive it ([`crate::Transport::connect`]),
/// so per-session credentials and questions to the user go to the right
/// end user.
///
/// The principal is the end user as the application authenticated them.
/// No principal is a namespace of its own, distinct from every named
/// principal: the same session id under two principals (or under one and
/// none) is two sessions, and neither can reach, probe or inherit the
/// other. Cheap to clone; its hash is computed once (without a principal it
/// is the session id's own, so the common case costs nothing more).
#[derive(Clone)]
pub struct SessionKey {
    principal: Option<Arc<str>>,
    session: SessionId,
    hash: u64,
}

impl SessionKey {
    /// The session `session` without a principal.
    pub fn new(session: SessionId) -> Self {
        let hash = session.hash;
        Self {
            principal: None,
            session,
            hash,
        }
    }

    /// The session `session` of `principal` (`None`: no principal).
    pub fn with_principal(principal: Option<&str>, session: SessionId) -> Self {
        match principal {
            None => Self::new(session),
            Some(principal) => {
                use std::hash::BuildHasher;
                let hash = hash_keys().hash_one((principal, session.hash));
                Self {
                    principal: Some(Arc::from(principal)),
                    session,
                    hash,
                }
            }
        }
    }

    /// The shared default session, without a principal: the key of a
    /// function group's base client.
    pub fn default_session() -> Self {
        Self::new(SessionId::default_session())
    }

    /// The principal, if any.
    pub fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// The session id.
    pub fn session(&self) -> &SessionId {
        &self.session
    }
}

impl From<SessionId> for SessionKey {
    fn from(session: SessionId) -> Self {
        Self::new(session)
    }
}

impl PartialEq for SessionKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && self.session == other.session
            && match (&self.principal, &other.principal) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                _ => false,
            }
    }
}

impl Eq for SessionKey {}

impl std::hash::Hash for SessionKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for SessionKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SessionKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.principal, &self.session).cmp(&(&other.principal, &other.session))
    }
}

/// The session id, then the principal in parentheses when there is one;
/// both escaped as [`SessionId`]'s `Display` escapes.
impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.session, f)?;
        if let Some(principal) = &self.principal {
            f.write_str(" (principal ")?;
            write_escaped(f, principal)?;
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKey")
            .field("principal", &self.principal)
            .field("session", &self.session)
            .finish()
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

#[cfg(test)]
mod session_id_tests {
    #[test]
    fn one_session_id_under_two_principals_is_two_keys() {
        let id = SessionId::new("chat-7");
        let alice = SessionKey::with_principal(Some("alice"), id.clone());
        let bob = SessionKey::with_principal(Some("bob"), id.clone());
        let nobody = SessionKey::new(id.clone());
        assert_ne!(alice, bob);
        assert_ne!(alice, nobody);
        assert_ne!(bob, nobody);
        assert_eq!(alice, SessionKey::with_principal(Some("alice"), id.clone()));
        assert_eq!(nobody, SessionKey::with_principal(None, id));
        assert_eq!(alice.to_string(), "chat-7 (principal alice)");
    }

    use super::*;

    #[test]
    fn no_string_names_the_default_session() {
        let default = SessionId::default_session();
        for name in ["default", "<default>", "null"] {
            let id = SessionId::try_new(name).unwrap();
            assert_ne!(id, default, "{name:?}");
            assert!(!id.is_default());
        }
        let parsed: SessionId = serde_json::from_str("\"default\"").unwrap();
        assert_ne!(parsed, default);
        assert!(serde_json::from_str::<SessionId>("null").is_err());
        assert_eq!(default, SessionId::default());
        assert_eq!(default.name(), None);
    }

    #[test]
    fn empty_and_overlong_session_ids_are_a_typed_error() {
        for name in [String::new(), "x".repeat(SessionId::MAX_LEN + 1)] {
            let err = SessionId::try_new(&name).unwrap_err();
            assert!(matches!(err, Error::InvalidSessionId { .. }), "{err:?}");
        }
        assert!(serde_json::from_str::<SessionId>("\"\"").is_err());
        let longest = "é".repeat(SessionId::MAX_LEN / 2);
        assert_eq!(
            SessionId::try_new(&longest).unwrap().name(),
            Some(&*longest)
        );
    }

    #[test]
    fn a_newline_in_a_session_id_cannot_forge_a_log_line() {
        let id = SessionId::new("alice\nINFO forged line\r\u{1b}[2J\u{2028}");
        let shown = id.to_string();
        assert_eq!(shown, "alice\\nINFO forged line\\r\\u{1b}[2J\\u{2028}");
        let debugged = format!("{id:?}");
        assert!(!debugged.contains(['\n', '\r', '\u{1b}']), "{debugged}");
        assert_eq!(
            id.name(),
            Some("alice\nINFO forged line\r\u{1b}[2J\u{2028}")
        );
    }
}
