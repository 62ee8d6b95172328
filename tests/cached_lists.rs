//! Tool lists honour the server's cache hint (SEP-2549): a public list is
//! listed once for the whole group and again when it expires (its ttl
//! clamped to MIN_LIST_TTL..=MAX_LIST_TTL); a private one is listed by each
//! session and never seen by another principal; changes arrive over the
//! group's one `subscriptions/listen` (2026-07-28) or as
//! `notifications/tools/list_changed` (2025-11-25). Paused time: expiries
//! are virtual, the counts exact.
#![allow(clippy::unwrap_used)]

use std::{collections::HashMap, sync::Arc, time::Duration};

use mcp_group::{
    Error, FunctionGroup, MAX_LIST_TTL, MIN_LIST_TTL, McpClientConfig, ServerConfig, SessionId,
    SessionKey, ToolOverride,
    core::{
        CacheScope, ClientOptions, Connection, DynTransport, Error as CoreError, ServerDescription,
        Transport, async_trait,
    },
};
use mcp_group_test_kit::{ListServer, serve_in_memory};
use serde_json::json;

/// Connects each session to the server of its principal (`""`: none), a
/// clone sharing that server's state, with `options`.
struct PerPrincipal {
    servers: HashMap<&'static str, ListServer>,
    options: ClientOptions,
}

impl PerPrincipal {
    fn one(server: &ListServer) -> DynTransport {
        Self::many([("", server.clone())])
    }

    fn many(servers: impl IntoIterator<Item = (&'static str, ListServer)>) -> DynTransport {
        Arc::new(Self {
            servers: servers.into_iter().collect(),
            options: ClientOptions::new(),
        })
    }
}

#[async_trait]
impl Transport for PerPrincipal {
    async fn connect(&self, session: &SessionKey) -> Result<Connection, CoreError> {
        let principal = session.principal().unwrap_or("");
        let server = self
            .servers
            .get(principal)
            .or_else(|| self.servers.get(""))
            .cloned()
            .unwrap();
        let (read, write) = tokio::io::split(serve_in_memory(server));
        Connection::establish_with((read, write), "lists", &self.options, session).await
    }

    fn description(&self) -> ServerDescription {
        ServerDescription {
            transport: "in-memory",
            endpoint: "lists".into(),
        }
    }
}

fn config() -> McpClientConfig {
    let mut config = McpClientConfig::new(ServerConfig::stdio("unused", Vec::<String>::new()));
    config.reconnect_enabled = false;
    config
}

async fn group(transport: DynTransport) -> FunctionGroup {
    FunctionGroup::with_transport(transport, config())
        .await
        .unwrap()
}

fn public(ttl_ms: u64, tools: &[&str]) -> ListServer {
    ListServer::new(tools).with_hint(Some(ttl_ms), Some(CacheScope::Public))
}

async fn call(
    group: &FunctionGroup,
    principal: Option<&str>,
    session: &str,
    tool: &str,
) -> Result<String, Error> {
    let session = SessionId::new(session);
    let output = group
        .call_as(Some(&session), principal, tool, json!({}))
        .await?;
    Ok(output.to_text())
}

#[tokio::test(start_paused = true)]
async fn a_public_list_is_listed_once_for_every_session_and_principal() {
    let server = public(60_000, &["a"]);
    let group = group(PerPrincipal::one(&server)).await;
    for (principal, session) in [(None, "s1"), (Some("alice"), "s1"), (Some("bob"), "s2")] {
        assert_eq!(call(&group, principal, session, "a").await.unwrap(), "a");
    }
    assert_eq!(server.lists(), 1);
    group.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_public_list_is_listed_again_once_its_ttl_is_over() {
    let server = public(60_000, &["a"]);
    let group = group(PerPrincipal::one(&server)).await;
    tokio::time::sleep(Duration::from_secs(59)).await;
    call(&group, None, "s", "a").await.unwrap();
    assert_eq!(server.lists(), 1, "still fresh");
    server.set_tools(&["a", "b"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(call(&group, None, "s", "b").await.unwrap(), "b");
    assert_eq!(server.lists(), 2);
    assert!(group.function("b").is_some());
    group.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_ttl_of_zero_is_held_for_the_minimum_not_relisted_per_call() {
    let server = public(0, &["a"]);
    let group = group(PerPrincipal::one(&server)).await;
    for _ in 0..20 {
        call(&group, None, "s", "a").await.unwrap();
    }
    assert_eq!(server.lists(), 1);
    tokio::time::sleep(MIN_LIST_TTL).await;
    call(&group, None, "s", "a").await.unwrap();
    assert_eq!(server.lists(), 2);
    group.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_ttl_of_u64_max_is_cut_to_the_maximum() {
    let server = public(u64::MAX, &["a"]);
    let group = group(PerPrincipal::one(&server)).await;
    tokio::time::sleep(MAX_LIST_TTL - Duration::from_secs(1)).await;
    call(&group, None, "s", "a").await.unwrap();
    assert_eq!(server.lists(), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    call(&group, None, "s", "a").await.unwrap();
    assert_eq!(server.lists(), 2);
    group.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn overrides_are_applied_again_after_a_refresh() {
    let server = public(10_000, &["a"]);
    let mut config = config();
    let alias = ToolOverride {
        alias: Some("alpha".into()),
        ..ToolOverride::default()
    };
    config.tool_overrides.insert("b".into(), alias);
    let group = FunctionGroup::with_transport(PerPrincipal::one(&server), config)
        .await
        .unwrap();
    assert!(group.function("alpha").is_none());
    server.set_tools(&["a", "b"]);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(call(&group, None, "s", "alpha").await.unwrap(), "b");
    assert!(
        group.function("b").is_none(),
        "exposed under its alias only"
    );
    group.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn private_lists_are_per_session_and_never_cross_principals() {
    let private =
        |tools: &[&str]| ListServer::new(tools).with_hint(Some(60_000), Some(CacheScope::Private));
    let base = private(&["common"]);
    let alice = private(&["common", "alice_only"]);
    let bob = private(&["common", "bob_only"]);
    let group = group(PerPrincipal::many([
        ("", base.clone()),
        ("alice", alice.clone()),
        ("bob", bob.clone()),
    ]))
    .await;
    assert!(
        group.function("alice_only").is_none(),
        "the group's list is the base session's"
    );

    assert_eq!(
        call(&group, Some("alice"), "s", "alice_only")
            .await
            .unwrap(),
        "alice_only"
    );
    assert_eq!(
        call(&group, Some("alice"), "s", "common").await.unwrap(),
        "common"
    );
    assert_eq!(alice.lists(), 1, "the session keeps its own list");
    let refused = call(&group, Some("bob"), "s", "alice_only").await;
    assert!(
        matches!(refused, Err(Error::ToolNotFound { .. })),
        "{refused:?}"
    );
    assert_eq!(
        call(&group, Some("bob"), "s", "bob_only").await.unwrap(),
        "bob_only"
    );

    let seen = group
        .functions_as(Some(&SessionId::new("s")), Some("bob"))
        .await
        .unwrap();
    let names: Vec<_> = seen.iter().map(|f| f.name().to_owned()).collect();
    assert_eq!(names, ["bob_only", "common"]);
    // Another session of alice lists for itself.
    call(&group, Some("alice"), "other", "common")
        .await
        .unwrap();
    assert_eq!(alice.lists(), 2);
    group.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_sessions_private_list_goes_with_the_session() {
    let server = ListServer::new(&["a"]).with_hint(Some(60_000), Some(CacheScope::Private));
    let group = group(PerPrincipal::one(&server)).await;
    call(&group, Some("alice"), "s", "a").await.unwrap();
    let lists = server.lists();
    assert_eq!(group.cleanup_sessions(Some(Duration::ZERO)).await, 1);
    call(&group, Some("alice"), "s", "a").await.unwrap();
    assert_eq!(server.lists(), lists + 1, "a new session lists anew");
    group.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn public_list_changes_arrive_over_the_groups_one_subscription() {
    let server = public(60_000, &["a"]);
    let group = group(PerPrincipal::one(&server)).await;
    let mut changes = group.subscribe();
    for session in ["s1", "s2", "s3"] {
        call(&group, Some("alice"), session, "a").await.unwrap();
    }
    assert_eq!(server.listens(), 1, "one subscription for the group");
    server.set_tools(&["a", "c"]);
    assert_eq!(server.announce_change().await, 1);
    let changed = changes.recv().await.unwrap();
    assert!(changed.functions.get("c").is_some());
    assert_eq!(call(&group, Some("alice"), "s1", "c").await.unwrap(), "c");
    group.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_private_list_follows_changes_on_the_sessions_own_subscription() {
    let server = ListServer::new(&["a"]).with_hint(Some(60_000), Some(CacheScope::Private));
    let group = group(PerPrincipal::one(&server)).await;
    call(&group, Some("alice"), "s", "a").await.unwrap();
    assert_eq!(server.listens(), 2, "the group's and the session's own");
    server.set_tools(&["a", "c"]);
    assert_eq!(server.announce_change().await, 2);
    // Past the minimum interval between re-listings; every notification
    // is delivered before paused time moves.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(call(&group, Some("alice"), "s", "c").await.unwrap(), "c");
    group.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_legacy_server_keeps_list_changed_notifications() {
    let server = ListServer::new(&["a"]);
    let transport: DynTransport = Arc::new(PerPrincipal {
        servers: [("", server.clone())].into_iter().collect(),
        options: ClientOptions::new()
            .with_protocol_version("2025-11-25")
            .unwrap(),
    });
    let group = group(transport).await;
    let mut changes = group.subscribe();
    assert_eq!(server.listens(), 0);
    call(&group, Some("alice"), "s", "a").await.unwrap();
    assert_eq!(server.lists(), 1, "no hint: one list for the group");
    server.set_tools(&["a", "c"]);
    assert!(server.announce_change().await >= 1);
    let changed = changes.recv().await.unwrap();
    assert!(changed.functions.get("c").is_some());
    group.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_hanging_relisting_does_not_hold_up_other_calls() {
    let server = public(0, &["a"]);
    let mut config = config();
    config.tool_call_timeout = Duration::from_secs(2);
    let group = Arc::new(
        FunctionGroup::with_transport(PerPrincipal::one(&server), config)
            .await
            .unwrap(),
    );
    server.hang_lists();
    tokio::time::sleep(MIN_LIST_TTL + Duration::from_secs(1)).await;
    // The first call after expiry re-lists (and waits, at most its timeout).
    let relisting = tokio::spawn({
        let group = group.clone();
        async move { call(&group, None, "s1", "a").await }
    });
    while server.lists() < 2 {
        tokio::task::yield_now().await;
    }
    let started = tokio::time::Instant::now();
    assert_eq!(call(&group, None, "s2", "a").await.unwrap(), "a");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "another call went ahead on the old list: {:?}",
        started.elapsed()
    );
    assert_eq!(
        relisting.await.unwrap().unwrap(),
        "a",
        "the old list is kept"
    );
    group.shutdown().await;
}
