//! The MCP streamable HTTP transport of [mcp-group].
//!
//! Each connection is rmcp's streamable HTTP client (the `initialize`
//! handshake, `Mcp-Session-Id`, SSE response streams with `Last-Event-ID`
//! resumption, re-initialization when the server answers 404 to an expired
//! session, and `DELETE` of the session on close) over one **shared** reqwest
//! connection pool, so a thousand sessions do not mean a thousand pools.
//! What this crate adds:
//!
//! - against a server of the 2026-07-28 era, one rmcp client for all
//!   sessions: once the first connection has found the era, every new
//!   session gets a share of one client ([`mcp_group_core::Connection::share`],
//!   [`StreamableHttpTransport::with_shared_connection`]), so its first call
//!   is its first request and an idle session is a small handle. Each
//!   request carries its session's tag, and the HTTP client under the shared
//!   rmcp client sends it with that session's headers and its user's
//!   token; what rmcp sends on its own (a response stream's resumption)
//!   carries no session's credentials. This is hand-written because rmcp
//!   3.11 fixes a client's headers and credentials when the client is
//!   built; it does pass each request's extensions to the HTTP client,
//!   which is where the tag travels;
//! - `custom_headers` from the configuration on every request, and a
//!   per-session [`HeaderProvider`] (given the session's key — its id and
//!   principal — the headers to add,
//!   e.g. each end user's `Authorization: Bearer …`), so that every session's
//!   client carries its own credentials;
//! - secrets stay secret: header values are marked sensitive for the HTTP
//!   stack, and [`HttpConfig`]'s `Debug` redacts credential-bearing headers
//!   (`authorization`, `cookie`, `proxy-authorization`, any name containing
//!   `token`, `secret`, `key`, `auth` or `password`); those headers and
//!   OAuth tokens are never sent over plain http to a host that is not
//!   loopback unless [`HttpConfig::allow_insecure_http`] says so;
//! - end-user authorization: with [`StreamableHttpTransport::with_user_authorization`]
//!   and an [`Authorizer`](mcp_group_core::Authorizer) in the client
//!   options, a server's `401` starts the OAuth authorization-code flow on
//!   rmcp's `auth` module (discovery, registration, PKCE, `iss` check),
//!   once per principal; tokens are kept per principal, issuer and resource
//!   in a [`TokenStore`], refreshed single-flight, and never sent for
//!   another principal; `403 insufficient_scope` asks for more scopes
//!   ([`MAX_STEP_UPS`] per request); tokens are DPoP-bound (RFC 9449, with
//!   server nonces) when the authorization server supports it. [`FollowRedirect`] is an authorizer for
//!   authorization servers that approve on their own;
//! - connection failures (refused, reset) are reported as
//!   [`mcp_group_core::Error::Connect`], which callers retry with backoff,
//!   distinct from a server that answered but failed the handshake
//!   ([`mcp_group_core::Error::Handshake`]); this crate's own failures (a bad
//!   URL or header, an HTTP client that cannot be built, OAuth) are [`Error`];
//! - only the default session opens the optional standalone `GET` stream for
//!   server-initiated messages ([`StandaloneStreams`]): rmcp opens one per
//!   session, and each holds an idle connection for the session's whole life
//!   (1,000 sessions: 1,000 sockets, and about a third of the client's memory
//!   per session). rmcp has no switch for it, so a thin wrapper around its
//!   reqwest client declines that one request; the group still hears
//!   server-wide notifications such as `tools/list_changed` on the default
//!   session;
//! - every request has a connect timeout and a read timeout
//!   ([`HttpConfig::connect_timeout`], [`HttpConfig::read_timeout`]): a
//!   server that accepts and never answers, or an event stream that stalls,
//!   ends in an error instead of a wait without end; OAuth discovery and
//!   token answers are read up to 1 MiB.
//!
//! ```no_run
//! use std::sync::Arc;
//! use mcp_group_core::{SessionId, SessionKey, Transport};
//! use mcp_group_transport_http::{HttpConfig, StreamableHttpTransport};
//!
//! # fn token_of(principal: Option<&str>) -> String { String::new() }
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = HttpConfig::new("http://127.0.0.1:3001/mcp")?.header("X-Team", "search");
//! let transport = StreamableHttpTransport::new(config)?
//!     .with_header_provider(Arc::new(|key: &SessionKey| {
//!         // The end user the session was opened for.
//!         vec![("authorization".to_owned(), format!("Bearer {}", token_of(key.principal())))]
//!     }));
//! let alice = SessionKey::with_principal(Some("alice"), SessionId::new("chat-1"));
//! let connection = transport.connect(&alice).await?;
//! connection.close().await; // sends DELETE for the MCP session
//! # Ok(()) }
//! ```
//!
//! [mcp-group]: https://docs.rs/mcp-group

use std::{collections::BTreeMap, fmt, sync::Arc, time::Duration};

pub use authorization::{
    BACKGROUND_SIGN_IN_LIMIT, DEFAULT_TOKEN_STORE_CAPACITY, InMemoryTokenStore,
    MAX_PRINCIPAL_REQUESTS, MAX_STEP_UPS, OAUTH_REQUEST_TIMEOUT, TokenStore,
};
/// rmcp's credential-store types, which a [`TokenStore`] hands out and a
/// store of one's own implements.
pub mod credentials {
    pub use rmcp::transport::auth::{
        AuthError, CredentialRefreshGuard, CredentialStore, OAuthTokenResponse, StoredCredentials,
    };
}
pub use error::{Error, OAuthFailure};
pub use follow::{FollowRedirect, redirect_parameters};
use mcp_group_core::{
    ClientOptions, Connection, EraMemory, Error as CoreError, Redacted, ServerDescription,
    SessionKey, Transport, is_secret_name, negotiate, redact_url,
};
pub use oauth::ClientCredentials;
pub use standalone::StandaloneStreams;

/// The `StreamableHttpClient` methods that only choose limits, routed to
/// the variants with limits as rmcp's own reqwest client routes them:
/// `post_message` and `post_message_with_max_sse_event_size` to
/// `post_message_with_response_limits`, `get_stream` to
/// `get_stream_with_max_sse_event_size` with rmcp's default limits. Each of
/// this crate's clients writes those two (and `delete_session`) and invokes
/// this in its impl.
macro_rules! limited_variants {
    () => {
        async fn post_message(
            &self,
            uri: ::std::sync::Arc<str>,
            message: ::rmcp::model::ClientJsonRpcMessage,
            session_id: Option<::std::sync::Arc<str>>,
            auth_header: Option<String>,
            custom_headers: ::std::collections::HashMap<
                ::reqwest::header::HeaderName,
                ::reqwest::header::HeaderValue,
            >,
        ) -> ::std::result::Result<
            ::rmcp::transport::streamable_http_client::StreamableHttpPostResponse,
            ::rmcp::transport::streamable_http_client::StreamableHttpError<reqwest::Error>,
        > {
            self.post_message_with_response_limits(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                Default::default(),
            )
            .await
        }

        async fn post_message_with_max_sse_event_size(
            &self,
            uri: ::std::sync::Arc<str>,
            message: ::rmcp::model::ClientJsonRpcMessage,
            session_id: Option<::std::sync::Arc<str>>,
            auth_header: Option<String>,
            custom_headers: ::std::collections::HashMap<
                ::reqwest::header::HeaderName,
                ::reqwest::header::HeaderValue,
            >,
            max_sse_event_size: usize,
        ) -> ::std::result::Result<
            ::rmcp::transport::streamable_http_client::StreamableHttpPostResponse,
            ::rmcp::transport::streamable_http_client::StreamableHttpError<reqwest::Error>,
        > {
            let mut limits =
                ::rmcp::transport::streamable_http_client::StreamableHttpResponseLimits::default();
            limits.max_sse_event_size = max_sse_event_size;
            self.post_message_with_response_limits(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                limits,
            )
            .await
        }

        async fn get_stream(
            &self,
            uri: ::std::sync::Arc<str>,
            session_id: Option<::std::sync::Arc<str>>,
            last_event_id: Option<String>,
            auth_header: Option<String>,
            custom_headers: ::std::collections::HashMap<
                ::reqwest::header::HeaderName,
                ::reqwest::header::HeaderValue,
            >,
        ) -> ::std::result::Result<
            ::futures::stream::BoxStream<
                'static,
                ::std::result::Result<::sse_stream::Sse, ::sse_stream::Error>,
            >,
            ::rmcp::transport::streamable_http_client::StreamableHttpError<reqwest::Error>,
        > {
            self.get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                ::rmcp::transport::streamable_http_client::StreamableHttpResponseLimits::default()
                    .max_sse_event_size,
            )
            .await
        }
    };
}
pub(crate) use limited_variants;

mod authorization;
mod dpop;
mod error;
mod follow;
mod oauth;

mod shared;
mod standalone;
mod trust;
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::transport::{
    StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
};

/// Where the server is, what every request carries, and how long a request
/// may wait on the network.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpConfig {
    /// The server URL (`http://` or `https://`).
    pub url: String,
    /// Headers sent with every request.
    pub custom_headers: BTreeMap<String, String>,
    /// The longest wait for a connection to open (TCP and TLS); default
    /// [`HttpConfig::DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// The longest wait for any read: the response headers, then each chunk
    /// of the body, so a long-lived event stream lives as long as the server
    /// keeps sending (events or keep-alive comments) and a stalled one is
    /// noticed; default [`HttpConfig::DEFAULT_READ_TIMEOUT`]. A server that
    /// takes longer than this to answer a call without sending anything
    /// needs a larger value.
    pub read_timeout: Duration,
    /// Whether credentials may go over plain `http://` to a host that is not
    /// loopback (`localhost`, `127.0.0.0/8`, `::1`): credential-bearing
    /// headers (those `Debug` redacts: `Authorization`, `Cookie`, names with
    /// `token`, `secret`, `key`, `auth` or `password`) and OAuth, whose
    /// metadata, authorization server and token endpoint may then be plain
    /// http too. Default false: such a request is refused
    /// ([`Error::InsecureCredentials`]) before anything is sent.
    pub allow_insecure_http: bool,
}

impl fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConfig")
            .field("url", &redact_url(&self.url))
            .field("custom_headers", &Redacted(&self.custom_headers))
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish()
    }
}

impl HttpConfig {
    /// The URL as logs, errors and descriptions show it (userinfo, query and
    /// fragment redacted).
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    /// A configuration for `url`, checked to be an absolute HTTP(S) URL.
    pub fn new(url: impl Into<String>) -> Result<Self, Error> {
        let url = url.into();
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| Error::NotHttpUrl {
                url: redact_url(&url),
            })?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(Error::NoHost {
                url: redact_url(&url),
            });
        }
        Ok(Self {
            url,
            custom_headers: BTreeMap::new(),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            read_timeout: Self::DEFAULT_READ_TIMEOUT,
            allow_insecure_http: false,
        })
    }

    /// The default `connect_timeout`: 10 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    /// The default `read_timeout`: 5 minutes.
    pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(300);

    /// Adds a header sent with every request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.custom_headers.insert(name.into(), value.into());
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the read timeout.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Allows credentials over plain http to a host that is not loopback.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Whether credentials may be sent to this URL: https, a loopback host,
    /// or plain http that the configuration allows.
    fn carries_credentials(&self) -> bool {
        self.allow_insecure_http
            || reqwest::Url::parse(&self.url).is_ok_and(|url| trust::is_secure(&url))
    }

    /// An error naming the first credential-bearing header of `names`, if
    /// this URL may not carry credentials.
    fn check_credentials<'a>(&self, names: impl Iterator<Item = &'a str>) -> Result<(), Error> {
        if self.carries_credentials() {
            return Ok(());
        }
        // Userinfo in the URL is sent as `Authorization: Basic`.
        let userinfo = reqwest::Url::parse(&self.url)
            .is_ok_and(|url| !url.username().is_empty() || url.password().is_some());
        let mut names = userinfo.then_some("Authorization").into_iter().chain(names);
        match names.find(|name| is_secret_name(name)) {
            Some(header) => Err(Error::InsecureCredentials {
                header: header.to_owned(),
                url: self.display_url(),
            }),
            None => Ok(()),
        }
    }
}

/// Headers for one session's requests — typically that end user's
/// credentials. Called each time the session opens a connection.
pub trait HeaderProvider: Send + Sync + 'static {
    /// The headers to add for `session` (its id, and the principal it was
    /// opened for), as `(name, value)` pairs.
    fn headers(&self, session: &SessionKey) -> Vec<(String, String)>;
}

impl<F> HeaderProvider for F
where
    F: Fn(&SessionKey) -> Vec<(String, String)> + Send + Sync + 'static,
{
    fn headers(&self, session: &SessionKey) -> Vec<(String, String)> {
        self(session)
    }
}

/// Converts headers for the HTTP stack, marking every value sensitive (so
/// that nothing below us logs it).
pub fn to_header_map<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<std::collections::HashMap<HeaderName, HeaderValue>, Error> {
    let mut map = std::collections::HashMap::new();
    for (name, value) in headers {
        let header = HeaderName::try_from(name).map_err(|source| Error::HeaderName {
            name: name.to_owned(),
            source,
        })?;
        let mut value = HeaderValue::try_from(value).map_err(|source| Error::HeaderValue {
            name: name.to_owned(),
            source,
        })?;
        value.set_sensitive(true);
        map.insert(header, value);
    }
    Ok(map)
}

/// What every HTTP-based transport of a server shares: the configuration,
/// one connection pool (no redirects: following one would replay the session
/// id and credentials to wherever it points; the configured connect and read
/// timeouts on every request), and the per-session headers.
/// The SSE transport builds on it too.
#[derive(Clone)]
pub struct HttpEndpoint {
    config: HttpConfig,
    client: reqwest::Client,
    provider: Option<Arc<dyn HeaderProvider>>,
}

impl fmt::Debug for HttpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpEndpoint")
            .field("config", &self.config)
            .field("header_provider", &self.provider.is_some())
            .finish()
    }
}

impl HttpEndpoint {
    /// An endpoint for `config`, with its own connection pool; an error if
    /// the HTTP client cannot be built — for an `https://` URL, when the
    /// system has no CA certificates. A plain `http://` server needs none:
    /// its client is then built trusting none, and any https request it
    /// makes (to an OAuth server, say) fails its TLS handshake.
    pub fn new(config: HttpConfig) -> Result<Self, Error> {
        let builder = || {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(config.connect_timeout)
                .read_timeout(config.read_timeout)
        };
        let client = match builder().build() {
            Ok(client) => client,
            Err(source) if config.url.starts_with("http://") => {
                let client = builder()
                    .tls_certs_only([])
                    .build()
                    .map_err(|_| Error::Client { source })?;
                let host = reqwest::Url::parse(&config.url)
                    .ok()
                    .and_then(|url| url.host_str().map(str::to_owned));
                tracing::warn!(
                    host = host.as_deref().unwrap_or_default(),
                    "no usable CA certificates: https requests of this server's client will fail"
                );
                client
            }
            Err(source) => return Err(Error::Client { source }),
        };
        config.check_credentials(config.custom_headers.keys().map(String::as_str))?;
        Ok(Self {
            config,
            client,
            provider: None,
        })
    }

    /// Adds per-session headers.
    pub fn with_header_provider(mut self, provider: Arc<dyn HeaderProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// The shared connection pool.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// `session`'s own headers (the header provider's), all marked
    /// sensitive; an error if one carries a credential that may not go to
    /// this URL.
    fn session_headers(
        &self,
        session: &SessionKey,
    ) -> Result<std::collections::HashMap<HeaderName, HeaderValue>, Error> {
        let session_headers = self
            .provider
            .as_ref()
            .map(|p| p.headers(session))
            .unwrap_or_default();
        let pairs = session_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        self.config
            .check_credentials(pairs.clone().map(|(name, _)| name))?;
        to_header_map(pairs)
    }

    /// The configured headers plus `session`'s own, all marked sensitive;
    /// an error if one carries a credential that may not go to this URL
    /// (the configured ones were checked when the endpoint was made).
    pub fn headers(
        &self,
        session: &SessionKey,
    ) -> Result<std::collections::HashMap<HeaderName, HeaderValue>, Error> {
        let mut headers = self.configured_headers()?;
        headers.extend(self.session_headers(session)?);
        Ok(headers)
    }

    /// The configured headers, all marked sensitive.
    fn configured_headers(
        &self,
    ) -> Result<std::collections::HashMap<HeaderName, HeaderValue>, Error> {
        to_header_map(
            self.config
                .custom_headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }
}

/// The MCP streamable HTTP transport.
#[derive(Clone)]
pub struct StreamableHttpTransport {
    endpoint: HttpEndpoint,
    standalone: StandaloneStreams,
    options: ClientOptions,
    oauth: Option<Arc<oauth::TokenSource>>,
    user: Option<mcp_group_core::UserAuthorization>,
    store: Arc<dyn TokenStore>,
    /// Built from `user`, the options' authorizer and `store`.
    user_auth: Option<Arc<authorization::UserAuth>>,
    /// The server's protocol era, learned by the first connection.
    era: Arc<EraMemory>,
    /// Set once a 2025-era connection's standalone stream never came (a
    /// server without protocol sessions): later ones do not wait for it.
    no_standalone: Arc<std::sync::atomic::AtomicBool>,
    /// Whether sessions of a modern server share one rmcp client.
    share_sessions: bool,
    /// The rmcp client the sessions of a modern server share (see
    /// [`StreamableHttpTransport::with_shared_connection`]).
    shared: Arc<std::sync::Mutex<Option<SharedEntry>>>,
    /// Held while the shared client opens, so that sessions arriving
    /// meanwhile wait for it rather than open clients of their own.
    opening: Arc<tokio::sync::Mutex<()>>,
}

impl fmt::Debug for StreamableHttpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamableHttpTransport")
            .field("endpoint", &self.endpoint)
            .field("standalone", &self.standalone)
            .field("options", &self.options)
            .field("oauth", &self.oauth)
            .field("user_authorization", &self.user)
            .finish()
    }
}

impl StreamableHttpTransport {
    /// A transport for `config`, with its own connection pool shared by all
    /// its connections; an error if the HTTP client cannot be built.
    pub fn new(config: HttpConfig) -> Result<Self, Error> {
        Ok(Self {
            endpoint: HttpEndpoint::new(config)?,
            standalone: StandaloneStreams::default(),
            options: ClientOptions::new(),
            oauth: None,
            user: None,
            store: Arc::new(InMemoryTokenStore::default()),
            user_auth: None,
            era: Arc::new(EraMemory::without_reuse()),
            no_standalone: Arc::default(),
            share_sessions: true,
            shared: Arc::default(),
            opening: Arc::default(),
        })
    }

    /// Whether the sessions of a 2026-07-28 server share one rmcp client
    /// (default: yes). Once a connection has found the server modern, each
    /// new session gets a share of one client that is opened once per
    /// server (one `server/discover`): its first call is its first request,
    /// and an idle session costs a small handle instead of a client of its
    /// own. Each request still carries its session's own headers and its
    /// end user's credentials; see [`mcp_group_core::Connection::share`].
    /// A 2025-era server gets a connection (and protocol session) per
    /// session either way.
    pub fn with_shared_connection(mut self, share: bool) -> Self {
        self.share_sessions = share;
        self
    }

    /// Authorizes each session's end user with the OAuth authorization-code
    /// flow when the server demands it, through the [`Authorizer`] of the
    /// client options ([`ClientOptions::with_authorizer`]). Tokens are kept
    /// per principal, authorization server and resource in the token store
    /// (in memory unless [`Self::with_token_store`] says otherwise).
    ///
    /// [`Authorizer`]: mcp_group_core::Authorizer
    pub fn with_user_authorization(mut self, config: mcp_group_core::UserAuthorization) -> Self {
        self.user = Some(config);
        self.rebuild_user_auth();
        self
    }

    /// Keeps end users' tokens in `store`.
    pub fn with_token_store(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.store = store;
        self.rebuild_user_auth();
        self
    }

    fn rebuild_user_auth(&mut self) {
        self.user_auth = match (&self.user, self.options.authorizer()) {
            (Some(config), Some(authorizer)) => Some(Arc::new(authorization::UserAuth::new(
                config.clone(),
                authorizer.clone(),
                self.options.authorization_mode(),
                self.store.clone(),
                self.endpoint.config().url.clone(),
                authorization::GuardedHttp {
                    client: self.endpoint.client().clone(),
                    allow_insecure_http: self.endpoint.config().allow_insecure_http,
                },
            ))),
            _ => None,
        };
    }

    /// Authorizes with OAuth client credentials: discovers the authorization
    /// server, gets a token (cached until it expires, shared by every
    /// session) and sends it as `Authorization: Bearer …`.
    pub fn with_client_credentials(mut self, credentials: ClientCredentials) -> Self {
        self.oauth = Some(Arc::new(oauth::TokenSource::new(
            credentials,
            self.endpoint.config().allow_insecure_http,
        )));
        self
    }

    /// The client side's options: offered protocol version, elicitation.
    pub fn with_client_options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self.rebuild_user_auth();
        self
    }

    /// Chooses which sessions open the standalone `GET` stream for
    /// server-initiated messages (default:
    /// [`StandaloneStreams::DefaultSessionOnly`]).
    pub fn with_standalone_streams(mut self, standalone: StandaloneStreams) -> Self {
        self.standalone = standalone;
        self
    }

    /// Adds per-session headers.
    pub fn with_header_provider(mut self, provider: Arc<dyn HeaderProvider>) -> Self {
        self.endpoint = self.endpoint.with_header_provider(provider);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &HttpConfig {
        self.endpoint.config()
    }

    /// rmcp's transport configuration for this server, with `headers` on
    /// every request.
    fn transport_config(
        &self,
        headers: std::collections::HashMap<HeaderName, HeaderValue>,
    ) -> StreamableHttpClientTransportConfig {
        // The real URL goes on the wire; only what is shown is redacted.
        let mut config =
            StreamableHttpClientTransportConfig::with_uri(self.endpoint.config().url.as_str());
        config.custom_headers = headers;
        config.reinit_on_expired_session = true;
        config
    }

    /// The configured headers, for rmcp's transport configuration.
    fn configured_headers(
        &self,
    ) -> Result<std::collections::HashMap<HeaderName, HeaderValue>, CoreError> {
        self.endpoint
            .configured_headers()
            .map_err(|e| CoreError::Start {
                endpoint: self.config().display_url(),
                source: Box::new(e),
            })
    }
}

/// A failure to reach the server at all is `Connect` (worth retrying); an
/// answer that breaks the handshake stays `Handshake`.
fn classify(error: CoreError) -> CoreError {
    match error {
        CoreError::Handshake { endpoint, source } => {
            let transport_level = source
                .downcast_ref::<rmcp::service::ClientInitializeError>()
                .is_some_and(|e| {
                    matches!(
                        e,
                        rmcp::service::ClientInitializeError::TransportError { .. }
                    )
                });
            if transport_level {
                CoreError::Connect { endpoint, source }
            } else {
                CoreError::Handshake { endpoint, source }
            }
        }
        other => other,
    }
}

/// A handshake that failed in the authorization flow says so: the URL to
/// show the user, a timeout, or [`CoreError::Authorization`].
fn authorization_error(error: CoreError) -> CoreError {
    let (endpoint, source) = match error {
        CoreError::Handshake { endpoint, source } | CoreError::Connect { endpoint, source } => {
            (endpoint, source)
        }
        other => return other,
    };
    match CoreError::take_authorization(source) {
        Ok(authorization) => authorization,
        Err(source) => classify(CoreError::Handshake { endpoint, source }),
    }
}

/// The longest one shared client serves new sessions
/// ([`StreamableHttpTransport::with_shared_connection`]): after it, the next
/// new session opens a fresh one (its `server/discover` finds out again what
/// the server is), and the old one goes when its last session does. This
/// also bounds what rmcp keeps per client (the schemas of listed tools).
pub const SHARED_CLIENT_MAX_AGE: Duration = mcp_group_core::era::MAX_DISCOVERY_REUSE;

/// The shared client's connection, and when it opened.
type SharedEntry = (Arc<Connection>, tokio::time::Instant);

/// Whether a shared client still takes new sessions: open, and younger
/// than [`SHARED_CLIENT_MAX_AGE`].
fn serves_new_sessions((connection, opened): &SharedEntry) -> bool {
    !connection.is_closed() && opened.elapsed() < SHARED_CLIENT_MAX_AGE
}

/// How long a new 2025-era connection waits for its standalone stream
/// before its first call.
const STANDALONE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A 2025-era server sends its own requests (an elicitation during a call,
/// say) on the standalone `GET` stream and drops them while none is open:
/// a connection that opens one waits (at most [`STANDALONE_WAIT`]) until
/// the server has answered it, so that nothing the first call triggers is
/// lost. The 2026 era has no standalone stream.
/// rmcp opens no standalone stream for a server without protocol sessions:
/// once a wait has run out, `no_standalone` says so and later connections
/// do not wait.
async fn wait_for_standalone(
    connection: &Connection,
    opens_standalone: bool,
    mut answered: tokio::sync::watch::Receiver<bool>,
    no_standalone: &std::sync::atomic::AtomicBool,
) {
    use std::sync::atomic::Ordering;
    if !opens_standalone
        || connection.era() != Some(mcp_group_core::Era::Legacy)
        || no_standalone.load(Ordering::Relaxed)
    {
        return;
    }
    let waited =
        tokio::time::timeout(STANDALONE_WAIT, answered.wait_for(|answered| *answered)).await;
    if waited.is_err() {
        no_standalone.store(true, Ordering::Relaxed);
    }
}

#[mcp_group_core::async_trait]
impl Transport for StreamableHttpTransport {
    async fn connect(&self, session: &SessionKey) -> Result<Connection, CoreError> {
        // The group's default session keeps a connection of its own: it
        // follows the server's tool-list changes (`subscriptions/listen`,
        // which rmcp sends untagged) with its own headers and credentials.
        if self.share_sessions
            && *session != SessionKey::default_session()
            && self.era.era() == Some(mcp_group_core::Era::Modern)
            && let Some(connection) = self.connect_shared(session).await?
        {
            return Ok(connection);
        }
        negotiate(&self.era, || self.connect_once(session)).await
    }

    fn description(&self) -> ServerDescription {
        self.describe()
    }

    fn era(&self) -> Option<mcp_group_core::Era> {
        self.era.era()
    }
}

impl StreamableHttpTransport {
    /// The protocol era the server was found to speak, once a connection
    /// has found out (and, for a modern server, while its discovery is
    /// fresh).
    pub fn era(&self) -> Option<mcp_group_core::Era> {
        self.era.era()
    }

    /// The shared client's connection, if it still serves new sessions.
    /// One that no longer does leaves the slot (it goes when its last
    /// session does).
    fn shared_connection(&self) -> Option<Arc<Connection>> {
        let mut slot = match self.shared.lock() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !slot.as_ref().is_some_and(serves_new_sessions) {
            *slot = None;
        }
        slot.as_ref().map(|(c, _)| c.clone())
    }

    /// How `session`'s requests go: its headers, and its user's
    /// authorization over `inner`. Checks that credentials may go to this
    /// server and that no two of them claim `Authorization`.
    fn route(
        &self,
        session: &SessionKey,
        inner: standalone::Client,
    ) -> Result<shared::Route, CoreError> {
        let shown = self.config().display_url();
        let start = |e| CoreError::Start {
            endpoint: shown.clone(),
            source: Box::new(e),
        };
        let headers = self.endpoint.session_headers(session).map_err(start)?;
        let carries_authorization = headers.contains_key(&reqwest::header::AUTHORIZATION)
            || self
                .config()
                .custom_headers
                .keys()
                .any(|name| name.eq_ignore_ascii_case("authorization"));
        if self.oauth.is_some() {
            if carries_authorization {
                return Err(start(Error::ConflictingAuthorization));
            }
            self.config()
                .check_credentials(std::iter::once("Authorization"))
                .map_err(start)?;
        }
        let auth = match (&self.user, &self.user_auth) {
            (None, _) => None,
            (Some(_), None) => return Err(start(Error::NoAuthorizer)),
            (Some(_), Some(auth)) => {
                if carries_authorization || self.oauth.is_some() {
                    return Err(start(Error::ConflictingAuthorization));
                }
                self.config()
                    .check_credentials(std::iter::once("Authorization"))
                    .map_err(start)?;
                Some(authorization::AuthorizingClient {
                    inner,
                    principal: auth.principal(session),
                    auth: auth.clone(),
                    session: session.clone(),
                })
            }
        };
        Ok(shared::Route { headers, auth })
    }

    /// rmcp's reqwest client on the shared pool, opening no standalone
    /// stream (the 2026-07-28 era has none).
    fn plain_client(&self) -> standalone::Client {
        standalone::Client {
            inner: self.endpoint.client().clone(),
            open_standalone: false,
            standalone_answered: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }

    /// `session`'s share of the shared client, opening the client if there
    /// is none (or it has ended); `None` if the server no longer speaks the
    /// 2026-07-28 era, for the caller to negotiate a connection of the
    /// session's own.
    async fn connect_shared(&self, session: &SessionKey) -> Result<Option<Connection>, CoreError> {
        let route = Arc::new(self.route(session, self.plain_client())?);
        let tag = mcp_group_core::RequestTag::new(route.clone());
        if let Some(shared) = self.shared_connection() {
            return Ok(shared.share(session, Some(tag)));
        }
        // Sessions arriving while the client opens wait for it — unless the
        // opening session's user may have to sign in first (end-user
        // authorization), which may take minutes: then each opens its own
        // meanwhile, and the first to finish is kept.
        let _opening = match route.auth {
            None => Some(self.opening.lock().await),
            Some(_) => None,
        };
        if let Some(shared) = self.shared_connection() {
            return Ok(shared.share(session, Some(tag)));
        }
        let shown = self.config().display_url();
        let configured = self.configured_headers()?;
        let client = shared::SharedClient {
            inner: self.plain_client(),
            startup: Arc::new(std::sync::Mutex::new(Some(route))),
            token: self.oauth.as_ref().map(|source| shared::GroupToken {
                source: source.clone(),
                client: self.endpoint.client().clone(),
                url: self.config().url.clone(),
            }),
        };
        let mut config = self.transport_config(configured);
        config.max_concurrent_requests = shared::SHARED_CONCURRENT_REQUESTS;
        let transport = StreamableHttpClientTransport::with_client(client.clone(), config);
        let opened = Connection::establish_for_sharing(transport, shown, &self.options, &self.era)
            .await
            .map_err(authorization_error)?;
        client.end_startup();
        if opened.era() != Some(mcp_group_core::Era::Modern) {
            tracing::debug!(
                "the server no longer speaks the 2026-07-28 era; connecting the session on its own"
            );
            opened.close().await;
            return Ok(None);
        }
        let opened = Arc::new(opened);
        let shared = {
            let mut slot = match self.shared.lock() {
                Ok(slot) => slot,
                Err(poisoned) => poisoned.into_inner(),
            };
            match slot.as_ref().filter(|entry| serves_new_sessions(entry)) {
                // Another session's opening finished first.
                Some((other, _)) => other.clone(),
                None => {
                    *slot = Some((opened.clone(), tokio::time::Instant::now()));
                    opened
                }
            }
        };
        tracing::debug!(
            connection = shared.id(),
            "sessions of this server share one client"
        );
        Ok(shared.share(session, Some(tag)))
    }

    async fn connect_once(&self, session: &SessionKey) -> Result<Connection, CoreError> {
        let (answered, standalone_answered) = tokio::sync::watch::channel(false);
        let client = standalone::Client {
            inner: self.endpoint.client().clone(),
            open_standalone: match self.standalone {
                StandaloneStreams::Every => true,
                StandaloneStreams::DefaultSessionOnly => *session == SessionKey::default_session(),
            },
            standalone_answered: Arc::new(answered),
        };
        let opens_standalone = client.open_standalone;
        let route = self.route(session, client.clone())?;
        let mut headers = self.configured_headers()?;
        headers.extend(route.headers);
        let mut config = self.transport_config(headers);
        let shown = self.config().display_url();
        if let Some(oauth) = &self.oauth {
            config.auth_header = oauth
                .token(self.endpoint.client(), &self.config().url)
                .await
                .map_err(|e| CoreError::Connect {
                    endpoint: shown.clone(),
                    source: Box::new(e),
                })?;
        }
        let connection = match route.auth {
            Some(auth) => {
                let transport = StreamableHttpClientTransport::with_client(auth, config);
                Connection::establish_remembering(
                    transport,
                    shown,
                    &self.options,
                    session,
                    &self.era,
                )
                .await
                .map_err(authorization_error)?
            }
            None => {
                let transport = StreamableHttpClientTransport::with_client(client, config);
                Connection::establish_remembering(
                    transport,
                    shown,
                    &self.options,
                    session,
                    &self.era,
                )
                .await
                .map_err(classify)?
            }
        };
        wait_for_standalone(
            &connection,
            opens_standalone,
            standalone_answered,
            &self.no_standalone,
        )
        .await;
        Ok(connection)
    }

    fn describe(&self) -> ServerDescription {
        ServerDescription {
            transport: "streamable-http",
            endpoint: self.config().display_url(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_http_and_https_urls() {
        assert!(HttpConfig::new("http://127.0.0.1:3001/mcp").is_ok());
        assert!(HttpConfig::new("https://example.com").is_ok());
    }

    #[test]
    fn rejects_other_schemes_and_missing_hosts() {
        assert!(matches!(
            HttpConfig::new("ftp://x"),
            Err(Error::NotHttpUrl { url }) if url == "ftp://x"
        ));
        assert!(matches!(
            HttpConfig::new("http:///path"),
            Err(Error::NoHost { url }) if url == "http:///path"
        ));
    }

    #[test]
    fn debug_redacts_credentials() {
        let config = HttpConfig::new("http://h/mcp")
            .unwrap()
            .header("Authorization", "Bearer s3cr3t")
            .header("X-Api-Key", "k3y")
            .header("X-Team", "search");
        let text = format!("{config:?}");
        assert!(!text.contains("s3cr3t") && !text.contains("k3y"), "{text}");
        assert!(text.contains("search"), "{text}");
    }

    #[test]
    fn header_values_are_sensitive_and_bad_ones_named_without_their_value() {
        let map = to_header_map([("authorization", "Bearer x")]).unwrap();
        assert!(map.values().all(HeaderValue::is_sensitive));
        let err = to_header_map([("x-bad", "line\nbreak-secret")]).unwrap_err();
        assert!(
            matches!(&err, Error::HeaderValue { name, .. } if name == "x-bad"),
            "{err:?}"
        );
        assert!(!err.to_string().contains("secret"));
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let port = mcp_group_test_kit::free_port();
        let transport = StreamableHttpTransport::new(
            HttpConfig::new(format!("http://127.0.0.1:{port}/mcp")).unwrap(),
        )
        .unwrap();
        let err = transport
            .connect(&mcp_group_core::SessionId::new("s").into())
            .await
            .unwrap_err();
        assert!(matches!(err, CoreError::Connect { .. }), "{err:?}");
    }
}
