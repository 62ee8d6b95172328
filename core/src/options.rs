//! How the client presents itself in the handshake, and how it answers what a
//! server asks of it (elicitation).

use std::{fmt, sync::Arc};

use rmcp::{
    model::{JsonObject, ProtocolVersion},
    service::ClientLifecycleMode,
};
use serde_json::Value;

use crate::{AuthorizationMode, Authorizer, Error, SessionKey};

/// Options of the client side of every connection a transport opens.
///
/// ```
/// use std::sync::Arc;
/// use mcp_group_core::{AcceptDefaults, ClientOptions};
///
/// // By default the client negotiates the era: it probes with
/// // `server/discover` (2026-07-28) and falls back to `initialize`.
/// assert_eq!(ClientOptions::new().protocol_version(), "auto");
///
/// let options = ClientOptions::new()
///     .with_protocol_version("2025-06-18")
///     .unwrap()
///     .with_elicitation(Arc::new(AcceptDefaults));
/// assert_eq!(options.protocol_version(), "2025-06-18");
/// ```
#[derive(Clone)]
pub struct ClientOptions {
    /// `None`: negotiate (`"auto"`).
    protocol_version: Option<ProtocolVersion>,
    elicitation: Option<Arc<dyn Elicitation>>,
    authorizer: Option<Arc<dyn Authorizer>>,
    authorization_mode: AuthorizationMode,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("protocol_version", &self.protocol_version())
            .field("elicitation", &self.elicitation.is_some())
            .field("authorizer", &self.authorizer.is_some())
            .field("authorization_mode", &self.authorization_mode)
            .finish()
    }
}

/// The protocol versions a client may be pinned to; besides these,
/// [`ClientOptions::with_protocol_version`] takes `"auto"`.
pub const PROTOCOL_VERSIONS: [&str; 5] = [
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];

impl ClientOptions {
    /// Negotiates the protocol era (`"auto"`) and declines every
    /// elicitation.
    pub fn new() -> Self {
        Self {
            protocol_version: None,
            elicitation: None,
            authorizer: None,
            authorization_mode: AuthorizationMode::default(),
        }
    }

    /// Pins the protocol version, or negotiates it with `"auto"`; one of
    /// [`PROTOCOL_VERSIONS`] or `"auto"`, else
    /// [`Error::UnsupportedProtocolVersion`].
    ///
    /// - `"auto"`: probe with `server/discover` offering 2026-07-28; a
    ///   server that answers it with a JSON-RPC error is a 2025-era server,
    ///   and the same connection falls back to `initialize` offering
    ///   2025-11-25.
    /// - `"2026-07-28"`: `server/discover` only; a legacy server is an error.
    /// - an earlier version: the `initialize` handshake offering it.
    pub fn with_protocol_version(mut self, version: &str) -> Result<Self, Error> {
        let unsupported = || Error::UnsupportedProtocolVersion {
            version: version.to_owned(),
        };
        if version == AUTO {
            self.protocol_version = None;
            return Ok(self);
        }
        if !PROTOCOL_VERSIONS.contains(&version) {
            return Err(unsupported());
        }
        self.protocol_version =
            Some(serde_json::from_value(Value::from(version)).map_err(|_| unsupported())?);
        Ok(self)
    }

    /// These options for a transport of the 2025 era only (HTTP+SSE):
    /// negotiating or a pinned 2026-07-28 become 2025-11-25, the newest
    /// version with the `initialize` handshake; an older pin stays.
    pub fn legacy_only(mut self) -> Self {
        if !self
            .protocol_version
            .as_ref()
            .is_some_and(ProtocolVersion::has_initialize)
        {
            self.protocol_version = Some(ProtocolVersion::LATEST_WITH_INITIALIZE);
        }
        self
    }

    /// The protocol version pinned, or `"auto"`.
    pub fn protocol_version(&self) -> String {
        match &self.protocol_version {
            Some(version) => version.to_string(),
            None => AUTO.to_owned(),
        }
    }

    /// The version the `initialize` handshake offers: the pinned one, or
    /// 2025-11-25 (the newest with a handshake) when negotiating.
    pub(crate) fn initialize_version(&self) -> ProtocolVersion {
        match &self.protocol_version {
            Some(version) if version.has_initialize() => version.clone(),
            _ => ProtocolVersion::LATEST_WITH_INITIALIZE,
        }
    }

    /// Whether the era is negotiated (`"auto"`).
    pub(crate) fn negotiates(&self) -> bool {
        self.protocol_version.is_none()
    }

    /// Whether a version without a handshake (2026-07-28) is pinned.
    pub(crate) fn pins_modern(&self) -> bool {
        self.protocol_version
            .as_ref()
            .is_some_and(|version| !version.has_initialize())
    }

    /// How rmcp opens the connection for these options.
    pub(crate) fn lifecycle(&self) -> ClientLifecycleMode {
        match &self.protocol_version {
            None => ClientLifecycleMode::Auto {
                preferred_versions: vec![ProtocolVersion::LATEST],
                legacy_version: Some(ProtocolVersion::LATEST_WITH_INITIALIZE),
            },
            Some(version) if version.has_initialize() => ClientLifecycleMode::Initialize,
            Some(version) => ClientLifecycleMode::Discover {
                preferred_versions: vec![version.clone()],
            },
        }
    }

    /// Answers servers' form elicitations with `handler` (and advertises the
    /// `elicitation` capability). Without one, the client does not advertise
    /// it and declines.
    pub fn with_elicitation(mut self, handler: Arc<dyn Elicitation>) -> Self {
        self.elicitation = Some(handler);
        self
    }

    pub(crate) fn elicitation(&self) -> Option<&Arc<dyn Elicitation>> {
        self.elicitation.as_ref()
    }

    /// Signs sessions' end users in with `authorizer` when a server demands
    /// OAuth, in `mode`. Without one, such a server's sessions fail.
    pub fn with_authorizer(
        mut self,
        authorizer: Arc<dyn Authorizer>,
        mode: AuthorizationMode,
    ) -> Self {
        self.authorizer = Some(authorizer);
        self.authorization_mode = mode;
        self
    }

    /// The authorizer, if any.
    pub fn authorizer(&self) -> Option<&Arc<dyn Authorizer>> {
        self.authorizer.as_ref()
    }

    /// What an unauthorized session's first call does.
    pub fn authorization_mode(&self) -> AuthorizationMode {
        self.authorization_mode
    }
}

/// The value of [`ClientOptions::with_protocol_version`] that negotiates.
pub const AUTO: &str = "auto";

/// How a form elicitation was answered.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ElicitationAnswer {
    /// Accepted with these fields; fields the handler leaves out that the
    /// requested schema gives a `default` for are filled in with it (SEP-1034).
    Accept(JsonObject),
    /// Declined; the operation continues without the information.
    Decline,
    /// Cancelled; the whole operation should stop.
    Cancel,
}

/// Answers a server's request for user input (`elicitation/create`, form mode).
///
/// One handler serves every session's connection; each request comes with
/// the [`SessionKey`] of the connection the server asked on (its session id
/// and principal), so the question can be routed to that end user. At most
/// [`crate::MAX_SERVER_REQUESTS_PER_SESSION`] requests of one session are in
/// the handler at once; the server gets an error for any beyond that.
#[async_trait::async_trait]
pub trait Elicitation: Send + Sync + 'static {
    /// `session` is the session the server asked in; `schema` is the
    /// requested schema (an object schema with primitive properties).
    async fn elicit(
        &self,
        session: &SessionKey,
        message: &str,
        schema: &JsonObject,
    ) -> ElicitationAnswer;
}

/// Accepts every elicitation with the defaults its schema declares: for an
/// agent running unattended, where "the user" is the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptDefaults;

#[async_trait::async_trait]
impl Elicitation for AcceptDefaults {
    async fn elicit(
        &self,
        _session: &SessionKey,
        _message: &str,
        _schema: &JsonObject,
    ) -> ElicitationAnswer {
        ElicitationAnswer::Accept(JsonObject::new())
    }
}

/// Fills in, from `schema`'s `properties`, every `default` whose field
/// `content` lacks.
pub fn apply_defaults(schema: &JsonObject, content: &mut JsonObject) {
    let Some(Value::Object(properties)) = schema.get("properties") else {
        return;
    };
    for (name, property) in properties {
        if content.contains_key(name) {
            continue;
        }
        if let Some(default) = property.get("default") {
            content.insert(name.clone(), default.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_fill_only_what_is_missing() {
        let schema = json!({"type": "object", "properties": {
            "name": {"type": "string", "default": "John Doe"},
            "age": {"type": "integer", "default": 30},
            "nick": {"type": "string"},
        }});
        let Value::Object(schema) = schema else {
            unreachable!()
        };
        let mut content = JsonObject::new();
        content.insert("age".into(), json!(41));
        apply_defaults(&schema, &mut content);
        assert_eq!(
            Value::Object(content),
            json!({"name": "John Doe", "age": 41})
        );
    }

    #[test]
    fn unknown_protocol_versions_are_refused() {
        let err = ClientOptions::new()
            .with_protocol_version("1999-01-01")
            .unwrap_err();
        assert!(
            matches!(&err, Error::UnsupportedProtocolVersion { version } if version == "1999-01-01"),
            "{err:?}"
        );
        let options = ClientOptions::new()
            .with_protocol_version("2025-03-26")
            .unwrap();
        assert_eq!(options.protocol_version(), "2025-03-26");
    }
}
