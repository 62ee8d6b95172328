//! One live, initialized MCP connection.

use std::{
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use rmcp::{
    ClientHandler, RoleClient,
    model::{
        CallToolRequestParams, ClientCapabilities, ClientConfig, ElicitRequestParams, ElicitResult,
        ElicitationAction, ElicitationCapability, FormElicitationCapability, Implementation,
        JsonObject, RequestMetaObject, ServerPeerInfo, TASKS_EXTENSION_ID,
    },
    service::{ClientServiceExt, Peer, RunningService, RxJsonRpcMessage, TxJsonRpcMessage},
    transport::{IntoTransport, Transport},
};

/// The most server-initiated requests (elicitations) of one session handled
/// at once; the server gets an error for each request beyond it.
pub const MAX_SERVER_REQUESTS_PER_SESSION: usize = 8;

/// The most `input_required` rounds (SEP-2322) one call may take before it
/// fails.
pub const MAX_INPUT_ROUNDS: usize = 10;

/// The protocol era of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Era {
    /// 2025-11-25 and earlier: the `initialize` handshake and, over HTTP, a
    /// protocol session (`Mcp-Session-Id`).
    Legacy,
    /// 2026-07-28 and later: no handshake and no protocol session; every
    /// request carries its own `_meta`.
    Modern,
}

impl Era {
    /// The era of a protocol version.
    pub fn of(version: &rmcp::model::ProtocolVersion) -> Self {
        if version.has_initialize() {
            Self::Legacy
        } else {
            Self::Modern
        }
    }

    /// `"legacy"` or `"modern"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Legacy => "legacy",
            Self::Modern => "modern",
        }
    }
}

impl fmt::Display for Era {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The most pages of one `tools/list` this client follows.
pub const MAX_TOOL_LIST_PAGES: usize = 100;

/// The most tools one server may list.
pub const MAX_TOOLS: usize = 10_000;

/// The most bytes (as JSON) one server's tool list may hold in all.
pub const MAX_TOOL_LIST_BYTES: usize = 32 << 20;

/// How many bytes `value` takes as JSON, counted without building the text.
fn json_size(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serializing a value that came off the wire cannot fail; if it did, it
    // would count what was written so far.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

use crate::{
    ClientOptions, Error, SessionKey, ToolDescriptor, ToolList, ToolOutput, call,
    era::{EraMemory, Plan},
    options::{ElicitationAnswer, apply_defaults},
    tool_list,
};

/// How long the discovery that learns a modern server's `ttlMs` may take.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Connection::close`] waits for the protocol task to stop.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// Work to run when a connection closes, such as reaping a child process.
///
/// [`Connection::close`] calls [`Cleanup::cleanup`] after the MCP session has
/// ended. If the connection is dropped instead, the implementor's `Drop` must
/// release the resource synchronously (kill the process, close the socket):
/// a drop cannot await, and may happen outside any runtime.
#[async_trait::async_trait]
pub trait Cleanup: Send + 'static {
    /// Releases the resource gracefully.
    async fn cleanup(self: Box<Self>);
}

/// The client side of the handshake — what we tell the server about
/// ourselves — and the handler of what the server sends unasked, for one
/// connection: it knows the session the connection serves, and bounds the
/// server's concurrent requests to [`MAX_SERVER_REQUESTS_PER_SESSION`].
#[derive(Clone)]
pub struct ClientAgent {
    info: Arc<ClientConfig>,
    options: ClientOptions,
    session: SessionKey,
    server_requests: Arc<tokio::sync::Semaphore>,
    tools_changed: Arc<tokio::sync::watch::Sender<u64>>,
    /// Set once the connection is shared by several sessions
    /// ([`Connection::share`]): a request the server sends unasked then
    /// belongs to no one session, and is refused.
    shared: Arc<AtomicBool>,
}

impl fmt::Debug for ClientAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAgent")
            .field("options", &self.options)
            .field("session", &self.session)
            .finish()
    }
}

impl ClientAgent {
    /// A client that names itself `mcp-group` and negotiates the protocol
    /// era (see [`ClientOptions::with_protocol_version`]).
    pub fn new() -> Self {
        Self::with_options(ClientOptions::new(), SessionKey::default_session())
    }

    /// A client with `options` (protocol version, elicitation handler) for
    /// a connection of `session`.
    pub fn with_options(options: ClientOptions, session: SessionKey) -> Self {
        let mut capabilities = ClientCapabilities::default();
        if options.elicitation().is_some() {
            let mut elicitation = ElicitationCapability::new();
            elicitation.form = Some(FormElicitationCapability::default());
            capabilities.elicitation = Some(elicitation);
        }
        // `call_tool` follows a task to its end, so a server may answer
        // with one (SEP-2663).
        capabilities
            .extensions
            .get_or_insert_with(Default::default)
            .insert(TASKS_EXTENSION_ID.to_owned(), JsonObject::new());
        let info = ClientConfig::new(
            capabilities,
            Implementation::new("mcp-group", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(options.initialize_version());
        Self {
            info: Arc::new(info),
            options,
            session,
            server_requests: Arc::new(tokio::sync::Semaphore::new(MAX_SERVER_REQUESTS_PER_SESSION)),
            tools_changed: Arc::new(tokio::sync::watch::Sender::new(0)),
            shared: Arc::default(),
        }
    }

    /// The agent of one session on a shared connection: its own session
    /// and bound on server requests, the rest in common.
    fn for_session(&self, session: SessionKey) -> Self {
        Self {
            session,
            server_requests: Arc::new(tokio::sync::Semaphore::new(MAX_SERVER_REQUESTS_PER_SESSION)),
            ..self.clone()
        }
    }
}

impl Default for ClientAgent {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientHandler for ClientAgent {
    fn get_info(&self) -> ClientConfig {
        (*self.info).clone()
    }

    async fn on_tool_list_changed(&self, _context: rmcp::service::NotificationContext<RoleClient>) {
        tracing::debug!("server says its tool list changed");
        self.tools_changed.send_modify(|version| *version += 1);
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<ElicitResult, rmcp::ErrorData> {
        if self.shared.load(Ordering::Acquire) {
            // Over a connection several sessions share, a question the
            // server asks unasked cannot be put to the right end user.
            tracing::warn!("refusing an elicitation on a connection shared by several sessions");
            return Err(rmcp::ErrorData::invalid_request(
                "this connection is shared by several sessions: ask within a call (input_required)",
                None,
            ));
        }
        self.elicit(request).await.ok_or_else(|| {
            rmcp::ErrorData::internal_error(
                format!(
                    "too many concurrent requests for this session (limit {MAX_SERVER_REQUESTS_PER_SESSION})"
                ),
                None,
            )
        })
    }
}

impl ClientAgent {
    /// Answers one elicitation through the session's [`crate::Elicitation`]
    /// handler (declining when there is none, or for modes other than
    /// form); `None` when [`MAX_SERVER_REQUESTS_PER_SESSION`] of the
    /// session's requests are in the handler already. Elicitation requests
    /// of the legacy era, `input_required` rounds and task input of the
    /// modern one all come here.
    pub(crate) async fn elicit(&self, request: ElicitRequestParams) -> Option<ElicitResult> {
        // Each request runs in a task of its own: without a bound, a server
        // could keep any number of them waiting on the end user.
        let Ok(_permit) = self.server_requests.clone().try_acquire_owned() else {
            tracing::warn!(
                session = %self.session,
                limit = MAX_SERVER_REQUESTS_PER_SESSION,
                "refusing an elicitation: too many server requests in flight for this session"
            );
            return None;
        };
        let declined = Some(ElicitResult::new(ElicitationAction::Decline));
        let (
            Some(handler),
            ElicitRequestParams::FormElicitationParams {
                message,
                requested_schema,
                ..
            },
        ) = (self.options.elicitation(), request)
        else {
            return declined;
        };
        let schema = match serde_json::to_value(&requested_schema) {
            Ok(serde_json::Value::Object(schema)) => schema,
            _ => return declined,
        };
        match handler.elicit(&self.session, &message, &schema).await {
            ElicitationAnswer::Accept(mut content) => {
                apply_defaults(&schema, &mut content);
                tracing::debug!(fields = content.len(), "elicitation accepted");
                Some(
                    ElicitResult::new(ElicitationAction::Accept)
                        .with_content(serde_json::Value::Object(content)),
                )
            }
            ElicitationAnswer::Decline => declined,
            ElicitationAnswer::Cancel => Some(ElicitResult::new(ElicitationAction::Cancel)),
        }
    }

    /// The session this client serves.
    pub(crate) fn session(&self) -> &SessionKey {
        &self.session
    }
}

/// One initialized MCP connection, shared by every concurrent call of a session.
///
/// Calls take `&self`; rmcp multiplexes concurrent requests over the one
/// connection by JSON-RPC id. Closing is explicit ([`Connection::close`]);
/// dropping a connection also ends it (rmcp's task is cancelled and the
/// transport's [`Cleanup`] is dropped, which must release its resource).
pub struct Connection {
    id: u64,
    endpoint: Arc<str>,
    /// rmcp's running client: its peer sends requests. Shared with the
    /// sessions of [`Connection::share`]; dropping the last holder cancels
    /// rmcp's task.
    service: Arc<RunningService<RoleClient, ClientAgent>>,
    /// This connection's session: MRTR rounds and task input go to its
    /// elicitation handler.
    agent: ClientAgent,
    /// The session's requests, tagged when the connection is shared.
    requester: call::Requester,
    /// Whether this connection owns rmcp's client (and closes it), rather
    /// than being one session's share of it.
    owner: bool,
    cleanup: Mutex<Option<Box<dyn Cleanup>>>,
    /// Set to true by [`Connection::close`].
    shut: tokio::sync::watch::Sender<bool>,
    /// Closed (never sent on) when rmcp's protocol task drops the transport.
    ended: tokio::sync::watch::Receiver<()>,
    tools_changed: tokio::sync::watch::Receiver<u64>,
    /// Bumped by `subscriptions/listen` notifications as the agent bumps it
    /// for `notifications/tools/list_changed`.
    tools_changed_sender: Arc<tokio::sync::watch::Sender<u64>>,
    /// Set once a tool-list subscription was attempted (one for the
    /// connection and every share of it).
    subscribed: Arc<tokio::sync::OnceCell<bool>>,
    /// What the layer above keeps with this connection, one value per type.
    extensions: Mutex<Vec<Arc<dyn std::any::Any + Send + Sync>>>,
    /// What the layer above keeps with rmcp's client, common to the
    /// connection and its shares.
    client_extensions: Arc<Mutex<Vec<Arc<dyn std::any::Any + Send + Sync>>>>,
}

/// A value a transport attaches to every request of one session on a
/// shared connection ([`Connection::share`]), found again in the request's
/// rmcp extensions by the transport's own sending code: over streamable
/// HTTP, the session's headers and credentials.
#[derive(Clone)]
pub struct RequestTag(Arc<dyn std::any::Any + Send + Sync>);

impl RequestTag {
    /// A tag carrying `value`.
    pub fn new<T: std::any::Any + Send + Sync>(value: Arc<T>) -> Self {
        Self(value)
    }

    /// The value of type `T` that `extensions` (an outgoing request's)
    /// carry in their tag, if any.
    pub fn find<T: std::any::Any + Send + Sync>(
        extensions: &rmcp::model::Extensions,
    ) -> Option<Arc<T>> {
        extensions
            .get::<RequestTag>()
            .and_then(|tag| tag.0.clone().downcast::<T>().ok())
    }
}

impl fmt::Debug for RequestTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RequestTag")
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("endpoint", &self.endpoint)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Connection {
    /// Runs the MCP `initialize` handshake over `transport` (anything rmcp can
    /// turn into a client transport: a child process, an `(AsyncRead,
    /// AsyncWrite)` pair, a `Sink + Stream` of messages, ...) and returns the
    /// ready connection.
    ///
    /// `endpoint` names the server in errors and logs.
    ///
    /// # Cancel safety
    /// Dropping the future drops the transport; nothing is left running.
    pub async fn establish<T, E, A>(
        transport: T,
        endpoint: impl Into<String>,
    ) -> Result<Self, Error>
    where
        T: IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let options = ClientOptions::new();
        Self::establish_with(
            transport,
            endpoint,
            &options,
            &SessionKey::default_session(),
        )
        .await
    }

    /// Like [`Connection::establish`], with the client's `options` (offered
    /// protocol version, elicitation handler), for a connection of
    /// `session`: the elicitation handler is told which session each of the
    /// server's questions comes from. Transports pass the key
    /// [`crate::Transport::connect`] was given.
    pub async fn establish_with<T, E, A>(
        transport: T,
        endpoint: impl Into<String>,
        options: &ClientOptions,
        session: &SessionKey,
    ) -> Result<Self, Error>
    where
        T: IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        Self::establish_remembering(transport, endpoint, options, session, &EraMemory::new()).await
    }

    /// Like [`Connection::establish_with`], starting from what `memory`
    /// knows of the server's era and teaching it what this connection
    /// finds: a modern server whose discovery is still fresh gets no
    /// handshake at all, a legacy one no discovery probe (see
    /// [`crate::era`]). Transports keep one memory each and open their
    /// connections through [`crate::era::negotiate`].
    pub async fn establish_remembering<T, E, A>(
        transport: T,
        endpoint: impl Into<String>,
        options: &ClientOptions,
        session: &SessionKey,
        memory: &EraMemory,
    ) -> Result<Self, Error>
    where
        T: IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let agent = ClientAgent::with_options(options.clone(), session.clone());
        Self::establish_with_agent(transport, endpoint.into(), options, agent, memory).await
    }

    /// Like [`Connection::establish_remembering`], for a connection to be
    /// shared by several sessions ([`Connection::share`]): it belongs to no
    /// one session, so it refuses every request the server sends unasked
    /// from the start (during its own handshake too), and has no
    /// elicitation handler of its own.
    pub async fn establish_for_sharing<T, E, A>(
        transport: T,
        endpoint: impl Into<String>,
        options: &ClientOptions,
        memory: &EraMemory,
    ) -> Result<Self, Error>
    where
        T: IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let agent = ClientAgent::with_options(options.clone(), SessionKey::default_session());
        agent.shared.store(true, Ordering::Release);
        Self::establish_with_agent(transport, endpoint.into(), options, agent, memory).await
    }

    async fn establish_with_agent<T, E, A>(
        transport: T,
        endpoint: String,
        options: &ClientOptions,
        agent: ClientAgent,
        memory: &EraMemory,
    ) -> Result<Self, Error>
    where
        T: IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let tools_changed = agent.tools_changed.subscribe();
        let tools_changed_sender = agent.tools_changed.clone();
        let session_agent = agent.clone();
        let (transport, ended) = Watched::new(transport.into_transport());
        let (service, handshake) = match memory.plan(options) {
            Plan::Direct(info) => (
                rmcp::service::serve_directly(agent, transport, Some((*info).clone())),
                false,
            ),
            Plan::Handshake(lifecycle) => {
                match agent.serve_with_lifecycle(transport, lifecycle).await {
                    Ok(service) => (service, true),
                    Err(error) => {
                        memory.learn_from_failure(options, &error);
                        return Err(Error::Handshake {
                            endpoint,
                            source: Box::new(error),
                        });
                    }
                }
            }
        };
        let id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
        let info = service.peer().peer_info();
        let era = info.as_ref().map(|info| Era::of(&info.protocol_version));
        if handshake {
            match (era, info) {
                (Some(Era::Modern), Some(info)) if !memory.wants_ttl() => {
                    memory.remember_modern(info, 0);
                }
                (Some(Era::Modern), Some(info)) => {
                    // How long the server says its description holds: one
                    // more discovery, once per expiry.
                    let discovery = tokio::time::timeout(
                        DISCOVERY_TIMEOUT,
                        service.discover(RequestMetaObject::default()),
                    )
                    .await;
                    let ttl_ms = match discovery {
                        Ok(Ok(result)) => result.ttl_ms,
                        Ok(Err(error)) => {
                            tracing::debug!(%error, "discovery for its ttlMs failed; not reused");
                            0
                        }
                        Err(_) => {
                            tracing::debug!("discovery for its ttlMs timed out; not reused");
                            0
                        }
                    };
                    memory.remember_modern(info, ttl_ms);
                }
                (Some(Era::Legacy), _) if options.negotiates() => memory.remember_legacy(),
                _ => {}
            }
        }
        tracing::debug!(connection = id, %endpoint, ?era, handshake, "MCP connection established");
        let requester = call::Requester {
            peer: service.peer().clone(),
            tag: None,
        };
        Ok(Self {
            id,
            endpoint: Arc::from(endpoint),
            service: Arc::new(service),
            agent: session_agent,
            requester,
            owner: true,
            cleanup: Mutex::new(None),
            shut: tokio::sync::watch::Sender::new(false),
            ended,
            tools_changed,
            tools_changed_sender,
            subscribed: Arc::default(),
            extensions: Mutex::new(Vec::new()),
            client_extensions: Arc::default(),
        })
    }

    /// `session`'s share of this connection: a connection of its own to
    /// the layers above (its own elicitation handler, extensions and
    /// [`Connection::close`]), whose requests go over this one's rmcp
    /// client, each carrying `tag` for the transport to find
    /// ([`RequestTag::find`]) — over streamable HTTP, the session's own
    /// headers and credentials.
    ///
    /// For a connection of the 2026-07-28 era, where requests are
    /// independent of each other (no protocol session): a thousand
    /// sessions then cost one rmcp client, and a new session's first call
    /// is its first request. Requests the server sends unasked on this
    /// connection are refused from now on (they would belong to no one
    /// session); tool-list change notifications and the
    /// `subscriptions/listen` subscription are the connection's, seen by
    /// every share. Closing a share ends only the share; the connection
    /// lives while it or a share is held.
    ///
    /// `None` for a connection of the 2025-11-25 era (or not yet known to
    /// be modern): its protocol session is one client's, not to be shared.
    pub fn share(&self, session: &SessionKey, tag: Option<RequestTag>) -> Option<Connection> {
        if self.era() != Some(Era::Modern) {
            return None;
        }
        self.agent.shared.store(true, Ordering::Release);
        Some(Self {
            id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
            endpoint: self.endpoint.clone(),
            service: self.service.clone(),
            agent: self.agent.for_session(session.clone()),
            requester: call::Requester {
                peer: self.requester.peer.clone(),
                tag,
            },
            owner: false,
            cleanup: Mutex::new(None),
            shut: tokio::sync::watch::Sender::new(false),
            ended: self.ended.clone(),
            tools_changed: self.tools_changed.clone(),
            tools_changed_sender: self.tools_changed_sender.clone(),
            subscribed: self.subscribed.clone(),
            extensions: Mutex::new(Vec::new()),
            client_extensions: self.client_extensions.clone(),
        })
    }

    /// Whether this is one session's share of a connection
    /// ([`Connection::share`]).
    pub fn is_share(&self) -> bool {
        !self.owner
    }

    /// Data of type `T` the layer above keeps with this connection, made
    /// by `init` on first use; it lives as long as the connection (the
    /// facade keeps a session's own tool list here, so it goes when the
    /// session does). One value per type.
    pub fn extension<T: std::any::Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Arc<T> {
        find_or_insert(&self.extensions, init)
    }

    /// Like [`Connection::extension`], but one value for rmcp's client:
    /// common to a connection and all its shares ([`Connection::share`]),
    /// for what belongs to the client rather than the session (the facade
    /// notes here whether the client has listed the tools whose parameters
    /// rmcp maps to headers).
    pub fn client_extension<T: std::any::Any + Send + Sync>(
        &self,
        init: impl FnOnce() -> T,
    ) -> Arc<T> {
        find_or_insert(&self.client_extensions, init)
    }

    /// Attaches work to run when the connection closes (kept alive until then).
    pub fn with_cleanup(self, cleanup: impl Cleanup) -> Self {
        if let Ok(mut slot) = self.cleanup.lock() {
            *slot = Some(Box::new(cleanup));
        }
        self
    }

    /// A process-unique number for this connection, for logs and demos.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The server this connection talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// What the server said about itself in the handshake (`initialize`)
    /// or discovery (`server/discover`).
    pub fn server_info(&self) -> Option<Arc<ServerPeerInfo>> {
        self.service.peer_info()
    }

    /// The protocol version negotiated with the server.
    pub fn protocol_version(&self) -> Option<String> {
        self.service
            .peer_info()
            .map(|info| info.protocol_version.to_string())
    }

    /// The protocol era negotiated with the server.
    pub fn era(&self) -> Option<Era> {
        self.service
            .peer_info()
            .map(|info| Era::of(&info.protocol_version))
    }

    /// The rmcp peer, for requests this crate does not wrap.
    ///
    /// On a share ([`Connection::share`]) this is the shared client's
    /// peer: its requests carry no session's tag, so they go without the
    /// session's headers and credentials, and rmcp's response cache on it
    /// is common to every share.
    pub fn peer(&self) -> &Peer<RoleClient> {
        self.service.peer()
    }

    /// Whether the connection has ended (closed by us, or the transport ended).
    /// Two uncontended reads: cheap enough for every call's hot path.
    pub fn is_closed(&self) -> bool {
        *self.shut.borrow() || self.ended.has_changed().is_err()
    }

    /// Waits until the connection has ended: the server closed its end or
    /// died, the transport failed, or the connection was closed. This is the
    /// moment rmcp's protocol task lets go of the transport; it does not
    /// wait for [`Connection::close`]'s cleanup (for stdio: the reaping).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn closed(&self) {
        let mut shut = self.shut.subscribe();
        if self.owner {
            // Ended when rmcp lets go of the transport (`close` waits for
            // that), not when `close` starts; at the latest when `close`
            // gives up waiting.
            return tokio::select! {
                () = self.ended() => {}
                () = async {
                    let _ = shut.wait_for(|shut| *shut).await;
                    tokio::time::sleep(CLOSE_TIMEOUT).await;
                } => {}
            };
        }
        tokio::select! {
            () = self.ended() => {}
            _ = shut.wait_for(|shut| *shut) => {}
        }
    }

    /// Waits until rmcp's protocol task has let go of the transport.
    async fn ended(&self) {
        let mut ended = self.ended.clone();
        // Nothing is ever sent: `changed` fails once the sender is dropped.
        while ended.changed().await.is_ok() {}
    }

    /// A receiver that changes each time the server sends
    /// `notifications/tools/list_changed`. It is not a signal of the
    /// connection's end (rmcp keeps the sender until the connection is
    /// closed); wait for that with [`Connection::closed`].
    pub fn tools_changed(&self) -> tokio::sync::watch::Receiver<u64> {
        let mut receiver = self.tools_changed.clone();
        receiver.mark_unchanged();
        receiver
    }

    /// How many tool-list changes the server announced so far (the value
    /// [`Connection::tools_changed`] watches).
    pub fn tools_changed_count(&self) -> u64 {
        *self.tools_changed.borrow()
    }

    /// In the 2026-07-28 era, where change notifications arrive only on a
    /// subscription, opens one `subscriptions/listen` for tool-list changes
    /// on this connection and follows it in a task for the connection's
    /// life: each change bumps [`Connection::tools_changed`], as
    /// `notifications/tools/list_changed` does in the 2025-11-25 era (where
    /// this does nothing). Only the first call tries; it returns whether
    /// changes are followed (false: a legacy connection, or the server
    /// refused or did not acknowledge tool-list changes).
    ///
    /// # Cancel safety
    /// Dropping the future before the server acknowledged abandons the
    /// request (rmcp sends `notifications/cancelled`); a later call does not
    /// try again.
    pub async fn subscribe_tool_changes(&self, timeout: Duration) -> bool {
        *self
            .subscribed
            .get_or_init(|| async {
                if self.era() != Some(Era::Modern) {
                    return false;
                }
                let peer = self.service.peer().clone();
                let listen = tokio::time::timeout(timeout, peer.listen(tool_list::tools_filter()));
                match listen.await {
                    Ok(Ok(subscription)) if tool_list::accepts_tools(&subscription) => {
                        tokio::spawn(tool_list::follow_subscription(
                            peer,
                            subscription,
                            self.tools_changed_sender.clone(),
                            self.ended.clone(),
                            timeout,
                        ));
                        tracing::debug!(connection = self.id, "following tool-list changes");
                        true
                    }
                    Ok(Ok(_)) => {
                        tracing::debug!(connection = self.id, "the server does not announce tool-list changes");
                        false
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(connection = self.id, %error, "subscriptions/listen failed");
                        false
                    }
                    Err(_) => {
                        tracing::debug!(connection = self.id, "subscriptions/listen timed out");
                        false
                    }
                }
            })
            .await
    }

    /// Lists every tool the server offers, following pagination to the end.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future abandons the request.
    ///
    /// A server cannot make the list grow without end: more than
    /// [`MAX_TOOL_LIST_PAGES`] pages, [`MAX_TOOLS`] tools or
    /// [`MAX_TOOL_LIST_BYTES`] is [`Error::LimitExceeded`]; `timeout` bounds
    /// the whole listing.
    pub async fn list_tools(&self, timeout: Duration) -> Result<Vec<ToolDescriptor>, Error> {
        Ok(self.list_tools_with_hint(timeout).await?.tools)
    }

    /// Like [`Connection::list_tools`], with the cache hint the server gave
    /// (`ttlMs`, `cacheScope`, merged over the pages as [`CacheHint`](crate::CacheHint) says).
    ///
    /// Every page is asked of the server: rmcp's own response cache is not
    /// consulted, so the caller's policy (clamps, invalidation) is the only one.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future abandons the request.
    pub async fn list_tools_with_hint(&self, timeout: Duration) -> Result<ToolList, Error> {
        tokio::time::timeout(timeout, self.list_tool_pages())
            .await
            .map_err(|_| Error::Timeout {
                operation: "tools/list",
                after: timeout,
            })?
    }

    async fn list_tool_pages(&self) -> Result<ToolList, Error> {
        use rmcp::model::{ClientRequest, ListToolsRequest, ServerResult};
        let mut tools = Vec::new();
        let mut bytes = 0;
        let mut cursor = None;
        let mut hint = tool_list::HintMerger::new();
        for _ in 0..MAX_TOOL_LIST_PAGES {
            let params = rmcp::model::PaginatedRequestParams::default().with_cursor(cursor);
            let request = ClientRequest::ListToolsRequest(ListToolsRequest {
                method: Default::default(),
                params: Some(params),
                extensions: Default::default(),
            });
            let page = match self
                .requester
                .send(request)
                .await
                .map_err(|e| Error::from_service(e, "tools/list"))?
            {
                ServerResult::ListToolsResult(page) => page,
                ServerResult::CustomResult(custom) => {
                    tool_list::lenient_page(custom.0).ok_or(Error::UnexpectedResponse)?
                }
                _ => return Err(Error::UnexpectedResponse),
            };
            hint.page(page.ttl_ms, page.cache_scope);
            if tools.len() + page.tools.len() > MAX_TOOLS {
                return Err(Error::LimitExceeded {
                    what: "tools",
                    limit: MAX_TOOLS,
                });
            }
            bytes += page.tools.iter().map(json_size).sum::<usize>();
            if bytes > MAX_TOOL_LIST_BYTES {
                return Err(Error::LimitExceeded {
                    what: "bytes of tool list",
                    limit: MAX_TOOL_LIST_BYTES,
                });
            }
            tools.extend(page.tools.into_iter().map(ToolDescriptor::from));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => {
                    return Ok(ToolList {
                        tools,
                        cache: hint.finish(),
                    });
                }
            }
        }
        Err(Error::LimitExceeded {
            what: "tools/list pages",
            limit: MAX_TOOL_LIST_PAGES,
        })
    }

    /// Calls a tool by its server name.
    ///
    /// A result with `isError: true` is returned as `Ok`; check
    /// [`ToolOutput::is_error`].
    ///
    /// On a 2026-07-28 server the call may answer `input_required` (SEP-2322):
    /// each of its input requests goes to this session's elicitation handler,
    /// the call is sent again with the answers and the server's
    /// `requestState` unchanged, for at most [`MAX_INPUT_ROUNDS`] rounds.
    ///
    /// A server may also answer with a task (the `io.modelcontextprotocol/tasks`
    /// extension, which this client declares): the call then polls
    /// `tasks/get` until the task ends, waiting between polls as long as the
    /// server's `pollIntervalMs` asks, or longer as the task runs on, within
    /// [`crate::MIN_TASK_POLL_INTERVAL`]..=[`crate::MAX_TASK_POLL_INTERVAL`];
    /// the task's input requests go to the same elicitation handler and back
    /// with `tasks/update`. `timeout` bounds the whole exchange, rounds and
    /// task included.
    ///
    /// Each call runs in an `mcp.call` `tracing` span with the session, the
    /// tool, the era and the outcome (`ok`, `tool_error`, `timeout`,
    /// `cancelled`, `error`, or `dropped` when the caller gave up); with the
    /// `otel` feature its W3C trace context goes into every request's `_meta`.
    ///
    /// # Cancel safety
    /// Dropping the future (or hitting `timeout`) sends
    /// `notifications/cancelled` for the request in flight, stops the rounds
    /// and sends `tasks/cancel` for a task still running; the connection
    /// stays usable.
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: JsonObject,
        timeout: Duration,
    ) -> Result<ToolOutput, Error> {
        let agent = &self.agent;
        let span = tracing::info_span!(
            "mcp.call",
            session = %agent.session(),
            tool = name,
            era = self.era().map(Era::as_str),
            outcome = tracing::field::Empty,
        );
        let mut outcome = Outcome(Some(span.clone()));
        let params = CallToolRequestParams::new(name.to_owned()).with_arguments(arguments);
        let call = tokio::time::timeout(timeout, call::call_tool(&self.requester, agent, params));
        let result = match tracing::Instrument::instrument(call, span).await {
            Ok(Ok(result)) => Ok(ToolOutput::new(result)),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(Error::Timeout {
                operation: "tools/call",
                after: timeout,
            }),
        };
        outcome.record(match &result {
            Ok(output) if output.is_error() => "tool_error",
            Ok(_) => "ok",
            Err(Error::Timeout { .. }) => "timeout",
            Err(Error::Cancelled) => "cancelled",
            Err(_) => "error",
        });
        result
    }

    /// Asks the server whether it is there and waits for the answer: a
    /// `ping` in the legacy era; `server/discover` in the modern one, which
    /// has no `ping`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), Error> {
        use rmcp::model::{
            ClientRequest, DiscoverRequest, DiscoverRequestParams, PingRequest, ServerResult,
        };
        let (request, operation) = match self.era() {
            Some(Era::Modern) => (
                ClientRequest::DiscoverRequest(DiscoverRequest::new(DiscoverRequestParams {})),
                "server/discover",
            ),
            _ => (ClientRequest::PingRequest(PingRequest::default()), "ping"),
        };
        let response = tokio::time::timeout(timeout, self.requester.send(request))
            .await
            .map_err(|_| Error::Timeout {
                operation,
                after: timeout,
            })?
            .map_err(|e| Error::from_service(e, operation))?;
        match response {
            ServerResult::EmptyResult(_) | ServerResult::DiscoverResult(_) => Ok(()),
            _ => Err(Error::UnexpectedResponse),
        }
    }

    /// Ends the MCP session and releases the transport's resources (for
    /// stdio: closes the server's stdin, waits for it to exit, kills it if it
    /// does not). Idempotent.
    ///
    /// # Cancel safety
    /// If the future is dropped part-way, the remaining resources are released
    /// by their `Drop` (for stdio: the process group is killed).
    pub async fn close(&self) {
        self.shut.send_replace(true);
        if !self.owner {
            // A share: the connection goes on for the other sessions.
            tracing::debug!(
                connection = self.id,
                "session's share of a connection closed"
            );
            return;
        }
        // Cancelling rmcp's task makes it close and drop the transport, which
        // is what `closed` waits for.
        self.service.cancellation_token().cancel();
        if tokio::time::timeout(CLOSE_TIMEOUT, self.ended())
            .await
            .is_err()
        {
            tracing::warn!(
                connection = self.id,
                "MCP service task did not stop within {CLOSE_TIMEOUT:?}"
            );
        }
        let cleanup = self.cleanup.lock().ok().and_then(|mut c| c.take());
        if let Some(cleanup) = cleanup {
            cleanup.cleanup().await;
        }
        tracing::debug!(connection = self.id, "MCP connection closed");
    }
}

/// Records a call's outcome on its span: `dropped` unless the call
/// recorded one before it ended.
struct Outcome(Option<tracing::Span>);

impl Outcome {
    fn record(&mut self, outcome: &'static str) {
        if let Some(span) = self.0.take() {
            span.record("outcome", outcome);
        }
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        self.record("dropped");
    }
}

/// The transport as rmcp's protocol task owns it, with a sender that is
/// dropped with it: whether the server closed the stream, the transport
/// failed, the connection was closed or the runtime went away, the task
/// ends and [`Connection::closed`] learns of it.
///
/// rmcp's own signals do not cover this: the running service's
/// cancellation token is cancelled only by `close` (not when the server
/// goes away), and it keeps the [`ClientAgent`] — and with it the
/// tool-list sender — until it is closed.
struct Watched<T> {
    transport: T,
    _ended: tokio::sync::watch::Sender<()>,
}

impl<T> Watched<T> {
    fn new(transport: T) -> (Self, tokio::sync::watch::Receiver<()>) {
        let (ended, receiver) = tokio::sync::watch::channel(());
        let watched = Self {
            transport,
            _ended: ended,
        };
        (watched, receiver)
    }
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for Watched<T> {
    type Error = T::Error;

    fn name() -> std::borrow::Cow<'static, str> {
        T::name()
    }

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.transport.send(item)
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        self.transport.receive()
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.transport.close()
    }
}

/// The value of type `T` in `extensions`, made by `init` if there is none.
fn find_or_insert<T: std::any::Any + Send + Sync>(
    extensions: &Mutex<Vec<Arc<dyn std::any::Any + Send + Sync>>>,
    init: impl FnOnce() -> T,
) -> Arc<T> {
    let mut extensions = match extensions.lock() {
        Ok(extensions) => extensions,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(found) = extensions
        .iter()
        .find_map(|e| e.clone().downcast::<T>().ok())
    {
        return found;
    }
    let made = Arc::new(init());
    extensions.push(made.clone());
    made
}
