//! What a transport learns of its server's era: a modern server's later
//! sessions start without a handshake; a legacy server that spoils the
//! discovery probe is reached again with `initialize`, and only once probed.
#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use mcp_group_core::{
    ClientOptions, Connection, Era, EraMemory, SessionId, SessionKey, negotiate,
    rmcp::{
        ErrorData, RoleServer, ServerHandler,
        model::{DiscoverResult, ServerCapabilities, ServerConfig},
        service::RequestContext,
    },
};
use mcp_group_test_kit::serve_in_memory;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A modern server that counts its discoveries and says they hold a minute.
#[derive(Clone)]
struct Counting {
    discoveries: Arc<AtomicUsize>,
    ttl_ms: u64,
}

impl Default for Counting {
    fn default() -> Self {
        Self {
            discoveries: Arc::default(),
            ttl_ms: 60_000,
        }
    }
}

impl ServerHandler for Counting {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn discover(
        &self,
        _context: RequestContext<RoleServer>,
    ) -> Result<DiscoverResult, ErrorData> {
        self.discoveries.fetch_add(1, Ordering::SeqCst);
        let mut result = DiscoverResult::from_server_info(
            vec![mcp_group_core::rmcp::model::ProtocolVersion::V_2026_07_28],
            self.get_info(),
        );
        result.ttl_ms = self.ttl_ms;
        Ok(result)
    }
}

fn key(name: &str) -> SessionKey {
    SessionId::new(name).into()
}

#[tokio::test]
async fn a_modern_servers_later_sessions_start_without_a_handshake() {
    let server = Counting::default();
    let memory = EraMemory::new();
    let options = ClientOptions::new();
    let open = |name: &'static str| {
        let (read, write) = tokio::io::split(serve_in_memory(server.clone()));
        let (options, memory) = (&options, &memory);
        async move {
            Connection::establish_remembering(
                (read, write),
                "counting",
                options,
                &key(name),
                memory,
            )
            .await
        }
    };

    let first = open("a").await.unwrap();
    assert_eq!(first.era(), Some(Era::Modern));
    assert_eq!(memory.era(), Some(Era::Modern));
    let probed = server.discoveries.load(Ordering::SeqCst);
    assert!(probed >= 1, "the first connection discovers");

    for name in ["b", "c", "d"] {
        let later = open(name).await.unwrap();
        assert_eq!(later.era(), Some(Era::Modern));
        later.list_tools(Duration::from_secs(5)).await.unwrap();
        later.close().await;
    }
    assert_eq!(
        server.discoveries.load(Ordering::SeqCst),
        probed,
        "later sessions reuse the discovery: no handshake"
    );
    first.close().await;

    memory.forget();
    let again = open("e").await.unwrap();
    assert!(server.discoveries.load(Ordering::SeqCst) > probed);
    again.close().await;
}

/// A 2025-era server that answers every method it does not know, the
/// discovery probe included, with an empty result; counts the probes.
fn sloppy_legacy(probes: Arc<AtomicUsize>) -> tokio::io::DuplexStream {
    let (client, server) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        let (read, mut write) = tokio::io::split(server);
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(request) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let Some(id) = request.get("id").cloned() else {
                continue;
            };
            let result = match request["method"].as_str() {
                Some("initialize") => json!({
                    "protocolVersion": "2025-11-25",
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "sloppy", "version": "1"},
                }),
                Some("tools/list") => json!({"tools": []}),
                Some("server/discover") => {
                    probes.fetch_add(1, Ordering::SeqCst);
                    json!({})
                }
                _ => json!({}),
            };
            let reply = json!({"jsonrpc": "2.0", "id": id, "result": result});
            let mut bytes = serde_json::to_vec(&reply).unwrap();
            bytes.push(b'\n');
            if write.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    client
}

#[tokio::test]
async fn a_legacy_server_that_spoils_the_probe_is_reached_again_with_initialize_and_probed_once() {
    let probes = Arc::new(AtomicUsize::new(0));
    let memory = EraMemory::new();
    let options = ClientOptions::new();
    let attempts = AtomicUsize::new(0);
    let (memory_ref, attempts_ref, options_ref) = (&memory, &attempts, &options);
    let connect = |name: &'static str| {
        let probes = probes.clone();
        negotiate(memory_ref, move || {
            attempts_ref.fetch_add(1, Ordering::SeqCst);
            let (read, write) = tokio::io::split(sloppy_legacy(probes.clone()));
            let options = options_ref.clone();
            let memory = memory_ref;
            async move {
                Connection::establish_remembering(
                    (read, write),
                    "sloppy",
                    &options,
                    &key(name),
                    memory,
                )
                .await
            }
        })
    };

    let first = connect("a").await.unwrap();
    assert_eq!(first.era(), Some(Era::Legacy));
    assert_eq!(memory.era(), Some(Era::Legacy));
    assert_eq!(attempts.load(Ordering::SeqCst), 2, "opened once more");

    let second = connect("b").await.unwrap();
    second.list_tools(Duration::from_secs(5)).await.unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 3, "no retry once known");
    assert_eq!(probes.load(Ordering::SeqCst), 1, "probed only once");
    first.close().await;
    second.close().await;
}

#[tokio::test]
async fn a_pinned_legacy_version_never_probes() {
    let probes = Arc::new(AtomicUsize::new(0));
    let options = ClientOptions::new()
        .with_protocol_version("2025-11-25")
        .unwrap();
    let (read, write) = tokio::io::split(sloppy_legacy(probes.clone()));
    let connection = Connection::establish_with((read, write), "sloppy", &options, &key("a"))
        .await
        .unwrap();
    assert_eq!(connection.era(), Some(Era::Legacy));
    assert_eq!(probes.load(Ordering::SeqCst), 0);
    connection.close().await;
}

#[tokio::test]
async fn a_server_that_forbids_reuse_gets_one_discovery_per_session_not_two() {
    let server = Counting {
        ttl_ms: 0,
        ..Counting::default()
    };
    let memory = EraMemory::new();
    let options = ClientOptions::new();
    let open = |name: &'static str| {
        let (read, write) = tokio::io::split(serve_in_memory(server.clone()));
        let (options, memory) = (&options, &memory);
        async move {
            Connection::establish_remembering(
                (read, write),
                "counting",
                options,
                &key(name),
                memory,
            )
            .await
        }
    };
    let first = open("a").await.unwrap();
    assert_eq!(memory.era(), Some(Era::Modern));
    let after_first = server.discoveries.load(Ordering::SeqCst);
    for name in ["b", "c"] {
        let later = open(name).await.unwrap();
        later.close().await;
    }
    assert_eq!(
        server.discoveries.load(Ordering::SeqCst),
        after_first + 2,
        "each later session: its handshake's discovery only"
    );
    first.close().await;
}

#[tokio::test]
async fn only_a_modern_connection_is_shared_and_a_share_closes_alone() {
    let server = Counting::default();
    let open = |options: ClientOptions| {
        let (read, write) = tokio::io::split(serve_in_memory(server.clone()));
        async move {
            Connection::establish_with((read, write), "counting", &options, &key("base")).await
        }
    };
    let legacy = open(ClientOptions::new().legacy_only()).await.unwrap();
    assert_eq!(legacy.era(), Some(Era::Legacy));
    assert!(
        legacy.share(&key("other"), None).is_none(),
        "a protocol session is not shared"
    );

    let modern = open(ClientOptions::new()).await.unwrap();
    assert_eq!(modern.era(), Some(Era::Modern));
    let share = modern.share(&key("s1"), None).unwrap();
    let other = modern.share(&key("s2"), None).unwrap();
    assert!(share.is_share() && !modern.is_share());
    share.close().await;
    assert!(share.is_closed());
    assert!(!other.is_closed() && !modern.is_closed());
    other.list_tools(Duration::from_secs(5)).await.unwrap();
    // The owner's close ends every share.
    modern.close().await;
    tokio::time::timeout(Duration::from_secs(5), other.closed())
        .await
        .unwrap();
    assert!(other.is_closed());
    legacy.close().await;
}
