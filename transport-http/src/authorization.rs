//! End-user authorization (the OAuth 2.1 authorization-code flow) on rmcp's
//! `auth` module, per principal.
//!
//! Every request of a session goes through [`AuthorizingClient`], a wrapper
//! of the HTTP client. It sends the principal's token when there is one;
//! when the server answers `401` with a `WWW-Authenticate` challenge it
//! refreshes the token (once), or runs the whole flow through rmcp —
//! discovery from the challenge, registration (pre-registered, CIMD, then
//! DCR), PKCE, the application's [`Authorizer`], the token exchange with its
//! `iss` check — and retries; on `403 insufficient_scope` it asks for the
//! union of the granted and the challenged scopes, at most
//! [`MAX_STEP_UPS`] times per request.
//!
//! One [`Principal`] per end user holds the rmcp `AuthorizationManager`
//! that all of that user's sessions share: its lock makes refresh
//! single-flight, and authorization is single-flight too (a session that
//! finds a newer authorization than the one its request failed with just
//! retries). Tokens live in a [`TokenStore`] under a [`CredentialKey`] —
//! principal, issuer, resource — so they never cross principals, servers or
//! authorization servers.
//!
//! A refused token is refreshed once for all the requests it failed (the
//! generation check above); a refused refresh token (a revoked grant)
//! leads to a new authorization inside the request that hit it, which then
//! succeeds ([`AuthorizationMode::Wait`]) or fails with
//! `AuthorizationRequired` while the session stays usable
//! ([`AuthorizationMode::Fail`]). Refresh tokens are loaded, used and
//! replaced under the slot's refresh guard, so a rotating one is never
//! sent twice, even by transports (processes) that share a store.
//!
//! Bounds: the state of a principal lives as long as one of its sessions
//! (or a background authorization) holds it; [`InMemoryTokenStore`] keeps
//! at most its capacity of keys nobody holds, evicting the least recently
//! used.
//!
//! rmcp's OAuth requests go through [`GuardedHttp`]: https only (plain http
//! on loopback, or when the configuration allows insecure http), no
//! redirects, bodies read up to 1 MiB. A client secret goes only to an
//! authorization server on the MCP server's host unless the issuer is
//! pinned.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use futures::stream::BoxStream;
use mcp_group_core::{
    AuthorizationMode, Authorizer, CredentialKey, Error as CoreError, SessionKey,
    UserAuthorization, redact_url,
};
use reqwest::{
    Url,
    header::{HeaderName, HeaderValue},
};
use rmcp::{
    model::ClientJsonRpcMessage,
    transport::{
        auth::{
            AuthError, AuthorizationManager, AuthorizationMetadataSource, AuthorizationRequest,
            AuthorizationSession, CredentialRefreshGuard, CredentialStore, InMemoryCredentialStore,
            OAuthHttpClient, OAuthHttpClientError, OAuthHttpClientFuture, OAuthHttpRequest,
            StoredCredentials,
        },
        streamable_http_client::{
            StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
            StreamableHttpResponseLimits,
        },
    },
};
use sse_stream::{Error as SseError, Sse};

use crate::{
    Error,
    dpop::{self, Dpop},
    trust::{excerpt, is_secure},
};

/// Step-up authorizations (`403 insufficient_scope`) tried for one request
/// before its error is returned.
pub const MAX_STEP_UPS: u32 = 2;

/// Where tokens are kept: one rmcp [`CredentialStore`] per
/// [`CredentialKey`]. A shared backend (Redis, a database) implements it
/// by returning a store bound to the key, whose
/// [`CredentialStore::acquire_refresh_guard`] locks that key, so a rotating
/// refresh token is used once.
pub trait TokenStore: Send + Sync + 'static {
    /// The store of `key`'s credentials.
    fn slot(&self, key: &CredentialKey) -> Arc<dyn CredentialStore>;
}

/// How many keys an [`InMemoryTokenStore`] keeps by default.
pub const DEFAULT_TOKEN_STORE_CAPACITY: usize = 10_000;

/// The default [`TokenStore`]: in memory, one slot per key, refresh
/// serialized per key.
///
/// # Bounds
/// At most `capacity` keys ([`DEFAULT_TOKEN_STORE_CAPACITY`] unless
/// [`InMemoryTokenStore::with_capacity`] says otherwise): handing out the
/// slot of a new key beyond that evicts the least recently handed-out
/// slots that nobody holds, so their users sign in again next time. A slot
/// a live session's authorization state holds is never evicted (two slots
/// for one key would split its refresh lock): while more sessions than
/// `capacity` hold slots, the store holds that many.
pub struct InMemoryTokenStore {
    slots: std::sync::Mutex<Slots>,
    capacity: usize,
}

struct Slots {
    map: HashMap<CredentialKey, (Arc<MemorySlot>, u64)>,
    /// Bumped on every hand-out: the least recently handed-out slot has
    /// the smallest stamp.
    clock: u64,
}

impl Default for InMemoryTokenStore {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_TOKEN_STORE_CAPACITY)
    }
}

impl InMemoryTokenStore {
    /// A store of at most `capacity` keys that nobody holds (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            slots: std::sync::Mutex::new(Slots {
                map: HashMap::new(),
                clock: 0,
            }),
            capacity: capacity.max(1),
        }
    }

    /// How many keys the store holds now.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl std::fmt::Debug for InMemoryTokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryTokenStore")
            .field("keys", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl TokenStore for InMemoryTokenStore {
    fn slot(&self, key: &CredentialKey) -> Arc<dyn CredentialStore> {
        let mut slots = self.lock();
        slots.clock += 1;
        let now = slots.clock;
        let slot = {
            let entry = slots
                .map
                .entry(key.clone())
                .or_insert_with(|| (Arc::default(), now));
            entry.1 = now;
            entry.0.clone()
        };
        if slots.map.len() > self.capacity {
            // Nobody else holds an evictable slot: the map's reference and
            // none other (`slot`, just handed out, is held).
            let mut idle: Vec<(u64, CredentialKey)> = slots
                .map
                .iter()
                .filter(|(_, (slot, _))| Arc::strong_count(slot) == 1)
                .map(|(key, (_, used))| (*used, key.clone()))
                .collect();
            idle.sort_unstable();
            let excess = slots.map.len() - self.capacity;
            for (_, key) in idle.into_iter().take(excess) {
                slots.map.remove(&key);
            }
        }
        slot
    }
}

#[derive(Default)]
struct MemorySlot {
    credentials: InMemoryCredentialStore,
    refresh: Arc<tokio::sync::Mutex<()>>,
}

#[async_trait::async_trait]
impl CredentialStore for MemorySlot {
    async fn load(&self) -> Result<Option<StoredCredentials>, AuthError> {
        self.credentials.load().await
    }

    async fn save(&self, credentials: StoredCredentials) -> Result<(), AuthError> {
        self.credentials.save(credentials).await
    }

    async fn clear(&self) -> Result<(), AuthError> {
        self.credentials.clear().await
    }

    async fn acquire_refresh_guard(&self) -> Result<Option<CredentialRefreshGuard>, AuthError> {
        let guard = self.refresh.clone().lock_owned().await;
        Ok(Some(CredentialRefreshGuard::new(guard)))
    }
}

/// A shared slot as rmcp's manager takes it (by value).
struct Slot(Arc<dyn CredentialStore>);

#[async_trait::async_trait]
impl CredentialStore for Slot {
    async fn load(&self) -> Result<Option<StoredCredentials>, AuthError> {
        self.0.load().await
    }

    async fn save(&self, credentials: StoredCredentials) -> Result<(), AuthError> {
        self.0.save(credentials).await
    }

    async fn clear(&self) -> Result<(), AuthError> {
        self.0.clear().await
    }

    async fn on_refresh_token_rejected(
        &self,
        credentials: &StoredCredentials,
    ) -> Result<(), AuthError> {
        self.0.on_refresh_token_rejected(credentials).await
    }

    async fn acquire_refresh_guard(&self) -> Result<Option<CredentialRefreshGuard>, AuthError> {
        self.0.acquire_refresh_guard().await
    }
}

/// How long a sign-in started in [`AuthorizationMode::Fail`] waits in the
/// background for the user; after it, the principal's next call starts a
/// new one (a fresh URL and `state`) instead of showing a stale URL.
pub const BACKGROUND_SIGN_IN_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// The longest one OAuth request (discovery, registration, a token
/// exchange or refresh) may take, answer included.
pub const OAUTH_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// rmcp's OAuth HTTP requests on our pool, with our rules: https (or
/// loopback, or insecure http allowed), no redirects, bounded bodies.
pub(crate) struct GuardedHttp {
    pub(crate) client: reqwest::Client,
    pub(crate) allow_insecure_http: bool,
}

impl GuardedHttp {
    async fn send(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, OAuthHttpClientError> {
        let mut request = reqwest::Request::try_from(request)?;
        // A whole exchange, not each read: an authorization server that
        // trickles its answer must not hold a principal's sign-in (and the
        // credential store's refresh lock) for long.
        *request.timeout_mut() = Some(OAUTH_REQUEST_TIMEOUT);
        let url = request.url().clone();
        if !(self.allow_insecure_http || is_secure(&url)) {
            return Err(Box::new(Error::OAuthInsecureUrl {
                what: "endpoint",
                url: redact_url(url.as_str()),
            }) as _);
        }
        let response =
            self.client
                .execute(request)
                .await
                .map_err(|source| Error::OAuthRequest {
                    url: redact_url(url.as_str()),
                    source,
                })?;
        let mut builder = http::Response::builder()
            .status(response.status())
            .version(response.version());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        let body = crate::oauth::read_body(response, url.as_str()).await?;
        Ok(builder.body(body)?)
    }
}

impl OAuthHttpClient for GuardedHttp {
    fn execute(&self, request: OAuthHttpRequest) -> OAuthHttpClientFuture<'_> {
        Box::pin(self.send(request.request))
    }
}

/// A principal's OAuth requests: [`GuardedHttp`]'s, with a DPoP proof on
/// each token request once the authorization server supports DPoP, and one
/// retry with the server's nonce when it asks for one.
struct PrincipalHttp {
    http: Arc<GuardedHttp>,
    dpop: Option<Arc<Dpop>>,
}

impl OAuthHttpClient for PrincipalHttp {
    fn execute(&self, request: OAuthHttpRequest) -> OAuthHttpClientFuture<'_> {
        Box::pin(async move {
            let request = request.request;
            let url = request.uri().to_string();
            let dpop = self.dpop.as_ref().filter(|dpop| {
                request.method() == http::Method::POST && dpop.is_token_endpoint(&url)
            });
            let Some(dpop) = dpop else {
                return self.http.send(request).await;
            };
            let (parts, body) = request.into_parts();
            let with_proof = |proof: String| {
                let mut builder = http::Request::builder()
                    .method(parts.method.clone())
                    .uri(parts.uri.clone())
                    .version(parts.version);
                for (name, value) in &parts.headers {
                    builder = builder.header(name, value);
                }
                builder.header("dpop", proof).body(body.clone())
            };
            let mut asked = false;
            loop {
                let proof = dpop.token_request_proof(&url)?;
                let response = self.http.send(with_proof(proof)?).await?;
                let nonce = response
                    .headers()
                    .get("dpop-nonce")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let retry = !asked
                    && nonce.is_some()
                    && response.status() == http::StatusCode::BAD_REQUEST
                    && dpop::asks_for_nonce(&String::from_utf8_lossy(response.body()));
                dpop.set_as_nonce(nonce);
                if !retry {
                    return Ok(response);
                }
                asked = true;
            }
        })
    }
}

/// A principal's authorization state, shared by all its sessions.
pub(crate) struct Principal {
    principal: Option<Arc<str>>,
    /// The manager holding the principal's client registration and token;
    /// `None` until the first authorization.
    manager: std::sync::Mutex<Option<Arc<tokio::sync::Mutex<AuthorizationManager>>>>,
    /// Bumped whenever `manager` or its token is replaced by a flow.
    generation: AtomicU64,
    /// Single-flight of authorization flows.
    flow: tokio::sync::Mutex<()>,
    /// The authorization URL of a flow running in the background
    /// ([`AuthorizationMode::Fail`]).
    pending: std::sync::Mutex<Option<String>>,
    /// The principal's DPoP key (`None` if none could be made: then no
    /// DPoP).
    dpop: Option<Arc<Dpop>>,
    /// Bounds the principal's requests in a shared client at once
    /// ([`MAX_PRINCIPAL_REQUESTS`]).
    pub(crate) in_flight: Arc<tokio::sync::Semaphore>,
}

/// The most requests of one principal a client shared by a server's
/// sessions runs at once; one more fails at once
/// ([`mcp_group_core::Error::LimitExceeded`]): one user's requests waiting
/// for a sign-in that never comes stay that user's.
pub const MAX_PRINCIPAL_REQUESTS: usize = 256;

/// What the transport's sessions share for end-user authorization.
pub(crate) struct UserAuth {
    pub(crate) config: UserAuthorization,
    pub(crate) authorizer: Arc<dyn Authorizer>,
    pub(crate) mode: AuthorizationMode,
    pub(crate) store: Arc<dyn TokenStore>,
    pub(crate) resource: String,
    pub(crate) http: Arc<GuardedHttp>,
    /// Each principal's state while a session (or a background flow) holds
    /// it: the map keeps only weak references, so the state of a principal
    /// with no live session goes (its tokens stay in the store, and its
    /// next session picks them up from there), and dead entries are pruned
    /// whenever the map doubles.
    principals: std::sync::Mutex<Principals>,
}

/// Principals by name, weakly held.
struct Principals {
    map: HashMap<Option<Arc<str>>, std::sync::Weak<Principal>>,
    /// The size at which dead entries are pruned next.
    prune_at: usize,
}

/// How the identity of a session without a principal is named (in the
/// credential store's keys too): this prefix, then the session id. The
/// NUL keeps it apart from any principal an application names.
const ANONYMOUS_SESSION: &str = "\u{0}session:";

/// The map of principals is pruned at no fewer entries than this.
const MIN_PRUNE_AT: usize = 64;

impl UserAuth {
    pub(crate) fn new(
        config: UserAuthorization,
        authorizer: Arc<dyn Authorizer>,
        mode: AuthorizationMode,
        store: Arc<dyn TokenStore>,
        resource: String,
        http: GuardedHttp,
    ) -> Self {
        Self {
            config,
            authorizer,
            mode,
            store,
            resource,
            http: Arc::new(http),
            principals: std::sync::Mutex::new(Principals {
                map: HashMap::new(),
                prune_at: MIN_PRUNE_AT,
            }),
        }
    }

    /// The authorization state of `session`'s principal. A session without
    /// a principal is an identity of its own (only the default session of
    /// no principal is the group's own identity): one end user's sign-in
    /// never serves another session that names no one.
    pub(crate) fn principal(&self, session: &SessionKey) -> Arc<Principal> {
        let name: Option<Arc<str>> = match (session.principal(), session.session().name()) {
            (Some(principal), _) => Some(Arc::from(principal)),
            (None, Some(session)) => Some(Arc::from(format!("{ANONYMOUS_SESSION}{session}"))),
            (None, None) => None,
        };
        let mut principals = self
            .principals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(live) = principals.map.get(&name).and_then(std::sync::Weak::upgrade) {
            return live;
        }
        let principal = Arc::new(Principal {
            principal: name.clone(),
            manager: std::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            flow: tokio::sync::Mutex::new(()),
            pending: std::sync::Mutex::new(None),
            dpop: Dpop::new()
                .inspect_err(|error| tracing::warn!(%error, "no DPoP key"))
                .ok()
                .map(Arc::new),
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_PRINCIPAL_REQUESTS)),
        });
        principals.map.insert(name, Arc::downgrade(&principal));
        if principals.map.len() >= principals.prune_at {
            principals.map.retain(|_, state| state.strong_count() > 0);
            principals.prune_at = (principals.map.len() * 2).max(MIN_PRUNE_AT);
        }
        principal
    }

    /// How many principals the map holds (live or not yet pruned).
    #[cfg(test)]
    fn principals_held(&self) -> usize {
        self.principals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map
            .len()
    }
}

impl Principal {
    fn current(&self) -> (u64, Option<Arc<tokio::sync::Mutex<AuthorizationManager>>>) {
        let manager = self
            .manager
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (self.generation.load(Ordering::Acquire), manager.clone())
    }

    fn install(&self, manager: AuthorizationManager) {
        let mut slot = self
            .manager
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = Some(Arc::new(tokio::sync::Mutex::new(manager)));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn set_pending(&self, url: Option<String>) {
        *self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = url;
    }

    fn pending(&self) -> Option<String> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The token to send (refreshed first when it is about to expire, under
    /// the manager's lock: one refresh per expiry), with the generation it
    /// belongs to; `None` before any authorization.
    async fn token(&self) -> Result<(u64, Option<String>), Error> {
        let (generation, manager) = self.current();
        let Some(manager) = manager else {
            return Ok((generation, None));
        };
        let manager = manager.lock().await;
        match manager.get_access_token().await {
            Ok(token) => Ok((generation, Some(token))),
            Err(AuthError::AuthorizationRequired) => Ok((generation, None)),
            Err(source) => Err(oauth(source)),
        }
    }
}

/// The HTTP client of one session of a server that may demand OAuth.
#[derive(Clone)]
pub(crate) struct AuthorizingClient<C> {
    pub(crate) inner: C,
    pub(crate) auth: Arc<UserAuth>,
    pub(crate) principal: Arc<Principal>,
    pub(crate) session: SessionKey,
}

type HttpResult<T> = Result<T, StreamableHttpError<reqwest::Error>>;

/// An authorization failure, carried through rmcp's transport error (as
/// an `io::Error`) as the core error it becomes, so that the call (or the
/// handshake) that needed the token reports it:
/// [`CoreError::take_authorization`] finds it there.
fn carry(resource: &str, error: Error) -> StreamableHttpError<reqwest::Error> {
    let error = match error {
        Error::AuthorizationRequired { url } => CoreError::AuthorizationRequired { url },
        Error::AuthorizationTimeout { after } => CoreError::Timeout {
            operation: "authorization",
            after,
        },
        other => CoreError::Authorization {
            endpoint: redact_url(resource),
            source: Box::new(other),
        },
    };
    StreamableHttpError::Io(std::io::Error::other(error))
}

impl<C> AuthorizingClient<C>
where
    C: StreamableHttpClient<Error = reqwest::Error> + Send + Sync,
{
    async fn call<T, F, Fut>(&self, method: &str, uri: &str, call: F) -> HttpResult<T>
    where
        F: Fn(Presented) -> Fut,
        Fut: Future<Output = HttpResult<T>>,
    {
        // A refused token is refreshed first; refused again (revoked, or
        // minted by an authorization server the resource left), the user
        // authorizes anew; refused a third time, the error stands.
        let mut recoveries = 0;
        let mut step_ups = 0;
        let mut nonce_asked = false;
        loop {
            let (generation, token) = self
                .principal
                .token()
                .await
                .map_err(|e| carry(&self.auth.resource, e))?;
            let presented = self
                .present(method, uri, token.as_deref())
                .map_err(|e| carry(&self.auth.resource, e))?;
            match call(presented).await {
                // The MCP server wants a DPoP nonce (RFC 9449 §9): once.
                Err(StreamableHttpError::AuthRequired(challenge))
                    if !nonce_asked
                        && self.dpop().is_some()
                        && dpop::asks_for_nonce(&challenge.www_authenticate_header) =>
                {
                    nonce_asked = true;
                    if let (Some(dpop), Some(token)) = (self.dpop(), token.as_deref()) {
                        self.ask_nonce(dpop, uri, token).await;
                    }
                }
                Err(StreamableHttpError::AuthRequired(challenge)) if recoveries < 2 => {
                    recoveries += 1;
                    let refresh = recoveries == 1;
                    self.authorize(
                        generation,
                        token,
                        &challenge.www_authenticate_header,
                        refresh,
                    )
                    .await
                    .map_err(|e| carry(&self.auth.resource, e))?;
                }
                Err(StreamableHttpError::InsufficientScope(challenge))
                    if step_ups < MAX_STEP_UPS && token.is_some() =>
                {
                    step_ups += 1;
                    self.step_up(generation, &challenge.www_authenticate_header)
                        .await
                        .map_err(|e| carry(&self.auth.resource, e))?;
                }
                result => return result,
            }
        }
    }

    /// The principal's DPoP state, if its tokens are DPoP-bound.
    fn dpop(&self) -> Option<&Dpop> {
        self.principal.dpop.as_deref().filter(|dpop| dpop.active())
    }

    /// How `token` goes on a `method` request to `uri`: as a bearer token,
    /// or (DPoP) in the `DPoP` scheme with a fresh proof.
    fn present(&self, method: &str, uri: &str, token: Option<&str>) -> Result<Presented, Error> {
        let (Some(dpop), Some(token)) = (self.dpop(), token) else {
            return Ok(Presented {
                bearer: token.map(str::to_owned),
                headers: Vec::new(),
            });
        };
        let proof = dpop.resource_proof(method, uri, token)?;
        let value = |text: String| {
            let mut value = HeaderValue::try_from(text).map_err(|_| Error::DpopKey)?;
            value.set_sensitive(true);
            Ok::<_, Error>(value)
        };
        Ok(Presented {
            bearer: None,
            headers: vec![
                (
                    reqwest::header::AUTHORIZATION,
                    value(format!("DPoP {token}"))?,
                ),
                (HeaderName::from_static("dpop"), value(proof)?),
            ],
        })
    }

    /// Learns the MCP server's DPoP nonce: rmcp's HTTP client keeps the
    /// `DPoP-Nonce` header of a `401` to itself, so a `ping` of our own,
    /// with a proof that has no (or a stale) nonce, fetches it. Its answer
    /// is not read.
    async fn ask_nonce(&self, dpop: &Dpop, uri: &str, token: &str) {
        let Ok(proof) = dpop.resource_proof("POST", uri, token) else {
            return;
        };
        let probe = self
            .auth
            .http
            .client
            .post(uri)
            .header(reqwest::header::AUTHORIZATION, format!("DPoP {token}"))
            .header("dpop", proof)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                reqwest::header::ACCEPT,
                "application/json, text/event-stream",
            )
            .body(r#"{"jsonrpc":"2.0","id":"dpop-nonce","method":"ping"}"#)
            .send()
            .await;
        if let Ok(response) = probe {
            dpop.set_rs_nonce(
                response
                    .headers()
                    .get("dpop-nonce")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            );
        }
    }

    /// After a `401` answered `sent` (of `generation`): refresh (if
    /// `refresh`), or authorize anew, unless another session already did.
    async fn authorize(
        &self,
        generation: u64,
        sent: Option<String>,
        challenge: &str,
        refresh: bool,
    ) -> Result<(), Error> {
        let principal = &self.principal;
        let _flow = principal.flow.lock().await;
        if let Some(url) = principal.pending() {
            return Err(Error::AuthorizationRequired { url });
        }
        let (now, manager) = principal.current();
        if now != generation {
            return Ok(());
        }
        if let (Some(manager), Some(_), true) = (&manager, &sent, refresh) {
            // The token was refused: one refresh before a new authorization.
            let manager = manager.lock().await;
            if manager.refresh_token().await.is_ok() {
                principal.generation.fetch_add(1, Ordering::AcqRel);
                return Ok(());
            }
        }
        let auth = &self.auth;
        let http = Arc::new(PrincipalHttp {
            http: auth.http.clone(),
            dpop: principal.dpop.clone(),
        });
        let mut manager = AuthorizationManager::new_with_oauth_http_client(&auth.resource, http)
            .await
            .map_err(|e| self.oauth(e))?;
        let resolution = manager
            .resolve_metadata_from_challenge(Some(challenge))
            .await
            .map_err(|e| self.oauth(e))?;
        let metadata = resolution.metadata;
        let issuer = match resolution.source {
            // Endpoints made up from the MCP server's own URL: no issuer
            // claimed, nothing to verify.
            AuthorizationMetadataSource::LegacyEndpointFallback => metadata
                .issuer
                .clone()
                .unwrap_or_else(|| origin_of(&metadata.authorization_endpoint)),
            _ => self.verify_issuer(&metadata).await?,
        };
        self.check_issuer(&issuer)?;
        if let Some(dpop) = &principal.dpop {
            dpop.adopt(&metadata);
        }
        manager.set_metadata(metadata);
        let key = CredentialKey::new(
            principal.principal.as_deref(),
            issuer.clone(),
            auth.resource.clone(),
        );
        manager.set_credential_store(Slot(auth.store.slot(&key)));
        if sent.is_none()
            && manager
                .initialize_from_store()
                .await
                .map_err(|e| self.oauth(e))?
        {
            // Another transport (or a previous run) stored a token for
            // this key: try it before asking the user.
            principal.install(manager);
            return Ok(());
        }
        let config = &auth.config;
        let mut request = AuthorizationRequest::new(config.redirect_url.clone())
            .with_challenge(challenge.to_owned())
            .with_client_name(
                config
                    .client_name
                    .clone()
                    .unwrap_or_else(|| "mcp-group".to_owned()),
            );
        if config.scopes.is_empty() {
            request = request.with_initial_scope_selection();
        } else {
            request = request.with_scopes(config.scopes.iter().cloned());
        }
        if let Some(id) = &config.client_id {
            request = request.with_preregistered_client(id.clone());
            if let Some(secret) = &config.client_secret {
                request = request.with_client_secret(secret.clone());
            }
        }
        if let Some(url) = &config.client_metadata_url {
            request = request.with_client_metadata_url(url.clone());
        }
        let session = AuthorizationSession::new(manager, request)
            .await
            .map_err(|(_, source)| oauth(source))?;
        let url = session.get_authorization_url().to_owned();
        check_authorization_url(&url, auth.http.allow_insecure_http)?;
        match wait_limit(auth.mode) {
            None => {
                principal.set_pending(Some(url.clone()));
                let authorizer = auth.authorizer.clone();
                let principal = principal.clone();
                let key = self.session.clone();
                let shown = url.clone();
                tokio::spawn(async move {
                    let flow = complete(&*authorizer, &key, session, &shown);
                    match tokio::time::timeout(BACKGROUND_SIGN_IN_LIMIT, flow).await {
                        Ok(Ok(manager)) => principal.install(manager),
                        Ok(Err(error)) => {
                            tracing::warn!(session = %key, %error, "authorization failed");
                        }
                        Err(_) => {
                            tracing::warn!(session = %key, "the user did not come back to sign in; the next call starts anew");
                        }
                    }
                    principal.set_pending(None);
                });
                Err(Error::AuthorizationRequired { url })
            }
            Some(timeout) => {
                let flow = complete(&*auth.authorizer, &self.session, session, &url);
                let manager = tokio::time::timeout(timeout, flow)
                    .await
                    .map_err(|_| Error::AuthorizationTimeout { after: timeout })??;
                principal.install(manager);
                Ok(())
            }
        }
    }

    /// After a `403 insufficient_scope`: authorize the union of the granted
    /// and the challenged scopes with the principal's manager.
    async fn step_up(&self, generation: u64, challenge: &str) -> Result<(), Error> {
        let principal = &self.principal;
        let _flow = principal.flow.lock().await;
        let (now, manager) = principal.current();
        if now != generation {
            return Ok(());
        }
        let Some(manager) = manager else {
            return Ok(());
        };
        let base = Url::parse(&self.auth.resource).map_err(|_| Error::NotHttpUrl {
            url: redact_url(&self.auth.resource),
        })?;
        let params = rmcp::transport::auth::WWWAuthenticateParams::parse(challenge, &base);
        let required = params.scope.unwrap_or_default();
        let manager = manager.lock().await;
        let url = manager
            .request_scope_upgrade(&required)
            .await
            .map_err(|e| self.oauth(e))?;
        let redirect = match wait_limit(self.auth.mode) {
            Some(timeout) => {
                tokio::time::timeout(timeout, ask(&*self.auth.authorizer, &self.session, &url))
                    .await
                    .map_err(|_| Error::AuthorizationTimeout { after: timeout })??
            }
            None => {
                // A step-up needs the user too; without waiting there is
                // nobody to hand the redirect to the manager held here.
                return Err(Error::AuthorizationRequired { url });
            }
        };
        manager
            .exchange_code_for_token_with_issuer(
                &redirect.code,
                &redirect.state,
                redirect.iss.as_deref(),
            )
            .await
            .map_err(|e| self.oauth(e))?;
        principal.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// The issuer discovered metadata claims, once the issuer's own metadata
    /// confirms it. rmcp accepts metadata fetched from any `/.well-known/`
    /// URL a protected resource names, and when that URL is not one of an
    /// issuer's standard forms it checks no issuer at all: a hostile MCP
    /// server could then claim a trusted (even pinned) issuer while naming
    /// its own token endpoint, and collect the stored refresh token, the
    /// client secret and the code with its PKCE verifier. So the claim is
    /// checked here: the metadata must name an issuer, and that issuer's
    /// metadata at its standard location (RFC 8414 §3.1, then OpenID
    /// Connect) must name it too, with the same authorization and token
    /// endpoints.
    async fn verify_issuer(
        &self,
        metadata: &rmcp::transport::auth::AuthorizationMetadata,
    ) -> Result<String, Error> {
        let mismatch = |found: &str| Error::OAuthIssuerMismatch {
            expected: excerpt(metadata.issuer.as_deref().unwrap_or(""), "", 200),
            found: excerpt(found, "", 200),
        };
        let Some(issuer) = metadata.issuer.clone() else {
            return Err(mismatch(
                "authorization server metadata that names no issuer",
            ));
        };
        let Ok(url) = Url::parse(&issuer) else {
            return Err(mismatch("an issuer that is not a URL"));
        };
        if url.query().is_some() || url.fragment().is_some() {
            return Err(mismatch("an issuer with a query or fragment"));
        }
        let path = url.path().trim_end_matches('/');
        let origin = url.origin().ascii_serialization();
        let candidates = [
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}/.well-known/openid-configuration{path}"),
            format!("{origin}{path}/.well-known/openid-configuration"),
        ];
        let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
        for candidate in candidates {
            let Ok(request) = http::Request::get(candidate.as_str())
                .header(http::header::ACCEPT, "application/json")
                .body(Vec::new())
            else {
                continue;
            };
            let Ok(response) = self.auth.http.send(request).await else {
                continue;
            };
            if !response.status().is_success() {
                continue;
            }
            let Ok(own) = serde_json::from_slice::<rmcp::transport::auth::AuthorizationMetadata>(
                response.body(),
            ) else {
                continue;
            };
            let confirmed = own.issuer.as_deref().is_some_and(|own| same(own, &issuer))
                && same(&own.token_endpoint, &metadata.token_endpoint)
                && same(
                    &own.authorization_endpoint,
                    &metadata.authorization_endpoint,
                );
            if confirmed {
                return Ok(issuer);
            }
            return Err(mismatch(&format!(
                "metadata whose issuer's own metadata ({}) names other endpoints",
                redact_url(&candidate)
            )));
        }
        Err(mismatch(&format!(
            "metadata its issuer does not publish ({})",
            redact_url(&issuer)
        )))
    }

    /// rmcp's OAuth error, fit to show, with the client secret masked.
    fn oauth(&self, source: AuthError) -> Error {
        let secret = self.auth.config.client_secret.as_deref().unwrap_or("");
        Error::OAuth {
            source: crate::OAuthFailure::new(&source, secret),
        }
    }

    /// A secret leaves the MCP server's host only for a pinned issuer.
    fn check_issuer(&self, issuer: &str) -> Result<(), Error> {
        let config = &self.auth.config;
        if let Some(pinned) = &config.issuer {
            if pinned.trim_end_matches('/') != issuer.trim_end_matches('/') {
                return Err(Error::OAuthIssuerMismatch {
                    expected: pinned.clone(),
                    found: excerpt(issuer, "", 200),
                });
            }
            return Ok(());
        }
        if config.client_secret.is_some() {
            let host = |url: &str| {
                Url::parse(url)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_owned))
            };
            if host(issuer).is_none() || host(issuer) != host(&self.auth.resource) {
                return Err(Error::OAuthIssuerNotPinned {
                    issuer: excerpt(issuer, "", 200),
                });
            }
        }
        Ok(())
    }
}

/// Sends the user to `url` and exchanges the code the redirect brings.
async fn complete(
    authorizer: &dyn Authorizer,
    key: &SessionKey,
    session: AuthorizationSession,
    url: &str,
) -> Result<AuthorizationManager, Error> {
    let redirect = ask(authorizer, key, url).await?;
    session
        .handle_callback_with_issuer(&redirect.code, &redirect.state, redirect.iss.as_deref())
        .await
        .map_err(oauth)?;
    Ok(session.auth_manager)
}

/// Asks the application's authorizer for the user's redirect. A panic in
/// it is the authorizer's error, not the caller's: the request that needed
/// the token may run in the client that a server's sessions share, which
/// must not go down with it.
async fn ask(
    authorizer: &dyn Authorizer,
    key: &SessionKey,
    url: &str,
) -> Result<mcp_group_core::AuthorizationRedirect, Error> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(authorizer.authorize(key, url))
        .catch_unwind()
        .await
    {
        Ok(Ok(redirect)) => Ok(redirect),
        Ok(Err(source)) => Err(Error::Authorizer { source }),
        Err(_) => Err(Error::Authorizer {
            source: "the authorizer panicked".into(),
        }),
    }
}

/// How long a flow may wait for the user; `None`: not at all.
fn wait_limit(mode: AuthorizationMode) -> Option<std::time::Duration> {
    match mode {
        AuthorizationMode::Wait { timeout } => Some(timeout),
        _ => None,
    }
}

/// The authorization URL is shown to the user and opened in a browser: it
/// must be https (or http on a loopback host, or where plain http is
/// allowed), never `file:`, `javascript:` or another scheme a desktop hands
/// to some program.
fn check_authorization_url(url: &str, allow_insecure_http: bool) -> Result<(), Error> {
    let refused = || Error::OAuthInsecureUrl {
        what: "authorization endpoint",
        url: excerpt(&redact_url(url), "", 200),
    };
    let parsed = Url::parse(url).map_err(|_| refused())?;
    let web = matches!(parsed.scheme(), "https" | "http");
    if web && (allow_insecure_http || is_secure(&parsed)) {
        Ok(())
    } else {
        Err(refused())
    }
}

/// rmcp's OAuth error, fit to show (see [`crate::OAuthFailure`]).
fn oauth(source: AuthError) -> Error {
    Error::OAuth {
        source: crate::OAuthFailure::new(&source, ""),
    }
}

/// `scheme://host:port` of a URL, for an authorization server whose
/// metadata names no issuer.
fn origin_of(url: &str) -> String {
    Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| url.to_owned())
}

/// How a request presents the principal's token: rmcp's bearer header, or
/// headers of our own (DPoP).
struct Presented {
    bearer: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Presented {
    /// `custom` with our headers added.
    fn headers(
        &self,
        custom: &HashMap<HeaderName, HeaderValue>,
    ) -> HashMap<HeaderName, HeaderValue> {
        let mut headers = custom.clone();
        headers.extend(self.headers.iter().cloned());
        headers
    }
}

impl<C> AuthorizingClient<C>
where
    C: StreamableHttpClient<Error = reqwest::Error> + Send + Sync,
{
    /// A response stream resumed from after `last_event_id` with the
    /// user's current token (refreshed if it expired), and nothing more: a
    /// refusal ends the resumption instead of asking the user to sign in
    /// from inside a stream nobody is waiting on in the foreground.
    pub(crate) async fn resume_stream(
        &self,
        uri: Arc<str>,
        last_event_id: String,
        custom_headers: &HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> HttpResult<BoxStream<'static, Result<Sse, SseError>>> {
        let (_, token) = self
            .principal
            .token()
            .await
            .map_err(|e| carry(&self.auth.resource, e))?;
        let presented = self
            .present("GET", &uri, token.as_deref())
            .map_err(|e| carry(&self.auth.resource, e))?;
        self.inner
            .get_stream_with_max_sse_event_size(
                uri,
                None,
                Some(last_event_id),
                presented.bearer.clone(),
                presented.headers(custom_headers),
                max_sse_event_size,
            )
            .await
    }
}

impl<C> StreamableHttpClient for AuthorizingClient<C>
where
    C: StreamableHttpClient<Error = reqwest::Error> + Send + Sync,
{
    type Error = reqwest::Error;

    crate::limited_variants!();

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> HttpResult<StreamableHttpPostResponse> {
        self.call("POST", &uri, |auth| {
            self.inner.post_message_with_response_limits(
                uri.clone(),
                message.clone(),
                session_id.clone(),
                auth.bearer.clone(),
                auth.headers(&custom_headers),
                limits,
            )
        })
        .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> HttpResult<()> {
        // Never starts an authorization: a session that is closing does not
        // ask the user for anything.
        let (_, token) = self
            .principal
            .token()
            .await
            .map_err(|e| carry(&self.auth.resource, e))?;
        let auth = self
            .present("DELETE", &uri, token.as_deref())
            .map_err(|e| carry(&self.auth.resource, e))?;
        let headers = auth.headers(&custom_headers);
        self.inner
            .delete_session(uri, session_id, auth.bearer, headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> HttpResult<BoxStream<'static, Result<Sse, SseError>>> {
        self.call("GET", &uri, |auth| {
            self.inner.get_stream_with_max_sse_event_size(
                uri.clone(),
                session_id.clone(),
                last_event_id.clone(),
                auth.bearer.clone(),
                auth.headers(&custom_headers),
                max_sse_event_size,
            )
        })
        .await
    }
}

#[cfg(test)]
mod tests {

    /// An application authorizer that panics.
    struct Panics;

    #[mcp_group_core::async_trait]
    impl mcp_group_core::Authorizer for Panics {
        async fn authorize(
            &self,
            _session: &mcp_group_core::SessionKey,
            _url: &str,
        ) -> Result<mcp_group_core::AuthorizationRedirect, mcp_group_core::BoxError> {
            panic!("the application's bug")
        }
    }

    #[tokio::test]
    async fn a_panicking_authorizer_is_an_authorizer_error() {
        let key = mcp_group_core::SessionKey::default_session();
        let result = super::ask(&Panics, &key, "https://as.example/authorize").await;
        assert!(
            matches!(&result, Err(super::Error::Authorizer { source }) if source.to_string().contains("panicked")),
            "{result:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_oauth_request_that_is_never_answered_ends_at_the_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accepts, reads nothing, answers nothing, keeps the socket open.
        let _silent = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let http = super::GuardedHttp {
            client: reqwest::Client::new(),
            allow_insecure_http: false,
        };
        let request = http::Request::post(format!("http://127.0.0.1:{port}/token"))
            .body(Vec::new())
            .unwrap();
        let started = tokio::time::Instant::now();
        assert!(http.send(request).await.is_err());
        assert_eq!(started.elapsed(), super::OAUTH_REQUEST_TIMEOUT);
    }

    #[test]
    fn only_web_authorization_urls_reach_the_user() {
        for refused in [
            "file:///etc/passwd",
            "javascript:alert(1)",
            "smb://attacker/share/x.app",
            "http://example.com/authorize",
        ] {
            assert!(
                super::check_authorization_url(refused, false).is_err(),
                "{refused}"
            );
        }
        for allowed in [
            "https://as.example/authorize?x=1",
            "http://127.0.0.1:8080/authorize",
        ] {
            assert!(
                super::check_authorization_url(allowed, false).is_ok(),
                "{allowed}"
            );
        }
        assert!(super::check_authorization_url("file:///etc/passwd", true).is_err());
        assert!(super::check_authorization_url("http://example.com/a", true).is_ok());
    }

    use super::*;

    struct Nobody;

    #[async_trait::async_trait]
    impl Authorizer for Nobody {
        async fn authorize(
            &self,
            _session: &SessionKey,
            _url: &str,
        ) -> Result<mcp_group_core::AuthorizationRedirect, mcp_group_core::BoxError> {
            Err("nobody".into())
        }
    }

    fn user_auth() -> UserAuth {
        UserAuth::new(
            UserAuthorization::new("http://127.0.0.1:1/callback"),
            Arc::new(Nobody),
            AuthorizationMode::Fail,
            Arc::new(InMemoryTokenStore::default()),
            "http://127.0.0.1:1/mcp".to_owned(),
            GuardedHttp {
                client: reqwest::Client::new(),
                allow_insecure_http: false,
            },
        )
    }

    fn session(principal: &str) -> SessionKey {
        SessionKey::with_principal(Some(principal), mcp_group_core::SessionId::new("s"))
    }

    fn key(n: usize) -> CredentialKey {
        CredentialKey::new(Some(&format!("user-{n}")), "https://as", "https://mcp")
    }

    #[test]
    fn sessions_of_one_principal_share_its_state_while_one_lives() {
        let auth = user_auth();
        let first = auth.principal(&session("alice"));
        let second = auth.principal(&session("alice"));
        assert!(Arc::ptr_eq(&first, &second));
        assert!(!Arc::ptr_eq(&first, &auth.principal(&session("bob"))));
    }

    #[test]
    fn principals_without_a_live_session_do_not_accumulate() {
        let auth = user_auth();
        let kept = auth.principal(&session("kept"));
        for n in 0..10_000 {
            drop(auth.principal(&session(&format!("user-{n}"))));
        }
        assert!(
            auth.principals_held() <= MIN_PRUNE_AT,
            "{} principals held",
            auth.principals_held()
        );
        assert!(Arc::ptr_eq(&kept, &auth.principal(&session("kept"))));
    }

    #[test]
    fn the_token_store_keeps_at_most_its_capacity_of_unheld_keys() {
        let store = InMemoryTokenStore::with_capacity(100);
        for n in 0..1_000 {
            drop(store.slot(&key(n)));
        }
        assert_eq!(store.len(), 100);
    }

    #[tokio::test]
    async fn the_least_recently_used_key_goes_first_and_a_held_one_never() {
        let store = InMemoryTokenStore::with_capacity(2);
        let held = store.slot(&key(0));
        let credentials = StoredCredentials::new("client".into(), None, Vec::new(), Some(1));
        held.save(credentials).await.unwrap();
        drop(store.slot(&key(1)));
        drop(store.slot(&key(2)));
        // Key 1 was handed out before key 2; key 0 earliest, but it is held.
        drop(store.slot(&key(3)));
        assert_eq!(store.len(), 2);
        let again = store.slot(&key(0));
        assert!(again.load().await.unwrap().is_some(), "the held slot stays");
        drop((held, again));
        // Unheld now, and the least recently handed out is key 3.
        let fresh = store.slot(&key(4));
        drop(fresh);
        assert_eq!(store.len(), 2);
        assert!(store.slot(&key(0)).load().await.unwrap().is_some());
    }
}
