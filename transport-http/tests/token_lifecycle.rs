//! A token's life after sign-in, against an authorization server scripted
//! here that rotates refresh tokens (each works once; a second use is
//! recorded and refused): refresh happens once per expiry however many
//! calls need the token at that moment, no refresh token is used twice,
//! and a revoked grant leads to a new sign-in inside the call that hit it.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use mcp_group_core::{
    AuthorizationMode, AuthorizationRedirect, Authorizer, BoxError, ClientOptions, Connection,
    CredentialKey, Error as CoreError, JsonObject, SessionId, SessionKey, Transport,
    UserAuthorization,
};
use mcp_group_transport_http::{
    HttpConfig, InMemoryTokenStore, StreamableHttpTransport, TokenStore, redirect_parameters,
};
use serde_json::{Value, json};
use support::{Reply, Request, Server, form_field, mcp_answer, sign_in_answer};

/// The authorization server's and the MCP server's books.
#[derive(Default)]
struct Books {
    /// Live access tokens → their user.
    access: HashMap<String, String>,
    /// Live refresh tokens → their user.
    refresh: HashMap<String, String>,
    /// Every refresh token ever presented.
    presented: HashSet<String>,
    /// Refresh tokens presented a second time.
    reused: Vec<String>,
    /// Refresh requests at the token endpoint.
    refreshes: usize,
    /// Visits of the authorization endpoint.
    authorizations: usize,
    /// Per `tools/call`: the user of the token it carried.
    calls: Vec<String>,
    issued: usize,
}

impl Books {
    fn issue(&mut self, user: &str) -> Value {
        self.issued += 1;
        let access = format!("at-{user}-{}", self.issued);
        let refresh = format!("rt-{user}-{}", self.issued);
        self.access.insert(access.clone(), user.to_owned());
        self.refresh.insert(refresh.clone(), user.to_owned());
        json!({
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": 3600,
        })
    }

    /// The resource server stops accepting `user`'s access tokens.
    fn revoke_access(&mut self, user: &str) {
        self.access.retain(|_, u| u != user);
    }

    /// The whole grant goes: access and refresh tokens.
    fn revoke_grant(&mut self, user: &str) {
        self.revoke_access(user);
        self.refresh.retain(|_, u| u != user);
    }
}

async fn protected_server(books: Arc<Mutex<Books>>) -> Server {
    Server::start(move |base| {
        move |request: &Request| {
            let path = request.path.split('?').next().unwrap_or_default();
            if path == "/authorize" {
                books.lock().unwrap().authorizations += 1;
            }
            let grants: &[&str] = &["authorization_code", "refresh_token"];
            if let Some(reply) = sign_in_answer(&base, request, Some(grants)) {
                return reply;
            }
            match (request.method.as_str(), path) {
                ("POST", "/token") => {
                    let body = request.text();
                    let mut books = books.lock().unwrap();
                    let refused = Reply::json(400, json!({"error": "invalid_grant"}));
                    match form_field(&body, "grant_type").as_deref() {
                        Some("authorization_code") => {
                            let code = form_field(&body, "code").unwrap_or_default();
                            match code.strip_prefix("code-") {
                                Some(user) => Reply::json(200, books.issue(user)),
                                None => refused,
                            }
                        }
                        Some("refresh_token") => {
                            books.refreshes += 1;
                            let token = form_field(&body, "refresh_token").unwrap_or_default();
                            if !books.presented.insert(token.clone()) {
                                books.reused.push(token);
                                return refused;
                            }
                            match books.refresh.remove(&token) {
                                Some(user) => Reply::json(200, books.issue(&user)),
                                None => refused,
                            }
                        }
                        _ => refused,
                    }
                }
                (_, "/mcp") => {
                    let user = request
                        .header("authorization")
                        .and_then(|h| h.strip_prefix("Bearer "))
                        .and_then(|token| books.lock().unwrap().access.get(token).cloned());
                    let Some(user) = user else {
                        let challenge = format!(
                            r#"Bearer error="invalid_token", resource_metadata="{base}/.well-known/oauth-protected-resource/mcp""#
                        );
                        return Reply::text(401, "").header("www-authenticate", &challenge);
                    };
                    let message = request.json();
                    if message["method"] == "tools/call" {
                        books.lock().unwrap().calls.push(user.clone());
                        let result = json!({"content": [{"type": "text", "text": user}]});
                        return Reply::json(
                            200,
                            json!({"jsonrpc": "2.0", "id": message["id"], "result": result}),
                        );
                    }
                    mcp_answer(request).unwrap_or_else(|| Reply::text(400, ""))
                }
                _ => Reply::text(404, ""),
            }
        }
    })
    .await
}

/// Follows the authorization URL as the session's principal (the scripted
/// server approves whoever `login_hint` names); with a gate, only once the
/// test opens it.
#[derive(Default)]
struct SignIn {
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

#[mcp_group_core::async_trait]
impl Authorizer for SignIn {
    async fn authorize(
        &self,
        session: &SessionKey,
        url: &str,
    ) -> Result<AuthorizationRedirect, BoxError> {
        if let Some(gate) = &self.gate {
            gate.acquire().await?.forget();
        }
        let user = session.principal().unwrap_or("nobody");
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let response = client
            .get(format!("{url}&login_hint={user}"))
            .send()
            .await?;
        let location = response.headers()["location"].to_str()?.to_owned();
        Ok(redirect_parameters(&location)?)
    }
}

struct Fixture {
    books: Arc<Mutex<Books>>,
    server: Server,
    store: Arc<InMemoryTokenStore>,
    transport: StreamableHttpTransport,
}

async fn fixture(authorizer: SignIn, mode: AuthorizationMode) -> Fixture {
    let books = Arc::new(Mutex::new(Books::default()));
    let server = protected_server(books.clone()).await;
    let store = Arc::new(InMemoryTokenStore::default());
    let transport = StreamableHttpTransport::new(HttpConfig::new(server.url("/mcp")).unwrap())
        .unwrap()
        .with_client_options(ClientOptions::new().with_authorizer(Arc::new(authorizer), mode))
        .with_user_authorization(UserAuthorization::new("http://127.0.0.1:1/callback"))
        .with_token_store(store.clone());
    Fixture {
        books,
        server,
        store,
        transport,
    }
}

const WAIT: AuthorizationMode = AuthorizationMode::Wait {
    timeout: Duration::from_secs(10),
};

fn alice() -> SessionKey {
    SessionKey::with_principal(Some("alice"), SessionId::new("a1"))
}

async fn call(connection: &Connection) -> Result<String, CoreError> {
    let output = connection
        .call_tool("whoami", JsonObject::new(), Duration::from_secs(10))
        .await?;
    Ok(format!("{output:?}"))
}

impl Fixture {
    /// Makes alice's stored token look two hours old (it lives one).
    async fn expire(&self) {
        let key = CredentialKey::new(Some("alice"), self.server.url(""), self.server.url("/mcp"));
        let slot = self.store.slot(&key);
        let mut credentials = slot.load().await.unwrap().expect("alice has a token");
        credentials.token_received_at = credentials.token_received_at.map(|t| t - 7_200);
        slot.save(credentials).await.unwrap();
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap()
    }
}

async fn calls_at_once(connection: &Connection, n: usize) {
    let calls = (0..n).map(|_| call(connection));
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
}

#[tokio::test]
async fn refresh_happens_once_per_expiry_under_64_concurrent_calls() {
    let f = fixture(SignIn::default(), WAIT).await;
    let connection = f.transport.connect(&alice()).await.unwrap();
    call(&connection).await.unwrap();
    for round in 1..=3 {
        f.expire().await;
        calls_at_once(&connection, 64).await;
        let books = f.books();
        assert_eq!(books.refreshes, round, "one refresh per expiry");
        assert!(books.reused.is_empty(), "reused: {:?}", books.reused);
    }
    let books = f.books();
    assert_eq!(books.authorizations, 1);
    assert_eq!(books.calls.len(), 1 + 3 * 64);
    assert!(books.calls.iter().all(|user| user == "alice"));
}

#[tokio::test]
async fn transports_sharing_a_store_never_use_a_refresh_token_twice() {
    // Two transports (two processes, say) on one store: the second finds
    // the first one's token there instead of asking the user.
    let f = fixture(SignIn::default(), WAIT).await;
    let other = StreamableHttpTransport::new(HttpConfig::new(f.server.url("/mcp")).unwrap())
        .unwrap()
        .with_client_options(
            ClientOptions::new().with_authorizer(Arc::new(SignIn::default()), WAIT),
        )
        .with_user_authorization(UserAuthorization::new("http://127.0.0.1:1/callback"))
        .with_token_store(f.store.clone());
    let first = f.transport.connect(&alice()).await.unwrap();
    let second = other.connect(&alice()).await.unwrap();
    for round in 1..=3 {
        f.expire().await;
        futures::join!(calls_at_once(&first, 32), calls_at_once(&second, 32));
        let books = f.books();
        assert!(books.reused.is_empty(), "reused: {:?}", books.reused);
        assert!(
            books.refreshes <= 2 * round,
            "{} refreshes",
            books.refreshes
        );
    }
    assert_eq!(f.books().authorizations, 1, "one sign-in for both");
}

#[tokio::test]
async fn a_refused_access_token_is_refreshed_once_for_all_the_calls_it_failed() {
    let f = fixture(SignIn::default(), WAIT).await;
    let connection = f.transport.connect(&alice()).await.unwrap();
    call(&connection).await.unwrap();
    for round in 1..=3 {
        f.books().revoke_access("alice");
        calls_at_once(&connection, 64).await;
        let books = f.books();
        assert_eq!(books.refreshes, round, "one refresh per refusal");
        assert!(books.reused.is_empty(), "reused: {:?}", books.reused);
        assert_eq!(books.authorizations, 1, "a refresh, not a new sign-in");
    }
}

#[tokio::test]
async fn a_revoked_grant_signs_the_user_in_again_inside_the_call_that_hit_it() {
    let f = fixture(SignIn::default(), WAIT).await;
    let connection = f.transport.connect(&alice()).await.unwrap();
    call(&connection).await.unwrap();
    f.books().revoke_grant("alice");
    calls_at_once(&connection, 16).await;
    let books = f.books();
    assert_eq!(books.authorizations, 2, "one new sign-in for all 16 calls");
    assert_eq!(books.refreshes, 1, "the refused refresh token, tried once");
    assert!(books.reused.is_empty(), "reused: {:?}", books.reused);
    assert_eq!(books.calls.len(), 17);
}

#[tokio::test]
async fn in_fail_mode_a_revoked_grant_asks_for_the_user_and_the_session_lives_on() {
    let gate = Arc::new(tokio::sync::Semaphore::new(1));
    let f = fixture(
        SignIn {
            gate: Some(gate.clone()),
        },
        AuthorizationMode::Fail,
    )
    .await;
    let connection = f.transport.connect(&alice()).await.unwrap_err();
    // The first sign-in: the gate is open for it.
    let CoreError::AuthorizationRequired { .. } = connection else {
        panic!("expected AuthorizationRequired, got {connection:?}");
    };
    let connection = eventually_connected(&f.transport).await;
    call(&connection).await.unwrap();
    f.books().revoke_grant("alice");
    let error = call(&connection).await.unwrap_err();
    let CoreError::AuthorizationRequired { url } = &error else {
        panic!("expected AuthorizationRequired, got {error:?}");
    };
    assert!(url.starts_with(&f.server.url("/authorize?")), "{url}");
    assert!(!error.is_connection_lost());
    // The user comes back: the same connection serves calls again.
    gate.add_permits(1);
    eventually_served(&connection).await;
    assert_eq!(f.books().authorizations, 2);
}

/// Fail mode never waits for the user, so a test can only ask until the
/// background sign-in has landed (bounded: 10 s).
async fn eventually_connected(transport: &StreamableHttpTransport) -> Connection {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match transport.connect(&alice()).await {
                Ok(connection) => return connection,
                Err(CoreError::AuthorizationRequired { .. }) => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                Err(other) => panic!("{other:?}"),
            }
        }
    })
    .await
    .unwrap()
}

async fn eventually_served(connection: &Connection) {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match call(connection).await {
                Ok(_) => return,
                Err(CoreError::AuthorizationRequired { .. }) => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                Err(other) => panic!("{other:?}"),
            }
        }
    })
    .await
    .unwrap()
}
