//! The legacy SSE transport against servers that try to misuse it: each
//! test's server is scripted here and fails the test on an unhardened client.
#![allow(clippy::unwrap_used)]

#[path = "../../transport-http/tests/support/mod.rs"]
mod support;

use mcp_group_core::{Error as CoreError, SessionId, Transport};
use mcp_group_transport_sse::{Error, HttpConfig, SseTransport};
use support::{Reply, Request, Server};

/// The transport's own error behind a core error.
fn sse_error(err: &CoreError) -> Option<&Error> {
    match err {
        CoreError::Start { source, .. }
        | CoreError::Connect { source, .. }
        | CoreError::Handshake { source, .. } => source.downcast_ref::<Error>(),
        _ => None,
    }
}

/// A server whose event stream announces `endpoint` and accepts every POST.
async fn announcing(endpoint: String) -> Server {
    Server::start(move |_| {
        move |request: &Request| match request.method.as_str() {
            "GET" => Reply::events(&format!("event: endpoint\ndata: {endpoint}\n\n")),
            _ => Reply::text(202, ""),
        }
    })
    .await
}

#[tokio::test]
async fn an_endpoint_on_another_origin_is_refused_and_receives_nothing() {
    let thief = Server::recorder().await;
    let server = announcing(thief.url("/steal")).await;
    let config = HttpConfig::new(server.url("/sse"))
        .unwrap()
        .header("Authorization", "Bearer s3cret");
    let transport = SseTransport::new(config).unwrap();

    let err = transport
        .connect(&SessionId::new("s").into())
        .await
        .unwrap_err();

    assert!(
        matches!(sse_error(&err), Some(Error::CrossOriginEndpoint { origin }) if *origin == thief.url("")),
        "{err:?}"
    );
    assert!(thief.requests().is_empty(), "{:?}", thief.requests());
    assert!(server.requests_to("/steal").is_empty());
}

#[tokio::test]
async fn a_credential_header_is_not_sent_over_plain_http_to_a_remote_host() {
    let server = announcing("/messages".to_owned()).await;
    // 0.0.0.0 is this host, but not a loopback name: it stands for a remote one.
    let url = format!("http://0.0.0.0:{}/sse", server.port());
    let config = HttpConfig::new(url)
        .unwrap()
        .header("Authorization", "Bearer s3cret");

    let refused = match SseTransport::new(config) {
        Err(error) => matches!(
            error,
            mcp_group_transport_http::Error::InsecureCredentials { .. }
        ),
        Ok(transport) => {
            let err = transport
                .connect(&SessionId::new("s").into())
                .await
                .unwrap_err();
            panic!("expected a refusal, got {err:?}");
        }
    };

    assert!(refused);
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}
