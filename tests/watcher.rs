//! The tool-list watcher against servers that misbehave: one that dies
//! right after each listing, one that announces tool-list changes without
//! end. Paused time: the delays are virtual, the counts exact.
#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use mcp_group::{
    FunctionGroup, McpClientConfig, ServerConfig,
    core::{
        Connection, DynTransport, Error as CoreError, ServerDescription, Transport, async_trait,
    },
};
use rmcp::{
    ErrorData, RoleServer, ServerHandler, ServiceExt,
    model::{
        ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig as Info, Tool,
    },
    service::RequestContext,
};
use tokio::sync::Notify;

/// Lists one tool; tells its owner when it did.
#[derive(Clone)]
struct Lister {
    listed: Arc<Notify>,
    lists: Arc<AtomicUsize>,
}

impl ServerHandler for Lister {
    fn get_info(&self) -> Info {
        Info::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.listed.notify_one();
        Ok(ListToolsResult::with_all_items(vec![Tool::new(
            "t",
            "a tool",
            Arc::new(Default::default()),
        )]))
    }
}

/// Each connection's server ends its side right after its first listing,
/// until `dying` connections have died; later ones stay up.
struct DiesAfterListing {
    connects: Arc<AtomicUsize>,
    lists: Arc<AtomicUsize>,
    dying: usize,
}

#[async_trait]
impl Transport for DiesAfterListing {
    async fn connect(&self, _session: &mcp_group::SessionKey) -> Result<Connection, CoreError> {
        let n = self.connects.fetch_add(1, Ordering::SeqCst);
        let (client, server) = tokio::io::duplex(64 * 1024);
        let listed = Arc::new(Notify::new());
        let handler = Lister {
            listed: listed.clone(),
            lists: self.lists.clone(),
        };
        let dies = n < self.dying;
        tokio::spawn(async move {
            let Ok(running) = handler.serve(server).await else {
                return;
            };
            if dies {
                listed.notified().await;
                // Let the answer out, then hang up.
                tokio::time::sleep(Duration::from_millis(10)).await;
                let _ = running.cancel().await;
            } else {
                let _ = running.waiting().await;
            }
        });
        let (read, write) = tokio::io::split(client);
        Connection::establish((read, write), "dies-after-listing").await
    }

    fn description(&self) -> ServerDescription {
        ServerDescription {
            transport: "in-memory",
            endpoint: "dies-after-listing".into(),
        }
    }
}

fn config() -> McpClientConfig {
    let mut config = McpClientConfig::new(ServerConfig::stdio("unused", Vec::<String>::new()));
    config.reconnect_enabled = false;
    config
}

#[tokio::test(start_paused = true)]
async fn a_base_server_that_dies_after_each_listing_is_replaced_with_backoff_not_in_a_hot_loop() {
    let connects = Arc::new(AtomicUsize::new(0));
    let transport: DynTransport = Arc::new(DiesAfterListing {
        connects: connects.clone(),
        lists: Arc::default(),
        dying: 50,
    });
    let group = FunctionGroup::with_transport(transport, config())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let seen = connects.load(Ordering::SeqCst);
    group.shutdown().await;
    // Backoff from 100 ms, doubling: at most 1 + 6 connections in 5 s.
    assert!(seen <= 8, "{seen} connections in 5 s");
    assert!(seen >= 3, "the dead base session is still replaced: {seen}");
}

/// A server that announces a tool-list change every millisecond.
struct Chatty {
    lists: Arc<AtomicUsize>,
}

#[async_trait]
impl Transport for Chatty {
    async fn connect(&self, _session: &mcp_group::SessionKey) -> Result<Connection, CoreError> {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let handler = Lister {
            listed: Arc::new(Notify::new()),
            lists: self.lists.clone(),
        };
        tokio::spawn(async move {
            let Ok(running) = handler.serve(server).await else {
                return;
            };
            for _ in 0..5_000 {
                if running.peer().notify_tool_list_changed().await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let _ = running.waiting().await;
        });
        let (read, write) = tokio::io::split(client);
        Connection::establish((read, write), "chatty").await
    }

    fn description(&self) -> ServerDescription {
        ServerDescription {
            transport: "in-memory",
            endpoint: "chatty".into(),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_storm_of_list_changed_notifications_is_coalesced() {
    let lists = Arc::new(AtomicUsize::new(0));
    let transport: DynTransport = Arc::new(Chatty {
        lists: lists.clone(),
    });
    let group = FunctionGroup::with_transport(transport, config())
        .await
        .unwrap();
    let mut changes = group.subscribe();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let seen = lists.load(Ordering::SeqCst);
    group.shutdown().await;
    // The first listing, then at most one re-list per second.
    assert!(seen <= 7, "{seen} listings in 5 s");
    assert!(changes.try_recv().is_ok(), "changes are still followed");
}
