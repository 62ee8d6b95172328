//! A WebSocket transport for [mcp-group], written the way any downstream
//! crate can: against `mcp-group-core` alone, with tokio-tungstenite.
//!
//! WebSocket is not an MCP transport of the specification; some servers offer
//! it anyway (subprotocol `mcp`, one JSON-RPC message per text frame). The
//! recipe, from `mcp-group-core`'s docs:
//!
//! 1. open the stream (here: the WebSocket handshake);
//! 2. adapt it to what rmcp takes — here a `Sink` of outgoing and a `Stream`
//!    of incoming JSON-RPC messages, by (de)serializing text frames;
//! 3. hand it to [`Connection::establish`], which runs the MCP handshake;
//! 4. report failures as [`Error::Connect`].
//!
//! ```no_run
//! use mcp_group_core::{SessionId, Transport};
//! use mcp_group_example_ws_transport::WebSocketTransport;
//!
//! # async fn run() -> Result<(), mcp_group_core::Error> {
//! let transport = WebSocketTransport::new("ws://127.0.0.1:9000/mcp");
//! let connection = transport.connect(&SessionId::new("alice").into()).await?;
//! connection.close().await;
//! # Ok(()) }
//! ```
//!
//! [mcp-group]: https://docs.rs/mcp-group

use futures::{SinkExt, StreamExt, future::ready};
use mcp_group_core::{
    Connection, Error, ServerDescription, SessionKey, Transport, async_trait,
    rmcp::{
        RoleClient,
        service::{RxJsonRpcMessage, TxJsonRpcMessage},
    },
};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest, http::HeaderValue};

/// MCP over WebSocket: one connection per session, subprotocol `mcp`.
#[derive(Debug, Clone)]
pub struct WebSocketTransport {
    url: String,
}

impl WebSocketTransport {
    /// A transport for the `ws://` or `wss://` URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into() }
    }

    fn connect_error(&self, source: tungstenite::Error) -> Error {
        Error::Connect {
            endpoint: self.url.clone(),
            source: Box::new(source),
        }
    }
}

/// One outgoing message as a text frame.
fn encode(message: TxJsonRpcMessage<RoleClient>) -> Result<Message, tungstenite::Error> {
    serde_json::to_string(&message)
        .map(Message::text)
        .map_err(|e| tungstenite::Error::Io(std::io::Error::other(e)))
}

/// One incoming frame as a message; anything else (pings, binary, garbage) is skipped.
fn decode(frame: Result<Message, tungstenite::Error>) -> Option<RxJsonRpcMessage<RoleClient>> {
    match frame {
        Ok(Message::Text(text)) => match serde_json::from_str(text.as_str()) {
            Ok(message) => Some(message),
            Err(error) => {
                tracing::warn!(%error, "ignoring a WebSocket frame that is not JSON-RPC");
                None
            }
        },
        _ => None,
    }
}

#[async_trait]
impl Transport for WebSocketTransport {
    async fn connect(&self, _session: &SessionKey) -> Result<Connection, Error> {
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| self.connect_error(e))?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mcp"));
        let (socket, _response) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| self.connect_error(e))?;
        let (write, read) = socket.split();
        let sink = write.with(|message| ready(encode(message)));
        let stream = read.filter_map(|frame| ready(decode(frame)));
        Connection::establish((Box::pin(sink), stream), self.url.clone()).await
    }

    fn description(&self) -> ServerDescription {
        ServerDescription {
            transport: "websocket",
            endpoint: self.url.clone(),
        }
    }
}
