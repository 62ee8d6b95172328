//! Which sessions open the optional standalone `GET` stream.
//!
//! rmcp's streamable HTTP client opens, for every session, a long-lived `GET`
//! SSE stream on which the server may send messages unrelated to any request
//! (the specification makes it optional: "the client MAY issue an HTTP GET").
//! Each such stream holds a dedicated HTTP/1 connection — a socket, hyper's
//! buffers and tasks — for the whole life of the session: with 1,000 sessions
//! that is 1,000 sockets and about a third of the client's memory per
//! session. rmcp has no switch for it, so this wrapper around rmcp's reqwest
//! client declines that one request (as a server without `GET` support would)
//! for the sessions that do not need it; resumptions of a response stream
//! (`Last-Event-ID`) and everything else go through unchanged.

use std::{collections::HashMap, sync::Arc};

use futures::stream::BoxStream;
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::{
    model::ClientJsonRpcMessage,
    transport::streamable_http_client::{
        StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
        StreamableHttpResponseLimits,
    },
};
use sse_stream::{Error as SseError, Sse};

/// Which sessions open the standalone `GET` stream for server-initiated
/// messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StandaloneStreams {
    /// Only the group's default session ([`SessionKey::default_session`]),
    /// the one whose tool list the group publishes: server-wide
    /// notifications such as `notifications/tools/list_changed` still
    /// arrive, and per-user sessions cost no idle connection. The default.
    ///
    /// [`SessionKey::default_session`]: mcp_group_core::SessionKey::default_session
    #[default]
    DefaultSessionOnly,
    /// Every session (rmcp's behaviour): one idle connection per session.
    Every,
}

/// rmcp's reqwest client, declining the standalone stream when `open` is
/// false.
#[derive(Clone)]
pub(crate) struct Client {
    pub(crate) inner: reqwest::Client,
    pub(crate) open_standalone: bool,
    /// Set once the first standalone `GET` has its answer (a stream or a
    /// refusal): a 2025-era server drops what it would send on a stream
    /// not yet open, so the connection waits for it before its first call.
    pub(crate) standalone_answered: Arc<tokio::sync::watch::Sender<bool>>,
}

type Result<T> = std::result::Result<T, StreamableHttpError<reqwest::Error>>;

impl StreamableHttpClient for Client {
    type Error = reqwest::Error;

    crate::limited_variants!();

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse> {
        self.inner
            .post_message_with_response_limits(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                limits,
            )
            .await
            .map_err(without_url)
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<()> {
        self.inner
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
            .map_err(without_url)
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, std::result::Result<Sse, SseError>>> {
        if self.declines(&session_id, &last_event_id) {
            return Err(StreamableHttpError::ServerDoesNotSupportSse);
        }
        let result = self
            .inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
            .map_err(without_url);
        self.standalone_answered.send_replace(true);
        result
    }
}

/// The HTTP error without its URL: the URL may carry credentials in its
/// query, and errors end up in logs.
fn without_url(error: StreamableHttpError<reqwest::Error>) -> StreamableHttpError<reqwest::Error> {
    match error {
        StreamableHttpError::Client(error) => StreamableHttpError::Client(error.without_url()),
        other => other,
    }
}

impl Client {
    /// The standalone stream is the `GET` of a session with no event to
    /// resume from.
    fn declines(&self, session_id: &Option<Arc<str>>, last_event_id: &Option<String>) -> bool {
        !self.open_standalone && session_id.is_some() && last_event_id.is_none()
    }
}
