//! The sessions of a 2026-07-28 server share one rmcp client: after the
//! first connection has found the era, a new session's first call is its
//! first request, and every request still carries its own session's
//! headers and nobody else's.
#![allow(clippy::unwrap_used)]

mod support;

use std::{sync::Arc, time::Duration};

use mcp_group_core::{Connection, Era, JsonObject, SessionId, SessionKey, Transport};
use mcp_group_transport_http::{HttpConfig, StreamableHttpTransport};
use serde_json::{Value, json};
use support::{Reply, Request, Server};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A minimal 2026-07-28 server: `server/discover`, and a `tools/call` that
/// answers with the text `ok`; `initialize` is refused as a modern-only
/// server refuses it.
fn modern_answer(request: &Request) -> Reply {
    let message = request.json();
    let Some(id) = message.get("id").cloned() else {
        return Reply::text(202, "");
    };
    let result = match message["method"].as_str().unwrap_or_default() {
        "server/discover" => json!({
            "resultType": "complete",
            "supportedVersions": ["2026-07-28"],
            "capabilities": {"tools": {}},
            "ttlMs": 0,
            "cacheScope": "public",
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "scripted", "version": "0"}},
        }),
        "tools/call" => json!({
            "resultType": "complete",
            "content": [{"type": "text", "text": "ok"}],
        }),
        _ => {
            return Reply::json(
                200,
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "no"}}),
            );
        }
    };
    Reply::json(200, json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// A transport to `server` with nothing configured.
fn plain(server: &Server) -> StreamableHttpTransport {
    StreamableHttpTransport::new(HttpConfig::new(server.url("/mcp")).unwrap()).unwrap()
}

/// Connects the session named `id`.
async fn connect(transport: &StreamableHttpTransport, id: &str) -> Connection {
    transport.connect(&SessionId::new(id).into()).await.unwrap()
}

fn who(key: &SessionKey) -> String {
    format!("{}|{}", key.principal().unwrap_or("-"), key.session())
}

fn posts_of(server: &Server, method: &str) -> Vec<Request> {
    server
        .requests_to("/mcp")
        .into_iter()
        .filter(|r| r.method == "POST" && r.json()["method"] == method)
        .collect()
}

fn arguments(who: &str) -> JsonObject {
    let Value::Object(arguments) = json!({"who": who}) else {
        unreachable!()
    };
    arguments
}

#[tokio::test]
async fn new_modern_sessions_share_one_client_and_each_request_carries_only_its_own_headers() {
    let server = Server::start(|_| modern_answer).await;
    let config = HttpConfig::new(server.url("/mcp"))
        .unwrap()
        .header("x-team", "search");
    let transport = StreamableHttpTransport::new(config)
        .unwrap()
        .with_header_provider(Arc::new(|key: &SessionKey| {
            vec![("x-end-user".to_owned(), who(key))]
        }));

    // The first connection finds the server modern.
    let first = SessionKey::with_principal(Some("carol"), SessionId::new("first"));
    let first = transport.connect(&first).await.unwrap();
    assert_eq!(transport.era(), Some(Era::Modern));
    let discovers_before = posts_of(&server, "server/discover").len();

    // Sixteen new sessions of two users, all at once.
    let keys: Vec<SessionKey> = (0..16)
        .map(|i| {
            let user = if i % 2 == 0 { "alice" } else { "bob" };
            SessionKey::with_principal(Some(user), SessionId::new(format!("chat-{i}")))
        })
        .collect();
    let connections: Vec<_> =
        futures::future::join_all(keys.iter().map(|key| transport.connect(key)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    let calls = connections
        .iter()
        .zip(&keys)
        .map(|(connection, key)| connection.call_tool("echo", arguments(&who(key)), TIMEOUT));
    for output in futures::future::join_all(calls).await {
        assert!(!output.unwrap().is_error());
    }

    // One more discovery at most (the shared client opening), not one per
    // session: each session's first call was its first request.
    let discovers = posts_of(&server, "server/discover").len() - discovers_before;
    assert!(
        discovers <= 1,
        "{discovers} discoveries for 16 new sessions"
    );
    assert!(connections.iter().all(|c| c.is_share()));

    // Every call went with its own session's headers and the configured
    // ones.
    let calls = posts_of(&server, "tools/call");
    assert_eq!(calls.len(), 16);
    for call in &calls {
        let own = call.json()["params"]["arguments"]["who"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(call.header("x-end-user"), Some(own.as_str()));
        assert_eq!(call.header("x-team"), Some("search"));
    }

    // Closing one session's share leaves the others working.
    connections[0].close().await;
    assert!(connections[0].is_closed());
    assert!(!connections[1].is_closed());
    let output = connections[1]
        .call_tool("echo", arguments(&who(&keys[1])), TIMEOUT)
        .await
        .unwrap();
    assert!(!output.is_error());
    let last = posts_of(&server, "tools/call").pop().unwrap();
    assert_eq!(last.header("x-end-user"), Some(who(&keys[1]).as_str()));
    first.close().await;
}

#[tokio::test]
async fn a_share_waits_on_closed_until_it_is_closed_and_no_longer() {
    let server = Server::start(|_| modern_answer).await;
    let transport = plain(&server);
    let _first = connect(&transport, "first").await;
    let share = connect(&transport, "second").await;
    let other = connect(&transport, "third").await;
    assert!(share.is_share() && other.is_share());
    let closed = share.closed();
    tokio::pin!(closed);
    assert!(
        futures::poll!(closed.as_mut()).is_pending(),
        "a live share is not closed"
    );
    share.close().await;
    tokio::time::timeout(TIMEOUT, closed).await.unwrap();
    assert!(!other.is_closed());
}

#[tokio::test]
async fn without_sharing_every_modern_session_opens_with_its_own_discovery() {
    let server = Server::start(|_| modern_answer).await;
    let transport = StreamableHttpTransport::new(HttpConfig::new(server.url("/mcp")).unwrap())
        .unwrap()
        .with_shared_connection(false);
    for i in 0..3 {
        let connection = transport
            .connect(&SessionId::new(format!("s{i}")).into())
            .await
            .unwrap();
        assert!(!connection.is_share());
    }
    assert_eq!(posts_of(&server, "server/discover").len(), 3);
}

#[tokio::test]
async fn the_default_session_keeps_a_connection_of_its_own() {
    let server = Server::start(|_| modern_answer).await;
    let transport = plain(&server);
    let _first = connect(&transport, "first").await;
    assert_eq!(transport.era(), Some(Era::Modern));
    // Its tool-list subscription goes untagged: with the default session's
    // own headers only on a connection of its own.
    let default = transport
        .connect(&SessionKey::default_session())
        .await
        .unwrap();
    assert!(!default.is_share());
    let other = connect(&transport, "other").await;
    assert!(other.is_share());
}

#[tokio::test]
async fn a_shared_client_past_its_age_limit_takes_no_new_sessions() {
    let server = Server::start(|_| modern_answer).await;
    let transport = plain(&server);
    let _first = connect(&transport, "first").await;
    let old = connect(&transport, "a").await;
    let discovers = posts_of(&server, "server/discover").len();
    let young = connect(&transport, "b").await;
    assert_eq!(posts_of(&server, "server/discover").len(), discovers);

    tokio::time::pause();
    tokio::time::advance(mcp_group_transport_http::SHARED_CLIENT_MAX_AGE).await;
    tokio::time::resume();
    let renewed = connect(&transport, "c").await;
    assert!(renewed.is_share());
    assert_eq!(
        posts_of(&server, "server/discover").len(),
        discovers + 1,
        "a new shared client opens"
    );
    // The sessions of the old one go on.
    for connection in [&old, &young, &renewed] {
        let output = connection
            .call_tool("echo", arguments("x"), TIMEOUT)
            .await
            .unwrap();
        assert!(!output.is_error());
    }
}

/// An SSE event carrying `message`, with an id.
fn event(id: &str, message: &Value) -> String {
    format!("id: {id}\ndata: {message}\n\n")
}

/// A stream of `events` that then ends (before the call's response, for
/// the first one).
fn stream_then_end(events: String) -> Reply {
    let total = events.len();
    Reply::Stream {
        content_type: "text/event-stream",
        prefix: events.into_bytes(),
        filler: Vec::new(),
        total: Some(total),
    }
}

#[tokio::test]
async fn a_broken_response_stream_is_resumed_with_its_own_sessions_headers() {
    let server = resuming_server(|_, id| response_to(id)).await;
    let (_transport, share, alice) = share_of_alice(&server).await;
    let output = share
        .call_tool("slow", arguments("alice"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(output.to_text(), "resumed");
    let resumptions = gets(&server);
    assert!(!resumptions.is_empty());
    for get in &resumptions {
        assert_eq!(get.header("last-event-id"), Some("e1"));
        assert_eq!(get.header("x-end-user"), Some(who(&alice).as_str()));
    }
}

/// A server whose `tools/call` answers with one event (id `e1`) and ends,
/// and whose resumptions answer as `resume` says, given how many came
/// before.
async fn resuming_server(resume: fn(usize, &Value) -> Reply) -> Server {
    let call_id = Arc::new(std::sync::Mutex::new(Value::Null));
    let gets = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    Server::start(|_| {
        move |request: &Request| {
            if request.method == "GET" {
                let before = gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                return resume(before, &call_id.lock().unwrap());
            }
            let message = request.json();
            if message["method"] == "tools/call" {
                *call_id.lock().unwrap() = message["id"].clone();
                let progress = json!({"jsonrpc": "2.0", "method": "notifications/message",
                    "params": {"level": "info", "data": "working"}});
                return stream_then_end(event("e1", &progress));
            }
            modern_answer(request)
        }
    })
    .await
}

fn response_to(id: &Value) -> Reply {
    let response = json!({"jsonrpc": "2.0", "id": id, "result": {
        "resultType": "complete",
        "content": [{"type": "text", "text": "resumed"}],
    }});
    stream_then_end(event("e2", &response))
}

async fn share_of_alice(server: &Server) -> (StreamableHttpTransport, Connection, SessionKey) {
    let transport = StreamableHttpTransport::new(HttpConfig::new(server.url("/mcp")).unwrap())
        .unwrap()
        .with_header_provider(Arc::new(|key: &SessionKey| {
            vec![("x-end-user".to_owned(), who(key))]
        }));
    let _first = connect(&transport, "first").await;
    let alice = SessionKey::with_principal(Some("alice"), SessionId::new("chat"));
    let share = transport.connect(&alice).await.unwrap();
    assert!(share.is_share());
    (transport, share, alice)
}

fn gets(server: &Server) -> Vec<Request> {
    server
        .requests_to("/mcp")
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect()
}

#[tokio::test]
async fn a_resumption_that_fails_once_is_tried_again_and_never_goes_out_untagged() {
    let server = resuming_server(|before, id| match before {
        0 => Reply::text(503, "busy"),
        _ => response_to(id),
    })
    .await;
    let (_transport, share, alice) = share_of_alice(&server).await;
    let output = share
        .call_tool("slow", arguments("alice"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(output.to_text(), "resumed");
    let gets = gets(&server);
    assert_eq!(gets.len(), 2);
    for get in &gets {
        assert_eq!(get.header("x-end-user"), Some(who(&alice).as_str()));
        assert_eq!(get.header("last-event-id"), Some("e1"));
        // What named the call stays off its resumption.
        assert_eq!(get.header("mcp-method"), None);
    }
}

#[tokio::test]
async fn a_stream_that_breaks_again_without_progress_is_given_up_after_three_resumptions() {
    // Every resumption repeats the old event and ends again.
    let server = resuming_server(|_, _| {
        let progress = json!({"jsonrpc": "2.0", "method": "notifications/message",
            "params": {"level": "info", "data": "still"}});
        stream_then_end(event("e1", &progress))
    })
    .await;
    let (_transport, share, _) = share_of_alice(&server).await;
    let result = share.call_tool("slow", arguments("alice"), TIMEOUT).await;
    assert!(
        !matches!(result, Ok(_) | Err(mcp_group_core::Error::Timeout { .. })),
        "{result:?}"
    );
    assert_eq!(gets(&server).len(), 3);
}
