//! End to end against a real OAuth-protected MCP server nobody here wrote
//! the OAuth of: the Python `mcp` 2.x SDK's authorization server and
//! bearer-token middleware (`tests/fixtures/py_auth_server.py`, on an
//! in-memory provider whose refresh tokens work once). Two end users:
//! each call carries only its user's token, refresh happens once per
//! expiry under 64 concurrent calls, and a revoked grant leads to a new
//! sign-in, not a dead session.
#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Duration};

use mcp_group_core::{
    AuthorizationMode, AuthorizationRedirect, Authorizer, BoxError, ClientOptions, Connection,
    CredentialKey, JsonObject, SessionId, SessionKey, Transport, UserAuthorization,
};
use mcp_group_test_kit::{
    fixtures::{PYTHON, fixture, workspace_root},
    process::ServerProcess,
};
use mcp_group_transport_http::{
    HttpConfig, InMemoryTokenStore, StreamableHttpTransport, TokenStore, redirect_parameters,
};
use serde_json::Value;

fn python_auth_server() -> ServerProcess {
    let script = workspace_root().join("tests/fixtures/py_auth_server.py");
    ServerProcess::start(fixture(PYTHON), &[script.to_str().unwrap(), "{port}"], None)
}

/// The session's principal at the browser: follows the authorization URL
/// to the fixture's sign-in page and signs in as that user.
struct Browser;

#[mcp_group_core::async_trait]
impl Authorizer for Browser {
    async fn authorize(
        &self,
        session: &SessionKey,
        url: &str,
    ) -> Result<AuthorizationRedirect, BoxError> {
        let user = session.principal().unwrap_or("nobody");
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let consent = browser.get(url).send().await?;
        let login = consent.headers()["location"].to_str()?.to_owned();
        let approved = browser.get(format!("{login}&user={user}")).send().await?;
        let callback = approved.headers()["location"].to_str()?;
        Ok(redirect_parameters(callback)?)
    }
}

fn transport(server: &ServerProcess, store: Arc<InMemoryTokenStore>) -> StreamableHttpTransport {
    StreamableHttpTransport::new(HttpConfig::new(server.url("/mcp")).unwrap())
        .unwrap()
        .with_client_options(ClientOptions::new().with_authorizer(
            Arc::new(Browser),
            AuthorizationMode::Wait {
                timeout: Duration::from_secs(20),
            },
        ))
        .with_user_authorization(UserAuthorization::new("http://127.0.0.1:1/callback"))
        .with_token_store(store)
}

fn key(principal: &str, session: &str) -> SessionKey {
    SessionKey::with_principal(Some(principal), SessionId::new(session))
}

async fn whoami(connection: &Connection) -> String {
    connection
        .call_tool("whoami", JsonObject::new(), Duration::from_secs(20))
        .await
        .unwrap()
        .to_text()
}

async fn books(server: &ServerProcess) -> Value {
    reqwest::get(server.url("/test/books"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn two_users_calls_carry_only_their_own_token_and_a_revoked_grant_signs_in_again() {
    let server = python_auth_server();
    let transport = transport(&server, Arc::new(InMemoryTokenStore::default()));
    let sessions = [
        key("alice", "a1"),
        key("alice", "a2"),
        key("bob", "b1"),
        key("bob", "b2"),
    ];
    let connections = futures::future::try_join_all(sessions.iter().map(|k| transport.connect(k)))
        .await
        .unwrap();
    let calls = connections
        .iter()
        .zip(&sessions)
        .flat_map(|(c, k)| (0..8).map(move |_| async move { (k, whoami(c).await) }));
    for (key, user) in futures::future::join_all(calls).await {
        assert_eq!(
            Some(user.as_str()),
            key.principal(),
            "a token crossed users"
        );
    }
    assert_eq!(books(&server).await["sign_ins"], 2, "one sign-in per user");

    // Alice's grant is revoked: her next calls sign her in again and
    // succeed, on the same connections; bob is untouched.
    reqwest::Client::new()
        .post(server.url("/test/revoke?user=alice"))
        .send()
        .await
        .unwrap();
    let calls = connections
        .iter()
        .zip(&sessions)
        .map(|(c, k)| async move { (k, whoami(c).await) });
    for (key, user) in futures::future::join_all(calls).await {
        assert_eq!(Some(user.as_str()), key.principal());
    }
    let after_revoke = books(&server).await;
    assert_eq!(after_revoke["sign_ins"], 3, "alice signed in again, once");
    assert_eq!(after_revoke["reused"], serde_json::json!([]));

    // The server is known to be modern now: new sessions share one client,
    // and each call still carries its own user's token (and no sign-in more).
    let later = [key("alice", "a3"), key("bob", "b3"), key("carol", "c1")];
    let shares = futures::future::try_join_all(later.iter().map(|k| transport.connect(k)))
        .await
        .unwrap();
    assert!(shares.iter().all(Connection::is_share));
    let calls = shares
        .iter()
        .zip(&later)
        .flat_map(|(c, k)| (0..8).map(move |_| async move { (k, whoami(c).await) }));
    for (key, user) in futures::future::join_all(calls).await {
        assert_eq!(
            Some(user.as_str()),
            key.principal(),
            "a token crossed users on the shared client"
        );
    }
    assert_eq!(books(&server).await["sign_ins"], 4, "only carol signed in");
    for connection in connections.into_iter().chain(shares) {
        connection.close().await;
    }
}

#[tokio::test]
async fn refresh_happens_once_per_expiry_under_64_concurrent_calls() {
    let server = python_auth_server();
    let store = Arc::new(InMemoryTokenStore::default());
    let transport = transport(&server, store.clone());
    let connection = transport.connect(&key("alice", "a1")).await.unwrap();
    assert_eq!(whoami(&connection).await, "alice");
    let slot = store.slot(&CredentialKey::new(
        Some("alice"),
        server.url(""),
        server.url("/mcp"),
    ));
    for round in 1..=2 {
        // Two hours on, for the client: the token it holds has expired.
        let mut credentials = slot.load().await.unwrap().expect("alice's token is stored");
        credentials.token_received_at = credentials.token_received_at.map(|t| t - 7_200);
        slot.save(credentials).await.unwrap();
        let calls = (0..64).map(|_| whoami(&connection));
        for user in futures::future::join_all(calls).await {
            assert_eq!(user, "alice");
        }
        let books = books(&server).await;
        assert_eq!(books["refreshes"], round, "one refresh per expiry");
        assert_eq!(books["reused"], serde_json::json!([]));
    }
    assert_eq!(books(&server).await["sign_ins"], 1);
    connection.close().await;
}
