//! A server whose tool list a test controls: its tools, the cache hint it
//! answers `tools/list` with (`ttlMs`, `cacheScope`), a count of the
//! listings, and change announcements on every open `subscriptions/listen`
//! (2026-07-28) and to every connected legacy peer
//! (`notifications/tools/list_changed`).

use std::sync::{
    Arc, Mutex, MutexGuard, PoisonError,
    atomic::{AtomicUsize, Ordering},
};

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock,
        ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
        SubscriptionFilter, Tool,
    },
    service::{Peer, RequestContext, SubscriptionContext, SubscriptionSink},
};

#[derive(Debug, Default)]
struct State {
    tools: Mutex<Vec<String>>,
    hint: Mutex<(Option<u64>, Option<CacheScope>)>,
    lists: AtomicUsize,
    listens: AtomicUsize,
    /// `tools/list` requests never answered from now on.
    hang_lists: std::sync::atomic::AtomicBool,
    sinks: Mutex<Vec<SubscriptionSink>>,
    peers: Mutex<Vec<Peer<RoleServer>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A server of tools by name (each takes any object and answers with its
/// own name), whose list, cache hint and change announcements the test
/// drives. Clones share one state: a transport that serves clones on every
/// connect stands for one server reached by many clients.
#[derive(Debug, Clone, Default)]
pub struct ListServer {
    state: Arc<State>,
}

impl ListServer {
    /// A server listing `tools`, with no cache hint of its own (a
    /// 2026-07-28 peer then gets rmcp's default, `ttlMs: 0`, `private`).
    pub fn new(tools: &[&str]) -> Self {
        let server = Self::default();
        server.set_tools(tools);
        server
    }

    /// Answers `tools/list` with `ttl_ms` and `scope`.
    pub fn with_hint(self, ttl_ms: Option<u64>, scope: Option<CacheScope>) -> Self {
        *lock(&self.state.hint) = (ttl_ms, scope);
        self
    }

    /// Lists `tools` from now on (without announcing it).
    pub fn set_tools(&self, tools: &[&str]) {
        *lock(&self.state.tools) = tools.iter().map(|t| (*t).to_owned()).collect();
    }

    /// Leaves every `tools/list` from now on unanswered (counted, though).
    pub fn hang_lists(&self) {
        self.state.hang_lists.store(true, Ordering::SeqCst);
    }

    /// How many `tools/list` requests it answered.
    pub fn lists(&self) -> usize {
        self.state.lists.load(Ordering::SeqCst)
    }

    /// How many `subscriptions/listen` requests it accepted.
    pub fn listens(&self) -> usize {
        self.state.listens.load(Ordering::SeqCst)
    }

    /// Announces a tool-list change on every open subscription and to every
    /// peer that listed in the legacy era; returns how many were told.
    pub async fn announce_change(&self) -> usize {
        let sinks = lock(&self.state.sinks).clone();
        let peers = lock(&self.state.peers).clone();
        let mut told = 0;
        for sink in sinks {
            if sink.notify_tool_list_changed().await.is_ok() {
                told += 1;
            }
        }
        for peer in peers {
            if peer.notify_tool_list_changed().await.is_ok() {
                told += 1;
            }
        }
        told
    }
}

impl ServerHandler for ListServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.state.lists.fetch_add(1, Ordering::SeqCst);
        if self.state.hang_lists.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if context.meta.protocol_version().is_none() {
            // A legacy peer hears of changes as plain notifications.
            let mut peers = lock(&self.state.peers);
            if peers.len() < 64 {
                peers.push(context.peer.clone());
            }
        }
        let tools = lock(&self.state.tools)
            .iter()
            .map(|name| {
                Tool::new(
                    name.clone(),
                    format!("the {name} tool"),
                    Arc::new(
                        serde_json::json!({"type": "object"})
                            .as_object()
                            .cloned()
                            .unwrap_or_default(),
                    ),
                )
            })
            .collect();
        let (ttl_ms, scope) = *lock(&self.state.hint);
        let mut result = ListToolsResult::with_all_items(tools);
        result.ttl_ms = ttl_ms;
        result.cache_scope = scope;
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let known = lock(&self.state.tools).contains(&request.name.to_string());
        if !known {
            return Err(ErrorData::invalid_params(
                format!("no tool {}", request.name),
                None,
            ));
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(request.name.to_string())]).into())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.clone())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        self.state.listens.fetch_add(1, Ordering::SeqCst);
        lock(&self.state.sinks).push(context.sink().clone());
        context.cancelled().await;
        Ok(())
    }
}
