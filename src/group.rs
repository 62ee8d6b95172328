//! The function group: one server's tools, exposed per session.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use mcp_group_core::{DynTransport, JsonObject, SessionId, SessionKey, ToolOutput, Transport};
use mcp_group_overrides::{ExposedTool, Overrides, ToolMap, UnusableTool};
use mcp_group_registry::{Lease, Registry, RegistryConfig, RegistryStats};
use serde_json::Value;
use tokio::{sync::broadcast, task::JoinHandle};

use crate::{
    Error, McpClientConfig, ServerConfig,
    arguments::{ArgumentChecker, PATTERN_LIST_BUDGET, PatternBudget},
    backoff::Backoff,
    listing::{Listing, MIN_REFRESH_INTERVAL, SessionList},
};

/// How many tool-list problems (per name) are remembered as already warned.
const MAX_WARNED_NAMES: usize = 1024;

/// How long [`FunctionGroup::shutdown`] waits for calls in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The tools as exposed now, with their argument checkers.
struct Catalog {
    tools: ToolMap,
    checkers: HashMap<String, ArgumentChecker>,
    unknown_overrides: Vec<String>,
    unusable: Vec<UnusableTool>,
    /// Server names of the tools whose schemas map a parameter to an HTTP
    /// header (`x-mcp-header`).
    header_mapped: std::collections::HashSet<String>,
}

impl Catalog {
    fn maps_headers(&self, original: &str) -> bool {
        self.header_mapped.contains(original)
    }
}

/// Whether `schema` has an `x-mcp-header` annotation anywhere in it.
fn has_header_annotation(schema: &serde_json::Map<String, Value>) -> bool {
    let mut pending: Vec<&serde_json::Map<String, Value>> = vec![schema];
    while let Some(object) = pending.pop() {
        if object.contains_key("x-mcp-header") {
            return true;
        }
        for value in object.values() {
            match value {
                Value::Object(inner) => pending.push(inner),
                Value::Array(items) => pending.extend(items.iter().filter_map(Value::as_object)),
                _ => {}
            }
        }
    }
    false
}

/// A snapshot of the exposed functions. The group swaps in a new one when the
/// server's tool list changes; a snapshot never changes.
#[derive(Clone)]
pub struct Functions(Arc<Catalog>);

impl std::fmt::Debug for Functions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(ExposedTool::name))
            .finish()
    }
}

impl Functions {
    /// Every exposed function, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &ExposedTool> {
        self.0.tools.iter()
    }

    /// The function exposed as `name`.
    pub fn get(&self, name: &str) -> Option<&ExposedTool> {
        self.0.tools.get(name)
    }

    /// The number of exposed functions.
    pub fn len(&self) -> usize {
        self.0.tools.len()
    }

    /// Whether no function is exposed.
    pub fn is_empty(&self) -> bool {
        self.0.tools.is_empty()
    }

    /// Whether the function's arguments are checked against its input schema
    /// (false when the server's schema does not compile or would cost too
    /// much to check: `$ref` fan-out, references other than local JSON
    /// pointers, patterns the regex engine refuses or over the size limits).
    pub fn validates_arguments(&self, name: &str) -> bool {
        self.0
            .checkers
            .get(name)
            .is_some_and(ArgumentChecker::validates)
    }

    /// Override keys that named no tool of the server (ignored; listed so a typo is visible).
    pub fn unknown_overrides(&self) -> &[String] {
        &self.0.unknown_overrides
    }

    /// Server tools left out because their exposed name cannot be used.
    pub fn unusable(&self) -> &[UnusableTool] {
        &self.0.unusable
    }
}

impl<'a> IntoIterator for &'a Functions {
    type Item = &'a ExposedTool;
    type IntoIter = Box<dyn Iterator<Item = &'a ExposedTool> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl IntoIterator for Functions {
    type Item = ExposedTool;
    type IntoIter = std::vec::IntoIter<ExposedTool>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter().cloned().collect::<Vec<_>>().into_iter()
    }
}

/// One function of a group: its description and schemas, and `call`.
#[derive(Debug)]
pub struct Function<'g> {
    group: &'g FunctionGroup,
    tool: ExposedTool,
}

impl Function<'_> {
    /// Exposed name, description, server name, input and output schemas.
    pub fn tool(&self) -> &ExposedTool {
        &self.tool
    }

    /// The JSON Schema of the arguments, as the server sent it.
    pub fn input_schema(&self) -> &JsonObject {
        &self.tool.descriptor().input_schema
    }

    /// The JSON Schema of the structured result, if the server gave one.
    pub fn output_schema(&self) -> Option<&JsonObject> {
        self.tool.descriptor().output_schema.as_deref()
    }

    /// Calls it in `session` (`None`: the default session); see [`FunctionGroup::call`].
    pub async fn call(
        &self,
        session: Option<&SessionId>,
        arguments: Value,
    ) -> Result<ToolOutput, Error> {
        self.group.call(session, self.tool.name(), arguments).await
    }
}

/// Sent to [`FunctionGroup::subscribe`]rs after the function list was refreshed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ToolsChanged {
    /// The new functions.
    pub functions: Functions,
}

struct Shared {
    registry: Registry<DynTransport>,
    /// The group's list, listed by the base session: every session's when
    /// the server said it is public, the base session's own when private.
    listing: RwLock<Arc<Listing<Catalog>>>,
    /// Held while the group's list is re-listed.
    refresh_gate: tokio::sync::Mutex<()>,
    overrides: Overrides,
    config: McpClientConfig,
    warned: Mutex<HashSet<String>>,
    changes: broadcast::Sender<ToolsChanged>,
}

impl Shared {
    fn catalog(&self) -> Arc<Catalog> {
        self.listing().catalog.clone()
    }

    fn listing(&self) -> Arc<Listing<Catalog>> {
        match self.listing.read() {
            Ok(listing) => listing.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_listing(&self, listing: Arc<Listing<Catalog>>) {
        match self.listing.write() {
            Ok(mut slot) => *slot = listing,
            Err(poisoned) => *poisoned.into_inner() = listing,
        }
    }

    /// Applies the overrides to a fresh tool list and compiles the schemas.
    fn build_catalog(
        &self,
        descriptors: Vec<mcp_group_core::ToolDescriptor>,
    ) -> Result<Catalog, Error> {
        let applied = self.overrides.apply(descriptors)?;
        if let Ok(mut warned) = self.warned.lock() {
            // Each problem is warned once per name; a server can send any
            // number of names, so the memory of what was warned is bounded.
            let mut first_time =
                |key: String| warned.len() < MAX_WARNED_NAMES && warned.insert(key);
            for name in &applied.unknown {
                if first_time(format!("unknown:{name}")) {
                    tracing::warn!(tool = ?name, "a tool override names a tool the server does not have; it is ignored");
                }
            }
            for unusable in &applied.unusable {
                if first_time(format!("unusable:{}", unusable.original_name)) {
                    tracing::warn!(tool = ?unusable.original_name, exposed = ?unusable.exposed_name, reason = %unusable.reason, "tool left out: its name cannot be used (alias it in tool_overrides)");
                }
            }
            for name in &applied.duplicates {
                if first_time(format!("duplicate:{name}")) {
                    tracing::warn!(tool = ?name, "the server lists this tool name more than once; the first is kept");
                }
            }
        }
        let mut patterns = PatternBudget::new(PATTERN_LIST_BUDGET);
        let checkers = applied
            .tools
            .iter()
            .map(|t| {
                (
                    t.name().to_owned(),
                    ArgumentChecker::new(
                        t.name(),
                        t.descriptor().input_schema.clone(),
                        &mut patterns,
                    ),
                )
            })
            .collect();
        let header_mapped = applied
            .tools
            .iter()
            .filter(|t| has_header_annotation(&t.descriptor().input_schema))
            .map(|t| t.original_name().to_owned())
            .collect();
        Ok(Catalog {
            tools: applied.tools,
            checkers,
            unknown_overrides: applied.unknown,
            unusable: applied.unusable,
            header_mapped,
        })
    }

    /// Lists the tools on `lease` (overrides applied) as a listing that
    /// keeps what the server said about caching them.
    async fn list(&self, lease: &Lease<DynTransport>) -> Result<Listing<Catalog>, Error> {
        let changes = lease.tools_changed_count();
        let list = lease
            .list_tools_with_hint(self.config.tool_call_timeout)
            .await?;
        let catalog = Arc::new(self.build_catalog(list.tools)?);
        Ok(Listing::new(catalog, &list.cache, changes))
    }

    /// Re-lists the group's list on the base session's `lease`.
    async fn refresh(&self, lease: &Lease<DynTransport>) -> Result<(), Error> {
        let _gate = self.refresh_gate.lock().await;
        self.relist(lease).await.map(drop)
    }

    async fn relist(&self, lease: &Lease<DynTransport>) -> Result<Arc<Listing<Catalog>>, Error> {
        let listing = Arc::new(self.list(lease).await?);
        self.set_listing(listing.clone());
        tracing::info!(
            functions = listing.catalog.tools.len(),
            private = listing.private,
            "function list refreshed"
        );
        let _ = self.changes.send(ToolsChanged {
            functions: Functions(listing.catalog.clone()),
        });
        Ok(listing)
    }

    /// The group's list, re-listed first on the base session if it expired.
    /// Concurrent callers wait for one re-listing. If it fails, the old list
    /// is kept (and served) for another [`crate::listing::MIN_LIST_TTL`].
    async fn fresh_listing(&self) -> Arc<Listing<Catalog>> {
        let listing = self.listing();
        if tokio::time::Instant::now() < listing.expires_at {
            return listing;
        }
        // One caller re-lists; the others go ahead on the list they have
        // rather than wait for a server that may be slow to answer.
        let Ok(_gate) = self.refresh_gate.try_lock() else {
            return listing;
        };
        let listing = self.listing();
        if tokio::time::Instant::now() < listing.expires_at {
            return listing;
        }
        let relisted = match self.registry.acquire(&SessionKey::default_session()).await {
            Ok(lease) => {
                let relisted = self.relist(&lease).await;
                if let Err(error) = &relisted
                    && error.is_connection_lost()
                {
                    lease.invalidate();
                }
                relisted
            }
            Err(error) => Err(error.into()),
        };
        relisted.unwrap_or_else(|error| {
            tracing::warn!(%error, "the function list expired and re-listing failed; keeping the old one");
            let kept = Arc::new(listing.retry_later());
            self.set_listing(kept.clone());
            kept
        })
    }

    /// The session's own list (the server said the group's list is
    /// private), kept with the session's connection: listed on first use,
    /// again once it expires or the server announces a change (in the
    /// 2026-07-28 era the session then follows changes on a subscription of
    /// its own). Concurrent calls of the session wait for one listing.
    async fn session_catalog(&self, lease: &Lease<DynTransport>) -> Result<Arc<Catalog>, Error> {
        let slot = lease
            .connection()
            .extension(SessionList::<Catalog>::default);
        let fresh = |slot: &SessionList<Catalog>| {
            slot.current().filter(|listing| {
                listing.is_fresh(tokio::time::Instant::now(), lease.tools_changed_count())
            })
        };
        if let Some(listing) = fresh(&slot) {
            return Ok(listing.catalog.clone());
        }
        let _gate = slot.gate.lock().await;
        if let Some(listing) = fresh(&slot) {
            return Ok(listing.catalog.clone());
        }
        lease
            .subscribe_tool_changes(self.config.tool_call_timeout)
            .await;
        match self.list(lease).await {
            Ok(listing) => {
                let listing = Arc::new(listing);
                slot.set(listing.clone());
                tracing::debug!(session = %lease.key(), functions = listing.catalog.tools.len(), "session's own function list refreshed");
                Ok(listing.catalog.clone())
            }
            Err(error) => match slot.current() {
                Some(old) if !error.is_connection_lost() => {
                    tracing::warn!(%error, session = %lease.key(), "re-listing the session's functions failed; keeping the old list");
                    slot.set(Arc::new(old.retry_later()));
                    Ok(old.catalog.clone())
                }
                _ => Err(error),
            },
        }
    }
}

/// One MCP server's tools, exposed as functions that run in a session.
///
/// Each session id gets its own MCP connection (its own server process, for
/// stdio), opened on its first call and shared by its concurrent calls. Calls
/// without a session id share the default session: the group's base client,
/// which listed the tools, follows the server's tool-list changes, and
/// stays open for the group's lifetime. If its server dies, the group
/// reconnects it and lists the tools again ([`FunctionGroup::subscribe`]rs
/// hear of it), without waiting for a call to fail.
///
/// # Cached tool lists
///
/// A call resolves the exposed name and checks its arguments against a tool
/// list kept as the server's cache hint says (SEP-2549, `ttlMs` and
/// `cacheScope` on `tools/list`):
///
/// | the server says | whose list | listed by |
/// |---|---|---|
/// | `public`, or nothing (the schema's default, and every 2025-11-25 server) | every session's, whatever its principal | the base session, once for the group |
/// | `private` | the session's own (so its principal's) | each session, on its first call |
///
/// A list is kept for its `ttlMs`, bounded to [`MIN_LIST_TTL`]..=[`MAX_LIST_TTL`]
/// (so a `ttlMs: 0` costs at most one `tools/list` per
/// [`MIN_LIST_TTL`] per list, not one per call; no `ttlMs` keeps it for the
/// maximum), then re-listed by the next call that needs it (its concurrent
/// calls wait for the one listing; if it fails the old list is served for
/// another [`MIN_LIST_TTL`]). A change the server announces re-lists it
/// too, at most once a second: in the 2025-11-25 era as
/// `notifications/tools/list_changed` on the connection that listed it; in
/// the 2026-07-28 era on a `subscriptions/listen` — one for the group, on
/// the base session, and one more per session only while the list is
/// private. The overrides are applied to every listing. A session's own list
/// lives with its connection: it counts toward the session and goes when
/// the session is reaped or evicted (at most `max_sessions` lists, each
/// within the connection's caps on `tools/list`).
/// [`FunctionGroup::functions`] is the group's list;
/// [`FunctionGroup::functions_as`] the one a session's calls use.
///
/// [`MIN_LIST_TTL`]: crate::MIN_LIST_TTL
/// [`MAX_LIST_TTL`]: crate::MAX_LIST_TTL
pub struct FunctionGroup {
    shared: Arc<Shared>,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for FunctionGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionGroup")
            .field("server", &self.shared.registry.transport().description())
            .field("functions", &self.functions())
            .field("registry", &self.shared.registry)
            .finish()
    }
}

impl Drop for FunctionGroup {
    fn drop(&mut self) {
        if let Some(watcher) = self.watcher.lock().ok().and_then(|mut w| w.take()) {
            watcher.abort();
        }
    }
}

impl FunctionGroup {
    /// Validates `config`, connects the default session, lists the server's
    /// tools (every page) and applies the overrides and filters.
    pub async fn connect(config: McpClientConfig) -> Result<Self, Error> {
        let options = config.client_options()?;
        Self::connect_with(config, options).await
    }

    /// Like [`FunctionGroup::connect`], with client options: typically
    /// `config.client_options()` plus an elicitation handler, so that
    /// servers asking for user input get an answer (every session's
    /// connection uses them; the handler is told the session and principal
    /// each question comes from).
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use mcp_group::{FunctionGroup, McpClientConfig, ServerConfig, core::AcceptDefaults};
    ///
    /// # async fn run() -> Result<(), mcp_group::Error> {
    /// let config = McpClientConfig::new(ServerConfig::stdio("my-server", ["--stdio"]));
    /// let options = config.client_options()?.with_elicitation(Arc::new(AcceptDefaults));
    /// let group = FunctionGroup::connect_with(config, options).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with(
        config: McpClientConfig,
        options: mcp_group_core::ClientOptions,
    ) -> Result<Self, Error> {
        config.validate()?;
        let transport = build_transport_with(&config, options)?;
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
        let registry_config = RegistryConfig::new(config.max_sessions, config.session_idle_timeout)
            .with_connect_timeout(config.tool_call_timeout)
            .with_full_policy(config.session_limit_policy)
            .with_limit_wait(config.session_limit_wait);
        let registry = Registry::new(transport, registry_config);
        let base = registry.acquire(&SessionKey::default_session()).await?;
        // In the 2026-07-28 era, the group's one subscription to tool-list
        // changes, opened before the first listing so no change is missed.
        base.subscribe_tool_changes(config.tool_call_timeout).await;
        let empty = Arc::new(Catalog {
            tools: ToolMap::default(),
            checkers: HashMap::new(),
            unknown_overrides: Vec::new(),
            unusable: Vec::new(),
            header_mapped: Default::default(),
        });
        let shared = Shared {
            registry,
            listing: RwLock::new(Arc::new(Listing::new(
                empty,
                &mcp_group_core::CacheHint::default(),
                0,
            ))),
            refresh_gate: tokio::sync::Mutex::new(()),
            overrides: config.overrides(),
            config,
            warned: Mutex::new(HashSet::new()),
            changes: broadcast::channel(16).0,
        };
        shared.set_listing(Arc::new(shared.list(&base).await?));
        let shared = Arc::new(shared);
        let watcher = tokio::spawn(watch_tool_list(Arc::downgrade(&shared), base));
        Ok(Self {
            shared,
            watcher: Mutex::new(Some(watcher)),
        })
    }

    /// The exposed functions now (a snapshot; see [`FunctionGroup::subscribe`]):
    /// the group's list, listed by its default session.
    ///
    /// When the server marks its list `private` (2026-07-28), this is the
    /// default session's own list — what the server shows the group's own
    /// identity, not any end user. Build an end user's tool list with
    /// [`FunctionGroup::functions_as`] for their session and principal.
    pub fn functions(&self) -> Functions {
        Functions(self.shared.catalog())
    }

    /// The function exposed as `name`, now.
    pub fn function(&self, name: &str) -> Option<ExposedTool> {
        self.shared.catalog().tools.get(name).cloned()
    }

    /// A callable handle on the function exposed as `name`.
    ///
    /// ```no_run
    /// # async fn run(group: mcp_group::FunctionGroup) -> Result<(), mcp_group::Error> {
    /// let echo = group.get("echo").expect("the server has echo");
    /// println!("{}: {:?}", echo.tool().name(), echo.tool().description());
    /// let output = echo.call(None, serde_json::json!({"message": "hi"})).await?;
    /// # Ok(()) }
    /// ```
    pub fn get(&self, name: &str) -> Option<Function<'_>> {
        let tool = self.function(name)?;
        Some(Function { group: self, tool })
    }

    /// Override keys that named no tool of the server (ignored; listed so a typo is visible).
    pub fn unknown_overrides(&self) -> Vec<String> {
        self.shared.catalog().unknown_overrides.clone()
    }

    /// Notifications of refreshes of the group's function list (after the
    /// server announced a change, after the list expired, or after the
    /// default session's connection was replaced). Sessions' own lists
    /// (private ones) are not announced.
    pub fn subscribe(&self) -> broadcast::Receiver<ToolsChanged> {
        self.shared.changes.subscribe()
    }

    /// The protocol era negotiated with the server (`legacy`: 2025-11-25
    /// and earlier, a protocol session per end-user session; `modern`:
    /// 2026-07-28, no protocol session), once a connection has found out.
    pub fn era(&self) -> Option<mcp_group_core::Era> {
        self.shared.registry.transport().era()
    }

    /// What the group's transport connects to.
    pub fn server(&self) -> mcp_group_core::ServerDescription {
        self.shared.registry.transport().description()
    }

    /// The configuration the group was built from.
    pub fn config(&self) -> &McpClientConfig {
        &self.shared.config
    }

    /// Calls the function exposed as `tool` in `session` (`None`, or any
    /// session when `session_aware_tools` is off: the shared default session)
    /// with `arguments` (a JSON object, or `null` for none). No
    /// [`SessionId`] made from a string is the default session; ids from
    /// input are checked by [`SessionId::try_new`] ([`Error::InvalidSessionId`]).
    ///
    /// The arguments are checked against the tool's input schema first; a
    /// mismatch is [`Error::InvalidArguments`] naming the field, and
    /// nothing is sent. `null`s the schema forbids are dropped. A result the
    /// server flags with `isError` is [`Error::ToolError`]. A call that
    /// may have reached the server is never re-sent: if the connection broke,
    /// the error says so and the session's next call opens a new connection.
    ///
    /// # Cancel safety
    /// Dropping the future cancels the call (`notifications/cancelled` is
    /// sent) and releases the session lease.
    pub async fn call(
        &self,
        session: Option<&SessionId>,
        tool: &str,
        arguments: Value,
    ) -> Result<ToolOutput, Error> {
        self.call_as(session, None, tool, arguments).await
    }

    /// Like [`FunctionGroup::call`], on behalf of `principal` (the end user
    /// as your application authenticated them). Sessions are keyed by
    /// principal and id ([`SessionKey`]): the same id under another
    /// principal — or under none — is another session with its own
    /// connection, so a shared or guessed session id never reaches another
    /// user's client, and nothing tells whether it exists there. Without a
    /// session id the call runs in the principal's own default session
    /// (`principal` `None`: the group's shared base session); with
    /// `session_aware_tools` off every call shares the base session.
    #[tracing::instrument(level = "debug", skip(self, principal, arguments), fields(session))]
    pub async fn call_as(
        &self,
        session: Option<&SessionId>,
        principal: Option<&str>,
        tool: &str,
        arguments: Value,
    ) -> Result<ToolOutput, Error> {
        let key = self.key_for(session, principal);
        tracing::Span::current().record("session", tracing::field::display(&key));
        let (catalog, lease) = self.catalog_for(&key).await?;
        let (original, arguments) = prepare(&catalog, tool, arguments)?;
        let lease = match lease {
            Some(lease) => lease,
            None => self.shared.registry.acquire(&key).await?,
        };
        self.prime_parameter_headers(&catalog, &original, &lease)
            .await;
        let result = lease
            .call_tool(&original, arguments, self.shared.config.tool_call_timeout)
            .await;
        match result {
            Ok(output) if output.is_error() => Err(Error::ToolError {
                tool: tool.to_owned(),
                message: output.to_text(),
            }),
            Ok(output) => Ok(output),
            Err(error) => {
                if error.is_connection_lost() {
                    lease.invalidate();
                }
                Err(error.into())
            }
        }
    }

    /// Makes sure a modern session's connection has listed the tools
    /// before it calls one whose schema maps parameters to HTTP headers
    /// (`x-mcp-header`, SEP-2243): rmcp adds the `Mcp-Param-*` headers only
    /// for tools listed on the same connection, and a session using the
    /// group's public list has not listed them itself. Once per rmcp client;
    /// a failed listing leaves the call to go without the headers.
    async fn prime_parameter_headers(
        &self,
        catalog: &Catalog,
        tool: &str,
        lease: &Lease<DynTransport>,
    ) {
        // rmcp keeps the schemas per client, which the sessions of a
        // modern server share.
        let primed = lease.connection().client_extension(HeaderListing::default);
        if primed.0.load(std::sync::atomic::Ordering::Acquire)
            || lease.connection().era() != Some(mcp_group_core::Era::Modern)
            || !catalog.maps_headers(tool)
        {
            return;
        }
        match lease
            .connection()
            .list_tools(self.shared.config.tool_call_timeout)
            .await
        {
            Ok(_) => primed.0.store(true, std::sync::atomic::Ordering::Release),
            Err(error) => {
                tracing::debug!(%error, session = %lease.key(), "listing tools for their parameter headers failed");
            }
        }
    }

    /// The session a call runs in: `session` (or the default session when
    /// none is given) of `principal`; the shared base session when
    /// `session_aware_tools` is off.
    fn key_for(&self, session: Option<&SessionId>, principal: Option<&str>) -> SessionKey {
        if !self.shared.config.session_aware_tools {
            return SessionKey::default_session();
        }
        let session = session.cloned().unwrap_or_default();
        SessionKey::with_principal(principal, session)
    }

    /// The functions a call in `key`'s session resolves names and checks
    /// arguments against: the group's list, re-listed first if it expired,
    /// when the server said it is public (or said nothing) and for the base
    /// session; otherwise the session's own list, with the session's lease
    /// (leased to list it).
    async fn catalog_for(
        &self,
        key: &SessionKey,
    ) -> Result<(Arc<Catalog>, Option<Lease<DynTransport>>), Error> {
        let listing = self.shared.fresh_listing().await;
        if !listing.private || *key == SessionKey::default_session() {
            return Ok((listing.catalog.clone(), None));
        }
        let lease = self.shared.registry.acquire(key).await?;
        match self.shared.session_catalog(&lease).await {
            Ok(catalog) => Ok((catalog, Some(lease))),
            Err(error) => {
                if error.is_connection_lost() {
                    lease.invalidate();
                }
                Err(error)
            }
        }
    }

    /// The functions a call in `session` of `principal` would see now
    /// (chosen as [`FunctionGroup::call_as`] chooses the session): the
    /// group's list when the server said it is public or said nothing, the
    /// session's own list when it said `private` (listed first if the
    /// session has none yet, which opens the session).
    pub async fn functions_as(
        &self,
        session: Option<&SessionId>,
        principal: Option<&str>,
    ) -> Result<Functions, Error> {
        let key = self.key_for(session, principal);
        let (catalog, _lease) = self.catalog_for(&key).await?;
        Ok(Functions(catalog))
    }

    /// Leases `session`'s connection (without a principal; opening it if
    /// needed) for direct use.
    pub async fn lease(&self, session: &SessionId) -> Result<Lease<DynTransport>, Error> {
        self.lease_as(session, None).await
    }

    /// Like [`FunctionGroup::lease`], the session of `principal` (see
    /// [`FunctionGroup::call_as`]).
    pub async fn lease_as(
        &self,
        session: &SessionId,
        principal: Option<&str>,
    ) -> Result<Lease<DynTransport>, Error> {
        let key = SessionKey::with_principal(principal, session.clone());
        Ok(self.shared.registry.acquire(&key).await?)
    }

    /// Pings the server in `session` (without a principal) and returns the
    /// round-trip time.
    pub async fn ping(&self, session: Option<&SessionId>) -> Result<Duration, Error> {
        self.ping_as(session, None).await
    }

    /// Like [`FunctionGroup::ping`], in the session of `principal` (the
    /// session chosen as [`FunctionGroup::call_as`] chooses it).
    pub async fn ping_as(
        &self,
        session: Option<&SessionId>,
        principal: Option<&str>,
    ) -> Result<Duration, Error> {
        let key = self.key_for(session, principal);
        let lease = self.shared.registry.acquire(&key).await?;
        let started = tokio::time::Instant::now();
        match lease.ping(self.shared.config.tool_call_timeout).await {
            Ok(()) => Ok(started.elapsed()),
            Err(error) => {
                if error.is_connection_lost() {
                    lease.invalidate();
                }
                Err(error.into())
            }
        }
    }

    /// Closes sessions unused for `max_age` (`None`: `session_idle_timeout`)
    /// and returns how many were closed. Sessions with calls in flight, and
    /// the default session, are kept.
    pub async fn cleanup_sessions(&self, max_age: Option<Duration>) -> usize {
        self.shared.registry.cleanup_sessions(max_age).await
    }

    /// What the registry knows of `session` (leases held, idle time,
    /// connection), read without refreshing its idle time.
    pub fn peek_session(&self, session: &SessionId) -> Option<mcp_group_registry::SessionInfo> {
        self.peek_session_as(session, None)
    }

    /// Like [`FunctionGroup::peek_session`], the session of `principal`.
    pub fn peek_session_as(
        &self,
        session: &SessionId,
        principal: Option<&str>,
    ) -> Option<mcp_group_registry::SessionInfo> {
        let key = SessionKey::with_principal(principal, session.clone());
        self.shared.registry.peek(&key)
    }

    /// The number of open sessions (the default session included).
    pub fn session_count(&self) -> usize {
        self.shared.registry.session_count()
    }

    /// The session registry's counters.
    pub fn stats(&self) -> RegistryStats {
        self.shared.registry.stats()
    }

    /// Refuses new calls, waits briefly for calls in flight, and closes every
    /// session's connection (for stdio: every server process is reaped).
    pub async fn shutdown(&self) {
        if let Some(watcher) = self.watcher.lock().ok().and_then(|mut w| w.take()) {
            watcher.abort();
            // The watcher holds the default session's lease: let it go first.
            let _ = watcher.await;
        }
        self.shared.registry.shutdown(SHUTDOWN_GRACE).await;
    }
}

/// A base connection that lived this long resets the reconnect backoff; one
/// that died sooner makes the next replacement wait longer.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);

/// Keeps the default session's lease (the base client) and refreshes the
/// function list whenever its server announces a tool-list change, at most
/// once per [`MIN_REFRESH_INTERVAL`]. When the base connection ends (the
/// server died or closed it), it is replaced — after a backoff that grows
/// while replacements keep dying — and the tools are listed again: the dead
/// session holds no slot and the list stays current. Holds only a `Weak` to
/// the group.
async fn watch_tool_list(shared: std::sync::Weak<Shared>, mut lease: Lease<DynTransport>) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
    let mut connected_at = tokio::time::Instant::now();
    loop {
        follow_changes(&shared, &lease).await;
        if shared.strong_count() == 0 {
            return;
        }
        // The base connection is gone: replace it.
        lease.invalidate();
        if connected_at.elapsed() >= STABLE_CONNECTION {
            backoff.reset();
        }
        lease = loop {
            let delay = backoff.next_delay();
            tokio::time::sleep(delay).await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            match shared
                .registry
                .acquire(&SessionKey::default_session())
                .await
            {
                Ok(new) => {
                    new.subscribe_tool_changes(shared.config.tool_call_timeout)
                        .await;
                    if let Err(error) = shared.refresh(&new).await {
                        tracing::warn!(%error, "refreshing the function list failed; keeping the old one");
                    }
                    break new;
                }
                Err(mcp_group_registry::Error::Shutdown) => return,
                Err(error) => {
                    tracing::warn!(%error, ?delay, "the default session cannot reconnect; retrying");
                }
            }
        };
        connected_at = tokio::time::Instant::now();
    }
}

/// Re-lists on the base connection's change notifications until it ends
/// (or the group is gone).
async fn follow_changes(shared: &std::sync::Weak<Shared>, lease: &Lease<DynTransport>) {
    // One receiver for the connection's life: a notification that arrives
    // during a re-listing is seen by the next round, not lost.
    let mut changes = lease.tools_changed();
    let mut last_refresh: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = lease.closed() => return,
        }
        if let Some(last) = last_refresh {
            tokio::select! {
                () = tokio::time::sleep_until(last + MIN_REFRESH_INTERVAL) => {}
                () = lease.closed() => return,
            }
        }
        // Everything announced until now is covered by the listing below.
        changes.borrow_and_update();
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Err(error) = shared.refresh(lease).await {
            tracing::warn!(%error, "refreshing the function list failed; keeping the old one");
        }
        last_refresh = Some(tokio::time::Instant::now());
    }
}

/// Resolves the exposed name and checks the arguments against `catalog`:
/// everything a call does before it is sent.
fn prepare(catalog: &Catalog, tool: &str, arguments: Value) -> Result<(String, JsonObject), Error> {
    let function = catalog.tools.get(tool).ok_or_else(|| Error::ToolNotFound {
        name: tool.to_owned(),
    })?;
    let arguments = match arguments {
        Value::Object(map) => map,
        Value::Null => JsonObject::new(),
        other => {
            return Err(Error::InvalidArguments {
                tool: tool.to_owned(),
                field: None,
                reason: format!("arguments must be a JSON object, not {}", json_kind(&other)),
            });
        }
    };
    let arguments = match catalog.checkers.get(tool) {
        Some(checker) => checker.prepare(tool, arguments)?,
        None => arguments,
    };
    Ok((function.original_name().to_owned(), arguments))
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
pub fn build_transport(config: &McpClientConfig) -> Result<DynTransport, Error> {
    build_transport_with(config, config.client_options()?)
}

/// Like [`build_transport`], with the client's options.
pub fn build_transport_with(
    config: &McpClientConfig,
    options: mcp_group_core::ClientOptions,
) -> Result<DynTransport, Error> {
    build(config, options, None)
}

/// Like [`build_transport_with`], keeping end users' tokens
/// (`[server.auth]`) in `store` instead of memory.
#[cfg(feature = "http")]
pub fn build_transport_with_token_store(
    config: &McpClientConfig,
    options: mcp_group_core::ClientOptions,
    store: Arc<dyn mcp_group_transport_http::TokenStore>,
) -> Result<DynTransport, Error> {
    build(config, options, Some(store))
}

#[cfg(feature = "http")]
type TokenStoreArg = Option<Arc<dyn mcp_group_transport_http::TokenStore>>;
#[cfg(not(feature = "http"))]
type TokenStoreArg = Option<std::convert::Infallible>;

#[cfg_attr(
    not(all(feature = "stdio", feature = "http", feature = "sse")),
    allow(unused_variables)
)]
fn build(
    config: &McpClientConfig,
    options: mcp_group_core::ClientOptions,
    store: TokenStoreArg,
) -> Result<DynTransport, Error> {
    match &config.server {
        ServerConfig::Stdio(server) => {
            #[cfg(feature = "stdio")]
            {
                use mcp_group_transport_stdio::{StdioConfig, StdioTransport};
                let mut stdio = StdioConfig::new(server.command.clone()).args(server.args.clone());
                stdio.env = server.env.clone();
                stdio.cwd = server.cwd.clone();
                stdio.inherit_env = server.inherit_env;
                Ok(Arc::new(
                    StdioTransport::new(stdio).with_client_options(options),
                ))
            }
            #[cfg(not(feature = "stdio"))]
            Err(Error::TransportDisabled {
                transport: "stdio",
                feature: "stdio",
            })
        }
        ServerConfig::StreamableHttp(server) => {
            #[cfg(feature = "http")]
            {
                let start = start_error(&server.url);
                let http = http_config(
                    config,
                    &server.url,
                    &server.custom_headers,
                    server.allow_insecure_http,
                )?;
                let mut options = options;
                if let (Some(_), Some(auth)) = (&server.auth, options.authorizer().cloned()) {
                    let mode = match server.auth.as_ref().map(|a| a.mode) {
                        Some(crate::AuthMode::Fail) => mcp_group_core::AuthorizationMode::Fail,
                        _ => mcp_group_core::AuthorizationMode::Wait {
                            timeout: config.auth_flow_timeout,
                        },
                    };
                    options = options.with_authorizer(auth, mode);
                }
                let mut transport = mcp_group_transport_http::StreamableHttpTransport::new(http)
                    .map_err(start)?
                    .with_client_options(options);
                if let Some(credentials) = &server.oauth_client_credentials {
                    transport = transport.with_client_credentials(credentials.clone());
                }
                if let Some(store) = store {
                    transport = transport.with_token_store(store);
                }
                if let Some(auth) = &server.auth {
                    transport = transport.with_user_authorization(auth.user_authorization());
                }
                Ok(Arc::new(transport))
            }
            #[cfg(not(feature = "http"))]
            Err(Error::TransportDisabled {
                transport: "streamable-http",
                feature: "http",
            })
        }
        ServerConfig::Sse(server) => {
            #[cfg(feature = "sse")]
            {
                let start = start_error(&server.url);
                let http = http_config(
                    config,
                    &server.url,
                    &server.custom_headers,
                    server.allow_insecure_http,
                )?;
                Ok(Arc::new(
                    mcp_group_transport_sse::SseTransport::new(http)
                        .map_err(start)?
                        .with_client_options(options),
                ))
            }
            #[cfg(not(feature = "sse"))]
            Err(Error::TransportDisabled {
                transport: "sse",
                feature: "sse",
            })
        }
    }
}

/// An HTTP transport that cannot be built is a server that cannot be started.
#[cfg(any(feature = "http", feature = "sse"))]
fn start_error(url: &str) -> impl Fn(mcp_group_transport_http::Error) -> Error + '_ {
    move |source| {
        Error::Mcp(mcp_group_core::Error::Start {
            endpoint: mcp_group_core::redact_url(url),
            source: Box::new(source),
        })
    }
}

/// The transport's configuration; its read timeout is never shorter than a
/// call may take, since a server may send nothing until it answers.
#[cfg(any(feature = "http", feature = "sse"))]
fn http_config(
    config: &McpClientConfig,
    url: &str,
    headers: &std::collections::BTreeMap<String, String>,
    allow_insecure_http: bool,
) -> Result<mcp_group_transport_http::HttpConfig, Error> {
    let mut http = mcp_group_transport_http::HttpConfig::new(url).map_err(start_error(url))?;
    http.custom_headers = headers.clone();
    http.allow_insecure_http = allow_insecure_http;
    http.read_timeout = http.read_timeout.max(config.tool_call_timeout);
    Ok(http)
}

/// Whether a connection has listed the tools itself (see
/// `FunctionGroup::prime_parameter_headers`).
#[derive(Default)]
struct HeaderListing(std::sync::atomic::AtomicBool);
