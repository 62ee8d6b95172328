//! Servers that stall or flood: every request of the pool has a connect and
//! a read timeout, and OAuth discovery reads bodies up to a limit.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use mcp_group_core::{ClientCredentials, Error as CoreError, SessionId, SessionKey, Transport};
use mcp_group_transport_http::{Error, HttpConfig, StreamableHttpTransport};
use support::{Reply, Request, Server, mcp_answer};
use tokio::time::timeout;

/// Far longer than any bound below: a test that reaches it failed.
const HANG: Duration = Duration::from_secs(20);
const READ_TIMEOUT: Duration = Duration::from_millis(300);

fn transport(server: &Server) -> StreamableHttpTransport {
    let config = HttpConfig::new(server.url("/mcp"))
        .unwrap()
        .read_timeout(READ_TIMEOUT);
    StreamableHttpTransport::new(config).unwrap()
}

fn credentials() -> ClientCredentials {
    ClientCredentials {
        client_id: "agent".into(),
        client_secret: "secret".into(),
        ..ClientCredentials::default()
    }
}

/// A server that wants OAuth and answers its metadata request with `metadata`.
async fn oauth_server(metadata: fn() -> Reply) -> Server {
    Server::start(move |base| {
        move |request: &Request| match request.path.as_str() {
            "/mcp" => Reply::text(401, "").header(
                "www-authenticate",
                &format!(
                    r#"Bearer resource_metadata="{base}/.well-known/oauth-protected-resource/mcp""#
                ),
            ),
            "/.well-known/oauth-protected-resource/mcp" => metadata(),
            _ => Reply::text(404, ""),
        }
    })
    .await
}

#[tokio::test]
async fn an_oauth_metadata_request_never_answered_is_a_typed_timeout() {
    let server = oauth_server(|| Reply::Hang).await;
    let transport = transport(&server).with_client_credentials(credentials());

    let err = timeout(HANG, transport.connect(&SessionId::new("s").into()))
        .await
        .expect("the read timeout ends the wait")
        .unwrap_err();

    let CoreError::Connect { source, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(
        matches!(source.downcast_ref::<Error>(), Some(Error::OAuthRequest { source, .. }) if source.is_timeout()),
        "{err:?}"
    );
}

#[tokio::test]
async fn endless_oauth_metadata_is_refused_at_one_mib() {
    let server = oauth_server(|| Reply::Stream {
        content_type: "application/json",
        prefix: br#"{"resource": ""#.to_vec(),
        filler: vec![b'x'; 64 << 10],
        total: None,
    })
    .await;
    let transport = transport(&server).with_client_credentials(credentials());

    let err = timeout(HANG, transport.connect(&SessionId::new("s").into()))
        .await
        .expect("the body is not read to its end")
        .unwrap_err();

    let CoreError::Connect { source, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(
        matches!(source.downcast_ref::<Error>(), Some(Error::OAuthBodyTooLarge { limit, .. }) if *limit == 1 << 20),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_stalled_response_is_noticed_by_the_read_timeout() {
    let server = Server::start(|_| |_: &Request| Reply::Hang).await;

    let err = timeout(
        HANG,
        transport(&server).connect(&SessionId::new("s").into()),
    )
    .await
    .expect("the read timeout ends the wait")
    .unwrap_err();

    // rmcp keeps reqwest's error inside its own, without a source chain.
    assert!(
        matches!(&err, CoreError::Connect { .. }) && format!("{err:?}").contains("TimedOut"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_stalled_standalone_stream_is_noticed_and_reopened() {
    let (opened, mut streams) = tokio::sync::mpsc::unbounded_channel();
    let server = Server::start(move |_| {
        move |request: &Request| {
            if request.method == "GET" {
                // Headers, then silence.
                let _ = opened.send(());
                return Reply::events("");
            }
            mcp_answer(request).unwrap_or_else(|| Reply::text(400, ""))
        }
    })
    .await;

    let _connection = transport(&server)
        .connect(&SessionKey::default_session())
        .await
        .unwrap();

    for _ in 0..2 {
        timeout(HANG, streams.recv())
            .await
            .expect("the stalled stream is given up and opened again")
            .unwrap();
    }
}
