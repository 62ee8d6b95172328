//! The per-session header provider is given the session's key: its id and
//! the principal it was opened for.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use mcp_group_core::{SessionId, SessionKey, Transport};
use mcp_group_transport_http::{HttpConfig, StreamableHttpTransport};
use support::{Reply, Request, Server, mcp_answer};

#[tokio::test]
async fn the_header_provider_receives_the_session_id_and_the_principal() {
    let server = Server::start(|_| {
        |request: &Request| mcp_answer(request).unwrap_or_else(|| Reply::text(400, ""))
    })
    .await;
    let transport = StreamableHttpTransport::new(HttpConfig::new(server.url("/mcp")).unwrap())
        .unwrap()
        .with_header_provider(Arc::new(|key: &SessionKey| {
            let who = format!("{}|{}", key.principal().unwrap_or("-"), key.session());
            vec![("x-end-user".to_owned(), who)]
        }));
    let chat = SessionId::new("chat-7");
    for principal in [Some("alice"), Some("bob"), None] {
        let key = SessionKey::with_principal(principal, chat.clone());
        let connection = transport.connect(&key).await.unwrap();
        connection.close().await;
    }
    let mut seen: Vec<String> = server
        .requests_to("/mcp")
        .iter()
        .filter_map(|r| r.header("x-end-user").map(str::to_owned))
        .collect();
    seen.dedup();
    assert_eq!(seen, ["alice|chat-7", "bob|chat-7", "-|chat-7"]);
}
