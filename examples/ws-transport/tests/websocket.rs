//! The WebSocket transport against a WebSocket MCP server of ours (the test
//! kit's rmcp echo server behind tokio-tungstenite), through
//! `mcp-group-core` only.
#![allow(clippy::unwrap_used)]
// tungstenite dictates the handshake callback's error type.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use futures::{SinkExt, StreamExt, future::ready};
use mcp_group_core::{Error, SessionId, Transport};
use mcp_group_example_ws_transport::WebSocketTransport;
use mcp_group_test_kit::{EchoServer, free_port};
use rmcp::{
    RoleServer, ServiceExt,
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
};
use tokio_tungstenite::tungstenite::{self, Message};

/// Serves MCP over WebSocket on a free loopback port; one rmcp server per socket.
async fn start_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Agree to the `mcp` subprotocol the client asks for.
                let agree =
                    |_request: &tungstenite::handshake::server::Request,
                     mut response: tungstenite::handshake::server::Response| {
                        response.headers_mut().insert(
                            "Sec-WebSocket-Protocol",
                            tungstenite::http::HeaderValue::from_static("mcp"),
                        );
                        Ok(response)
                    };
                let Ok(socket) = tokio_tungstenite::accept_hdr_async(stream, agree).await else {
                    return;
                };
                let (write, read) = socket.split();
                let sink = write.with(|m: TxJsonRpcMessage<RoleServer>| {
                    ready(
                        serde_json::to_string(&m)
                            .map(Message::text)
                            .map_err(|e| tungstenite::Error::Io(std::io::Error::other(e))),
                    )
                });
                let stream = read.filter_map(|frame| {
                    ready(match frame {
                        Ok(Message::Text(t)) => {
                            serde_json::from_str::<RxJsonRpcMessage<RoleServer>>(t.as_str()).ok()
                        }
                        _ => None,
                    })
                });
                if let Ok(running) = EchoServer::new().serve((Box::pin(sink), stream)).await {
                    let _ = running.waiting().await;
                }
            });
        }
    });
    format!("ws://127.0.0.1:{port}/mcp")
}

#[tokio::test]
async fn lists_and_calls_tools_over_websocket() {
    let url = start_server().await;
    let transport = WebSocketTransport::new(url);
    let a = transport
        .connect(&SessionId::new("a").into())
        .await
        .unwrap();
    let b = transport
        .connect(&SessionId::new("b").into())
        .await
        .unwrap();
    assert_ne!(a.id(), b.id(), "one socket per session");
    let tools = a.list_tools(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["echo"]
    );
    let out = b
        .call_tool(
            "echo",
            EchoServer::arguments("over ws"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(out.to_text(), "Echo: over ws");
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let transport = WebSocketTransport::new(format!("ws://127.0.0.1:{}/mcp", free_port()));
    let err = transport
        .connect(&SessionId::new("s").into())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
}
