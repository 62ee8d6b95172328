//! Credentials never cross a network in the clear: a credential-bearing
//! header or an OAuth token is not sent over plain http to a host that is
//! not loopback, unless the configuration allows it.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use mcp_group_core::{ClientCredentials, Error as CoreError, SessionId, SessionKey, Transport};
use mcp_group_transport_http::{Error, HttpConfig, StreamableHttpTransport};
use support::{Reply, Request, Server, mcp_answer};

/// A server that answers MCP; reached through 0.0.0.0, which is this host
/// but not a loopback name, so it stands for a remote host.
async fn remote() -> (Server, String) {
    let server = Server::start(|_| {
        |request: &Request| mcp_answer(request).unwrap_or_else(|| Reply::text(400, ""))
    })
    .await;
    let url = format!("http://0.0.0.0:{}/mcp", server.port());
    (server, url)
}

/// Builds the transport and connects one session; the transport's own error
/// if either fails with one.
async fn attempt(
    config: HttpConfig,
    setup: impl FnOnce(StreamableHttpTransport) -> StreamableHttpTransport,
) -> Result<(), Error> {
    let transport = setup(StreamableHttpTransport::new(config)?);
    match transport.connect(&SessionId::new("s").into()).await {
        Ok(_) => Ok(()),
        Err(CoreError::Start { source, .. } | CoreError::Connect { source, .. }) => {
            Err(*source.downcast::<Error>().unwrap())
        }
        Err(other) => panic!("{other:?}"),
    }
}

fn refused_header(result: Result<(), Error>) -> String {
    match result {
        Err(Error::InsecureCredentials { header, .. }) => header,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_configured_credential_header_is_not_sent_over_plain_http_to_a_remote_host() {
    let (server, url) = remote().await;
    let config = HttpConfig::new(url)
        .unwrap()
        .header("Authorization", "Bearer s3cret");

    let header = refused_header(attempt(config, |t| t).await);

    assert_eq!(header, "Authorization");
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

#[tokio::test]
async fn a_per_session_credential_header_is_not_sent_over_plain_http_to_a_remote_host() {
    let (server, url) = remote().await;
    let provider = Arc::new(|_: &SessionKey| vec![("X-Api-Key".to_owned(), "k3y".to_owned())]);

    let header = refused_header(
        attempt(HttpConfig::new(url).unwrap(), |t| {
            t.with_header_provider(provider)
        })
        .await,
    );

    assert_eq!(header, "X-Api-Key");
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

#[tokio::test]
async fn oauth_is_not_used_over_plain_http_to_a_remote_host() {
    let (server, url) = remote().await;
    let credentials = ClientCredentials {
        client_id: "agent".into(),
        client_secret: "s3cret".into(),
        ..ClientCredentials::default()
    };

    refused_header(
        attempt(HttpConfig::new(url).unwrap(), |t| {
            t.with_client_credentials(credentials)
        })
        .await,
    );

    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

#[tokio::test]
async fn allow_insecure_http_sends_credentials_over_plain_http() {
    let (server, url) = remote().await;
    let config = HttpConfig::new(url)
        .unwrap()
        .header("Authorization", "Bearer s3cret")
        .allow_insecure_http(true);

    attempt(config, |t| t).await.unwrap();

    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer s3cret"))
    );
}

#[tokio::test]
async fn oauth_and_an_authorization_header_together_are_refused() {
    let server = Server::recorder().await;
    let config = HttpConfig::new(server.url("/mcp"))
        .unwrap()
        .header("authorization", "Bearer static");
    let credentials = ClientCredentials {
        client_id: "agent".into(),
        ..ClientCredentials::default()
    };

    let result = attempt(config, |t| t.with_client_credentials(credentials)).await;

    assert!(
        matches!(result, Err(Error::ConflictingAuthorization)),
        "{result:?}"
    );
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

#[tokio::test]
async fn the_configured_url_goes_on_the_wire_unredacted() {
    let server = Server::start(|_| {
        |request: &Request| mcp_answer(request).unwrap_or_else(|| Reply::text(400, ""))
    })
    .await;
    let config = HttpConfig::new(server.url("/mcp?tenant=acme")).unwrap();
    attempt(config, |t| t).await.unwrap();
    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert!(!paths.is_empty());
    assert!(
        paths.iter().all(|p| p == "/mcp?tenant=acme"),
        "every request carries the configured query: {paths:?}"
    );
}

#[tokio::test]
async fn userinfo_in_the_url_is_a_credential_not_sent_over_plain_http_to_a_remote_host() {
    let (server, url) = remote().await;
    let url = url.replacen("http://", "http://user:pa55@", 1);
    let result = attempt(HttpConfig::new(url).unwrap(), |t| t).await;
    assert!(
        matches!(result, Err(Error::InsecureCredentials { .. })),
        "{result:?}"
    );
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}
