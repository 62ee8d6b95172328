//! `Connection::list_tools_with_hint` reports what the server said about
//! caching its list, and `subscribe_tool_changes` follows a 2026-07-28
//! server's `subscriptions/listen`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mcp_group_core::{CacheScope, Era};
use mcp_group_test_kit::{ListServer, connect_in_memory};

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn the_listing_carries_the_servers_ttl_and_scope() {
    let server = ListServer::new(&["a", "b"]).with_hint(Some(60_000), Some(CacheScope::Public));
    let connection = connect_in_memory(server.clone(), "lists").await.unwrap();
    let list = connection.list_tools_with_hint(TIMEOUT).await.unwrap();
    assert_eq!(list.tools.len(), 2);
    assert_eq!(list.cache.scope, Some(CacheScope::Public));
    let ttl = list.cache.ttl.unwrap();
    assert!(
        ttl <= Duration::from_secs(60) && ttl > Duration::from_secs(50),
        "{ttl:?}"
    );
}

#[tokio::test]
async fn every_listing_asks_the_server_whatever_its_ttl() {
    // rmcp would answer the second listing from its own cache; the caller's
    // policy decides when to list, so every listing reaches the server.
    let server = ListServer::new(&["a"]).with_hint(Some(3_600_000), Some(CacheScope::Public));
    let connection = connect_in_memory(server.clone(), "lists").await.unwrap();
    connection.list_tools_with_hint(TIMEOUT).await.unwrap();
    connection.list_tools_with_hint(TIMEOUT).await.unwrap();
    assert_eq!(server.lists(), 2);
}

#[tokio::test]
async fn a_modern_server_that_says_nothing_is_private_and_immediately_stale() {
    let connection = connect_in_memory(ListServer::new(&["a"]), "lists")
        .await
        .unwrap();
    assert_eq!(connection.era(), Some(Era::Modern));
    let list = connection.list_tools_with_hint(TIMEOUT).await.unwrap();
    assert!(list.cache.is_private());
    assert_eq!(list.cache.ttl, Some(Duration::ZERO));
}

#[tokio::test]
async fn tool_list_changes_arrive_over_a_subscription_in_the_modern_era() {
    let server = ListServer::new(&["a"]);
    let connection = connect_in_memory(server.clone(), "lists").await.unwrap();
    let mut changes = connection.tools_changed();
    assert!(connection.subscribe_tool_changes(TIMEOUT).await);
    // A second call opens nothing more.
    assert!(connection.subscribe_tool_changes(TIMEOUT).await);
    assert_eq!(server.listens(), 1);
    assert_eq!(server.announce_change().await, 1);
    tokio::time::timeout(TIMEOUT, changes.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(connection.tools_changed_count(), 1);
}
