//! The legacy MCP HTTP+SSE transport (protocol 2024-11-05, deprecated by the 2026-07-28 revision; connections always use the 2025-era `initialize` handshake) of [mcp-group].
//!
//! A connection opens a `GET` event stream, waits for the server's `endpoint`
//! event, then `POST`s each JSON-RPC message to that endpoint while reading
//! the answers as `message` events from the stream. rmcp 3 has no client for
//! this retired transport, so the exchange is written here, on reqwest (the
//! same headers, redaction and pool rules as the streamable HTTP transport)
//! and `sse-stream` for parsing the event stream — no hand-written SSE parser.
//! Everything above the byte level (JSON-RPC, the handshake) is rmcp's.
//!
//! Every `POST` carries the session's headers, credentials included, so the
//! `endpoint` the server names must be on the configured URL's origin
//! (scheme, host and port); any other is refused
//! ([`Error::CrossOriginEndpoint`]) before anything is sent. An event larger
//! than [`MAX_EVENT_SIZE`] ends the stream ([`Error::EventTooLarge`]) instead
//! of being buffered, as streamable HTTP does.
//!
//! ```no_run
//! use mcp_group_core::{SessionId, Transport};
//! use mcp_group_transport_sse::{HttpConfig, SseTransport};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let transport = SseTransport::new(HttpConfig::new("http://127.0.0.1:3001/sse")?)?;
//! let connection = transport.connect(&SessionId::new("alice").into()).await?;
//! connection.close().await; // drops the event stream
//! # Ok(()) }
//! ```
//!
//! # Cancel safety
//! `connect` is cancel safe (dropping it drops the request and the stream).
//! Reconnection after a dropped stream is the caller's: the connection ends,
//! and the session's next call opens a new one.
//!
//! [mcp-group]: https://docs.rs/mcp-group

use std::{pin::Pin, sync::Arc};

use futures::{Stream, StreamExt};
use mcp_group_core::{
    ClientOptions, Connection, Error as CoreError, ServerDescription, SessionKey, Transport,
};
pub use mcp_group_transport_http::{HeaderProvider, HttpConfig, HttpEndpoint};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap};
use rmcp::{RoleClient, transport::Transport as RmcpTransport};

/// What this transport reports of its own: the HTTP exchange and the
/// `endpoint` event. It reaches callers as the source of a
/// [`mcp_group_core::Error`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A header or the HTTP client cannot be used.
    #[error("the HTTP endpoint cannot be used")]
    Http {
        /// The HTTP transport's error.
        #[source]
        source: mcp_group_transport_http::Error,
    },
    /// The HTTP request failed.
    #[error("HTTP request failed")]
    Request {
        /// What reqwest reported.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with a non-success status.
    #[error("the server answered HTTP {status}")]
    Status {
        /// The status code.
        status: u16,
    },
    /// The event stream ended before the `endpoint` event.
    #[error("the event stream ended before the server sent its endpoint")]
    NoEndpoint,
    /// The `endpoint` event does not hold a usable URL.
    #[error("the server's endpoint `{endpoint}` is not a URL")]
    BadEndpoint {
        /// What the server sent.
        endpoint: String,
    },
    /// The `endpoint` event names another origin (scheme, host or port) than
    /// the configured URL; nothing is sent there, since every `POST` carries
    /// the session's headers and credentials.
    #[error("the server's endpoint is on another origin ({origin}) than the configured URL")]
    CrossOriginEndpoint {
        /// The endpoint's origin (`scheme://host:port`, no path or query).
        origin: String,
    },
    /// An event of the stream grew past [`MAX_EVENT_SIZE`] before it ended;
    /// the stream is dropped rather than buffered further.
    #[error("an SSE event exceeded {limit} bytes")]
    EventTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// A message could not be encoded.
    #[error("cannot encode a JSON-RPC message")]
    Encode {
        /// What serde reported.
        #[source]
        source: serde_json::Error,
    },
}

/// The largest SSE event accepted, in bytes (its `data`, `event`, `id` and
/// `retry` lines, as streamable HTTP counts them): 16 MiB.
pub const MAX_EVENT_SIZE: usize = 16 << 20;

type Events = Pin<Box<dyn Stream<Item = Result<sse_stream::Sse, sse_stream::Error>> + Send>>;

/// The legacy HTTP+SSE transport.
#[derive(Clone, Debug)]
pub struct SseTransport {
    endpoint: HttpEndpoint,
    options: ClientOptions,
}

impl SseTransport {
    /// A transport for `config`, with one connection pool for all its
    /// connections; an error if the HTTP client cannot be built.
    pub fn new(config: HttpConfig) -> Result<Self, mcp_group_transport_http::Error> {
        Ok(Self {
            endpoint: HttpEndpoint::new(config)?,
            options: ClientOptions::new(),
        })
    }

    /// The client side's options: offered protocol version, elicitation.
    pub fn with_client_options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// Adds per-session headers.
    pub fn with_header_provider(mut self, provider: Arc<dyn HeaderProvider>) -> Self {
        self.endpoint = self.endpoint.with_header_provider(provider);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &HttpConfig {
        self.endpoint.config()
    }

    /// Opens the event stream and waits for the endpoint.
    async fn open(&self, session: &SessionKey) -> Result<SseClient, Error> {
        let headers: HeaderMap = self
            .endpoint
            .headers(session)
            .map_err(|source| Error::Http { source })?
            .into_iter()
            .collect();
        let response = self
            .endpoint
            .client()
            .get(&self.config().url)
            .headers(headers.clone())
            .header(ACCEPT, "text/event-stream")
            .send()
            .await;
        let response = successful(response)?;
        let base = response.url().clone();
        let mut events: Events = Box::pin(sse_stream::SseStream::from_bytes_stream(bounded(
            response.bytes_stream(),
            MAX_EVENT_SIZE,
        )));
        let endpoint = loop {
            match events.next().await {
                Some(Ok(event)) if event.event.as_deref() == Some("endpoint") => {
                    break event.data.unwrap_or_default();
                }
                Some(Ok(_)) => continue,
                Some(Err(sse_stream::Error::Body(error))) => {
                    return Err(error.downcast::<Error>().map_or(Error::NoEndpoint, |e| *e));
                }
                Some(Err(_)) | None => return Err(Error::NoEndpoint),
            }
        };
        let post_url = base.join(endpoint.trim()).map_err(|_| Error::BadEndpoint {
            endpoint: endpoint.clone(),
        })?;
        // The configured URL is the origin the credentials are meant for
        // (redirects are not followed, so `base` has the same origin).
        if post_url.origin() != base.origin() {
            return Err(Error::CrossOriginEndpoint {
                origin: post_url.origin().ascii_serialization(),
            });
        }
        tracing::debug!(post_url = %mcp_group_core::redact_url(post_url.as_str()), "SSE endpoint received");
        Ok(SseClient {
            client: self.endpoint.client().clone(),
            post_url,
            headers,
            events,
        })
    }
}

#[mcp_group_core::async_trait]
impl Transport for SseTransport {
    async fn connect(&self, session: &SessionKey) -> Result<Connection, CoreError> {
        let url = &self.config().display_url();
        let client = self.open(session).await.map_err(|e| match e {
            // A header or client that cannot be used will not get better.
            Error::Http { .. } => CoreError::Start {
                endpoint: url.clone(),
                source: Box::new(e),
            },
            // The server answered, with an endpoint or an event we refuse.
            Error::CrossOriginEndpoint { .. } | Error::EventTooLarge { .. } => {
                CoreError::Handshake {
                    endpoint: url.clone(),
                    source: Box::new(e),
                }
            }
            _ => CoreError::Connect {
                endpoint: url.clone(),
                source: Box::new(e),
            },
        })?;
        // HTTP+SSE is of the 2025 era (deprecated in 2026-07-28): the
        // `initialize` handshake only, never a discovery probe.
        let options = self.options.clone().legacy_only();
        Connection::establish_with(client, url.clone(), &options, session).await
    }

    fn description(&self) -> ServerDescription {
        ServerDescription {
            transport: "sse",
            endpoint: self.config().display_url(),
        }
    }

    /// Always the 2025 era: HTTP+SSE has no other.
    fn era(&self) -> Option<mcp_group_core::Era> {
        Some(mcp_group_core::Era::Legacy)
    }
}

/// A response with a success status, or the error that says why not.
fn successful(
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<reqwest::Response, Error> {
    let response = response.map_err(|source| Error::Request {
        source: source.without_url(),
    })?;
    if !response.status().is_success() {
        return Err(Error::Status {
            status: response.status().as_u16(),
        });
    }
    Ok(response)
}

/// The body's chunks, ended by [`Error::EventTooLarge`] as soon as one event
/// grows past `limit` bytes — before the SSE parser buffers it — and by
/// [`Error::Request`] if reading fails.
fn bounded<D: AsRef<[u8]>>(
    body: impl Stream<Item = Result<D, reqwest::Error>>,
    limit: usize,
) -> impl Stream<Item = Result<D, Error>> {
    let mut size = EventSize::default();
    body.scan(false, move |failed, chunk| {
        let item = if *failed {
            None
        } else {
            let checked = chunk
                .map_err(|source| Error::Request { source })
                .and_then(|chunk| {
                    if size.observe(chunk.as_ref(), limit) {
                        Ok(chunk)
                    } else {
                        Err(Error::EventTooLarge { limit })
                    }
                });
            *failed = checked.is_err();
            Some(checked)
        };
        futures::future::ready(item)
    })
}

/// The size of the event being received, counted as the SSE parser keeps
/// it: the lines since the last blank line, less completed comments.
#[derive(Debug, Default)]
struct EventSize {
    /// Completed lines of the current event (each with its joining newline).
    kept: usize,
    /// The line being received.
    line: usize,
    line_is_comment: bool,
    after_cr: bool,
}

impl EventSize {
    /// Counts `bytes`; false once the event is larger than `limit`.
    fn observe(&mut self, bytes: &[u8], limit: usize) -> bool {
        for &byte in bytes {
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                continue; // the LF of a CRLF
            }
            match byte {
                b'\r' | b'\n' => {
                    if self.line == 0 {
                        self.kept = 0; // a blank line ends the event
                    } else if !self.line_is_comment {
                        self.kept = self.kept.saturating_add(self.line + 1);
                    }
                    self.line = 0;
                    self.after_cr = byte == b'\r';
                }
                _ => {
                    if self.line == 0 {
                        self.line_is_comment = byte == b':';
                    }
                    self.line += 1;
                }
            }
            if self.kept.saturating_add(self.line) > limit {
                return false;
            }
        }
        true
    }
}

/// One open HTTP+SSE exchange, as an rmcp transport.
struct SseClient {
    client: reqwest::Client,
    post_url: reqwest::Url,
    headers: HeaderMap,
    events: Events,
}

impl RmcpTransport<RoleClient> for SseClient {
    type Error = Error;

    fn send(
        &mut self,
        item: rmcp::service::TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let request = self
            .client
            .post(self.post_url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json");
        async move {
            let body = serde_json::to_vec(&item).map_err(|source| Error::Encode { source })?;
            successful(request.body(body).send().await)?;
            Ok(())
        }
    }

    async fn receive(&mut self) -> Option<rmcp::service::RxJsonRpcMessage<RoleClient>> {
        loop {
            match self.events.next().await? {
                Ok(event) => {
                    if event.event.as_deref().is_some_and(|e| e != "message") {
                        continue;
                    }
                    let Some(data) = event.data else { continue };
                    match serde_json::from_str(&data) {
                        Ok(message) => return Some(message),
                        Err(error) => {
                            tracing::warn!(%error, "ignoring an SSE message that is not JSON-RPC");
                        }
                    }
                }
                Err(error) => {
                    match &error {
                        sse_stream::Error::Body(e) if e.is::<Error>() => {
                            tracing::warn!(error = %e, "the SSE stream failed");
                        }
                        _ => tracing::debug!(%error, "the SSE stream failed"),
                    }
                    return None;
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        // Ending the stream ends the session on the server's side.
        self.events = Box::pin(futures::stream::empty());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_size_counts_lines_until_a_blank_line_and_skips_comments() {
        let mut size = EventSize::default();
        assert!(size.observe(b"data: 12345\r\n", 12));
        assert!(!size.observe(b"d", 12), "the next line makes 13");
        let mut size = EventSize::default();
        assert!(size.observe(b"data: 12345\r\n\r\ndata: 12345\n\n", 12));
        assert!(size.observe(b": a comment longer than the limit\n", 40));
        assert!(size.observe(b"data: 1234\r", 12));
        assert!(
            size.observe(b"\ndata", 15),
            "the LF of a split CRLF is no blank line"
        );
        assert!(!size.observe(b"x", 15), "11 kept and a line of 5");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let port = mcp_group_test_kit::free_port();
        let transport =
            SseTransport::new(HttpConfig::new(format!("http://127.0.0.1:{port}/sse")).unwrap())
                .unwrap();
        let err = transport
            .connect(&mcp_group_core::SessionId::new("s").into())
            .await
            .unwrap_err();
        assert!(matches!(err, CoreError::Connect { .. }), "{err:?}");
    }
}
