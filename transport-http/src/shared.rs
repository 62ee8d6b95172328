//! One rmcp client for every session of a 2026-07-28 server.
//!
//! In the 2026-07-28 era a request stands on its own: no handshake, no
//! `Mcp-Session-Id`, its `_meta` says who the client is. So after the first
//! connection has found a server modern, the transport opens one rmcp client
//! for the server (one `server/discover`) and gives each session a share of
//! it ([`mcp_group_core::Connection::share`]): a new session's first call is
//! its first request, and a thousand idle sessions cost a thousand small
//! handles rather than a thousand rmcp clients (six channels and a worker
//! task each).
//!
//! What still differs between sessions travels with each request: the
//! session's share tags every request with its [`Route`] — the session's own
//! headers (from the [`crate::HeaderProvider`]) and, with end-user
//! authorization, its user's [`AuthorizingClient`] — and [`SharedClient`],
//! the HTTP client under the shared rmcp client, sends each POST as its
//! route says. rmcp hands our client each outgoing message with the
//! extensions the request was sent with, which is where the tag is.
//!
//! A message without a tag carries no session's credentials: only the
//! configured headers (and a client-credentials token, which belongs to the
//! whole group). That covers what rmcp sends on its own — a response
//! stream's `GET` resumption, say — so nothing one session is owed can go
//! out on another's request. The one exception is the start-up exchange:
//! the `server/discover` that opens the shared client goes with the route of
//! the session that opened it (a server may want credentials for it), and
//! that route is dropped once the exchange is over.

use std::{collections::HashMap, sync::Arc};

use futures::stream::BoxStream;
use mcp_group_core::RequestTag;
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::{
    model::{ClientJsonRpcMessage, GetExtensions},
    transport::streamable_http_client::{
        StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
        StreamableHttpResponseLimits,
    },
};
use sse_stream::{Error as SseError, Sse};

use crate::{authorization::AuthorizingClient, oauth::TokenSource, standalone};

/// How many POSTs the shared client runs at once: in effect no bound.
/// rmcp's default, 16, is meant for one session; shared by every session,
/// any bound is one that a few sessions could fill for all the others (a
/// POST counts until its answer arrives or its response stream opens, and
/// one waiting for its user to sign in holds its place as long). What
/// bounds the POSTs instead is the callers: each request is one caller's,
/// ended by its timeout, and one user's are at most
/// [`crate::MAX_PRINCIPAL_REQUESTS`].
pub(crate) const SHARED_CONCURRENT_REQUESTS: usize = 1 << 20;

/// How one session's requests go out over the shared client.
pub(crate) struct Route {
    /// The session's own headers (from the header provider), sensitive.
    pub(crate) headers: HashMap<HeaderName, HeaderValue>,
    /// The session's user's authorization, with end-user authorization.
    pub(crate) auth: Option<AuthorizingClient<standalone::Client>>,
}

/// The group-wide client-credentials token of every request.
#[derive(Clone)]
pub(crate) struct GroupToken {
    pub(crate) source: Arc<TokenSource>,
    pub(crate) client: reqwest::Client,
    pub(crate) url: String,
}

/// The HTTP client under a shared rmcp client: each POST goes with the
/// route of the session whose request it is (see the [module docs](self)).
#[derive(Clone)]
pub(crate) struct SharedClient {
    pub(crate) inner: standalone::Client,
    /// The route of the session that opened the shared client, for the
    /// untagged start-up exchange only; `None` once that is over.
    pub(crate) startup: Arc<std::sync::Mutex<Option<Arc<Route>>>>,
    pub(crate) token: Option<GroupToken>,
}

type Result<T> = std::result::Result<T, StreamableHttpError<reqwest::Error>>;

impl SharedClient {
    /// The route a message goes with: its tag's, or while the start-up
    /// exchange runs, the opening session's.
    fn route(&self, message: &ClientJsonRpcMessage) -> Option<Arc<Route>> {
        let tagged = match message {
            ClientJsonRpcMessage::Request(request) => {
                RequestTag::find::<Route>(request.request.extensions())
            }
            _ => None,
        };
        tagged.or_else(|| match self.startup.lock() {
            Ok(startup) => startup.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        })
    }

    /// Ends the start-up exchange: untagged messages carry no session's
    /// headers from now on.
    pub(crate) fn end_startup(&self) {
        match self.startup.lock() {
            Ok(mut startup) => *startup = None,
            Err(poisoned) => *poisoned.into_inner() = None,
        }
    }

    /// Sends one POST as `route` says: with the user's authorization, or
    /// with the group's token.
    #[allow(clippy::too_many_arguments)]
    async fn post_on_route(
        &self,
        route: Option<&Arc<Route>>,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse> {
        match route.map(|route| &**route) {
            Some(Route {
                auth: Some(auth), ..
            }) => {
                let Ok(_permit) = auth.principal.in_flight.clone().try_acquire_owned() else {
                    return Err(StreamableHttpError::Io(std::io::Error::other(
                        mcp_group_core::Error::LimitExceeded {
                            what: "requests of one user in flight",
                            limit: crate::MAX_PRINCIPAL_REQUESTS,
                        },
                    )));
                };
                auth.post_message_with_response_limits(
                    uri,
                    message,
                    session_id,
                    None,
                    custom_headers,
                    limits,
                )
                .await
            }
            _ => {
                let auth_header = self.group_token(auth_header).await?;
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
            }
        }
    }

    /// The group's client-credentials token, if it has one.
    async fn group_token(&self, given: Option<String>) -> Result<Option<String>> {
        let Some(token) = &self.token else {
            return Ok(given);
        };
        token
            .source
            .token(&token.client, &token.url)
            .await
            .map_err(|e| StreamableHttpError::Io(std::io::Error::other(e)))
    }
}

impl StreamableHttpClient for SharedClient {
    type Error = reqwest::Error;

    crate::limited_variants!();

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        mut custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse> {
        let route = self.route(&message);
        if let Some(route) = &route {
            for (name, value) in &route.headers {
                custom_headers.insert(name.clone(), value.clone());
            }
        }
        let response = self
            .post_on_route(
                route.as_ref(),
                uri.clone(),
                message,
                session_id,
                auth_header.clone(),
                custom_headers.clone(),
                limits,
            )
            .await?;
        // A session's response stream is resumed with the session's own
        // credentials: rmcp's own resumption would go out untagged.
        Ok(match (response, route) {
            (StreamableHttpPostResponse::Sse(stream, id), Some(route)) => {
                // What names this one request stays off its resumption, as
                // rmcp's own resumption sends only the connection's headers.
                custom_headers.retain(|name, _| {
                    let name = name.as_str();
                    name != "mcp-method" && name != "mcp-name" && !name.starts_with("mcp-param-")
                });
                let resumer = Resumer {
                    client: self.clone(),
                    route,
                    uri,
                    headers: custom_headers,
                    auth_header,
                    max_sse_event_size: limits.max_sse_event_size,
                };
                StreamableHttpPostResponse::Sse(resuming(stream, resumer), id)
            }
            (response, _) => response,
        })
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<()> {
        let auth_header = self.group_token(auth_header).await?;
        self.inner
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
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
        let auth_header = self.group_token(auth_header).await?;
        self.inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}

/// How many resumptions of one response stream may fail, or bring no event
/// with a new id, in a row before the stream's failure stands.
const MAX_RESUMPTIONS: u32 = 3;

/// The shortest wait before a resumption, whatever the server's `retry`
/// says. rmcp reads a response stream for at most 50 ms after the
/// response; a resumption begun in that time is dropped with the stream.
const MIN_RESUME_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// The longest wait before a resumption, whatever the server's `retry`
/// says.
const MAX_RESUME_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// What resuming one session's response stream takes.
struct Resumer {
    client: SharedClient,
    route: Arc<Route>,
    uri: Arc<str>,
    headers: HashMap<HeaderName, HeaderValue>,
    auth_header: Option<String>,
    max_sse_event_size: usize,
}

impl Resumer {
    /// The stream again from after `last_event_id`, with the session's
    /// headers and credentials.
    async fn resume(&self, last_event_id: String) -> Result<BoxedSse> {
        match &self.route.auth {
            Some(auth) => {
                auth.resume_stream(
                    self.uri.clone(),
                    last_event_id,
                    &self.headers,
                    self.max_sse_event_size,
                )
                .await
            }
            None => {
                let auth_header = self.client.group_token(self.auth_header.clone()).await?;
                self.client
                    .inner
                    .get_stream_with_max_sse_event_size(
                        self.uri.clone(),
                        None,
                        Some(last_event_id),
                        auth_header,
                        self.headers.clone(),
                        self.max_sse_event_size,
                    )
                    .await
            }
        }
    }
}

type BoxedSse = BoxStream<'static, std::result::Result<Sse, SseError>>;

/// `first`, resumed (`GET` with `Last-Event-ID`, the session's own
/// headers and credentials) when the connection breaks or the stream ends
/// before the response, once the server has given an event id.
///
/// - The events go on to rmcp without their `id` and `retry`: rmcp then
///   never resumes the stream itself (its resumption would go out untagged,
///   without the session's headers).
/// - A resumption waits for the server's `retry`, or backs off from
///   200 ms, within [`MIN_RESUME_WAIT`]..=[`MAX_RESUME_WAIT`]; after
///   [`MAX_RESUMPTIONS`] in a row that fail or bring no new event id, or a
///   refusal of the credentials, the failure stands.
/// - An event over the size limit, or a stream that is not SSE, is not
///   resumed: it fails as it came.
/// - rmcp stops reading a response stream once the response has come, so
///   an end this stream reports is one before the response.
fn resuming(first: BoxedSse, resumer: Resumer) -> BoxedSse {
    use futures::StreamExt;
    struct State {
        stream: Option<BoxedSse>,
        last_event_id: Option<String>,
        retry_ms: Option<u64>,
        failures: u32,
        resumer: Resumer,
    }
    let state = State {
        stream: Some(first),
        last_event_id: None,
        retry_ms: None,
        failures: 0,
        resumer,
    };
    futures::stream::unfold(state, |mut state| async move {
        'read: loop {
            let broken = match state.stream.as_mut()?.next().await {
                Some(Ok(mut event)) => {
                    if let Some(id) = event.id.take().filter(|id| !id.is_empty()) {
                        if state.last_event_id.as_deref() != Some(id.as_str()) {
                            state.failures = 0;
                        }
                        state.last_event_id = Some(id);
                    }
                    if let Some(retry) = event.retry.take() {
                        state.retry_ms = Some(retry);
                    }
                    return Some((Ok(event), state));
                }
                broken => broken,
            };
            let last_event_id = match &state.last_event_id {
                Some(id) if resumable(&broken) => id.clone(),
                _ => {
                    state.stream = None;
                    return broken.map(|item| (item, state));
                }
            };
            while state.failures < MAX_RESUMPTIONS {
                state.failures += 1;
                tokio::time::sleep(resume_wait(state.retry_ms, state.failures)).await;
                match state.resumer.resume(last_event_id.clone()).await {
                    Ok(stream) => {
                        tracing::debug!(attempt = state.failures, "response stream resumed");
                        state.stream = Some(stream);
                        continue 'read;
                    }
                    Err(error) if refused(&error) => {
                        tracing::debug!(%error, "resuming a response stream was refused");
                        break;
                    }
                    Err(error) => {
                        tracing::debug!(%error, attempt = state.failures, "resuming a response stream failed");
                    }
                }
            }
            state.stream = None;
            return broken.map(|item| (item, state));
        }
    })
    .boxed()
}
/// Whether a response stream that broke this way is worth resuming: it
/// ended, or its connection failed — not an event over the size limit
/// (rmcp's limit error, known only by its text: its type is private) or
/// text that is not SSE.
fn resumable(broken: &Option<std::result::Result<Sse, SseError>>) -> bool {
    match broken {
        None => true,
        Some(Err(SseError::Body(error))) => {
            !error.to_string().contains("exceeded the maximum size")
        }
        Some(_) => false,
    }
}

/// Whether a failed resumption is final: the server refused the
/// credentials or does not resume streams.
fn refused(error: &StreamableHttpError<reqwest::Error>) -> bool {
    matches!(
        error,
        StreamableHttpError::AuthRequired(_)
            | StreamableHttpError::InsufficientScope(_)
            | StreamableHttpError::ServerDoesNotSupportSse
    ) || matches!(error, StreamableHttpError::Io(error) if error.get_ref().is_some())
}

/// How long to wait before resumption number `attempt` (from 1): the
/// server's `retry`, or 200 ms doubling, within
/// [`MIN_RESUME_WAIT`]..=[`MAX_RESUME_WAIT`].
fn resume_wait(retry_ms: Option<u64>, attempt: u32) -> std::time::Duration {
    let backoff = std::time::Duration::from_millis(100u64 << attempt.min(10));
    retry_ms
        .map(std::time::Duration::from_millis)
        .unwrap_or(backoff)
        .clamp(MIN_RESUME_WAIT, MAX_RESUME_WAIT)
}

#[cfg(test)]
mod tests {
    use rmcp::model::{ClientRequest, PingRequest, RequestId};

    use super::*;

    fn route(user: &str) -> Arc<Route> {
        let headers = crate::to_header_map([("x-end-user", user)]).unwrap_or_default();
        Arc::new(Route {
            headers,
            auth: None,
        })
    }

    fn client(startup: Arc<Route>) -> SharedClient {
        SharedClient {
            inner: standalone::Client {
                inner: reqwest::Client::new(),
                open_standalone: false,
                standalone_answered: Arc::new(tokio::sync::watch::Sender::new(false)),
            },
            startup: Arc::new(std::sync::Mutex::new(Some(startup))),
            token: None,
        }
    }

    fn ping(tag: Option<Arc<Route>>) -> ClientJsonRpcMessage {
        let mut request = ClientRequest::PingRequest(PingRequest::default());
        if let Some(route) = tag {
            request.extensions_mut().insert(RequestTag::new(route));
        }
        ClientJsonRpcMessage::request(request, RequestId::Number(1))
    }

    fn user(route: Option<Arc<Route>>) -> Option<String> {
        route.and_then(|route| {
            route
                .headers
                .values()
                .next()
                .and_then(|value| value.to_str().ok().map(str::to_owned))
        })
    }

    #[tokio::test]
    async fn a_user_with_too_many_requests_in_flight_is_refused_before_anything_is_sent() {
        use mcp_group_core::{AuthorizationMode, SessionKey, UserAuthorization};
        let http = crate::authorization::GuardedHttp {
            client: reqwest::Client::new(),
            allow_insecure_http: false,
        };
        let auth = Arc::new(crate::authorization::UserAuth::new(
            UserAuthorization::new("http://127.0.0.1:1/callback"),
            Arc::new(crate::FollowRedirect::new().unwrap()),
            AuthorizationMode::Fail,
            Arc::new(crate::InMemoryTokenStore::default()),
            "http://127.0.0.1:1/mcp".to_owned(),
            http,
        ));
        let key = SessionKey::with_principal(Some("mallory"), mcp_group_core::SessionId::new("s"));
        let principal = auth.principal(&key);
        let route = Arc::new(Route {
            headers: HashMap::new(),
            auth: Some(AuthorizingClient {
                inner: client(route("x")).inner,
                auth: auth.clone(),
                principal: principal.clone(),
                session: key,
            }),
        });
        // Every place of the user's is taken (by requests waiting for a
        // sign-in, say).
        let _taken = principal
            .in_flight
            .clone()
            .try_acquire_many_owned(crate::MAX_PRINCIPAL_REQUESTS as u32)
            .unwrap();
        let shared = client(route.clone());
        shared.end_startup();
        let result = shared
            .post_message(
                Arc::from("http://127.0.0.1:1/mcp"),
                ping(Some(route)),
                None,
                None,
                HashMap::new(),
            )
            .await;
        let Err(StreamableHttpError::Io(error)) = result else {
            panic!("the request was not refused as it should be")
        };
        assert!(error.to_string().contains("in flight"), "{error}");
    }

    #[test]
    fn a_resumption_waits_for_the_servers_retry_within_bounds() {
        use std::time::Duration;
        assert_eq!(resume_wait(None, 1), MIN_RESUME_WAIT);
        assert_eq!(resume_wait(None, 2), Duration::from_millis(400));
        assert_eq!(resume_wait(None, 40), MAX_RESUME_WAIT);
        assert_eq!(resume_wait(Some(3_000), 1), Duration::from_secs(3));
        assert_eq!(resume_wait(Some(0), 1), MIN_RESUME_WAIT);
        assert_eq!(resume_wait(Some(u64::MAX), 1), MAX_RESUME_WAIT);
    }

    #[test]
    fn only_an_ended_or_broken_connection_is_resumed() {
        let body = |text: &str| Some(Err(SseError::Body(text.into())));
        assert!(resumable(&None));
        assert!(resumable(&body("connection reset by peer")));
        assert!(!resumable(&body(
            "SSE event exceeded the maximum size of 16777216 bytes"
        )));
        assert!(!resumable(&Some(Err(SseError::InvalidLine))));
    }

    #[test]
    fn an_untagged_message_goes_with_the_opening_sessions_route_only_during_start_up() {
        let client = client(route("alice"));
        assert_eq!(user(client.route(&ping(None))).as_deref(), Some("alice"));
        client.end_startup();
        assert_eq!(user(client.route(&ping(None))), None);
    }

    #[test]
    fn a_tagged_message_goes_with_its_own_route_even_during_start_up() {
        let client = client(route("alice"));
        let bob = ping(Some(route("bob")));
        assert_eq!(user(client.route(&bob)).as_deref(), Some("bob"));
        client.end_startup();
        assert_eq!(user(client.route(&bob)).as_deref(), Some("bob"));
    }
}
