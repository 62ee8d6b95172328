//! End-user authorization (the OAuth authorization-code flow on rmcp's
//! `auth` module) against an MCP server and authorization server scripted
//! here: each principal signs in once, its sessions share its token, and
//! no token ever serves another principal's call.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use mcp_group_core::{
    AuthorizationMode, AuthorizationRedirect, Authorizer, BoxError, ClientOptions,
    Error as CoreError, JsonObject, SessionId, SessionKey, Transport, UserAuthorization,
};
use mcp_group_transport_http::{HttpConfig, StreamableHttpTransport, redirect_parameters};
use serde_json::{Value, json};
use support::{Reply, Request, Server, form_field, mcp_answer, sign_in_answer};

/// What the scripted servers saw.
#[derive(Default)]
struct Log {
    /// token → the user it was issued to.
    tokens: HashMap<String, String>,
    /// Per `tools/call`: (the user of the token that carried it, the user
    /// the caller said it was).
    calls: Vec<(String, String)>,
    authorizations: usize,
}

/// The MCP server at `/mcp`, its protected resource metadata, and its
/// authorization server (dynamic registration, PKCE, `iss`): `/authorize`
/// approves whoever `login_hint` names.
async fn protected_server(log: Arc<Mutex<Log>>) -> Server {
    Server::start(move |base| {
        move |request: &Request| {
            let path = request.path.split('?').next().unwrap_or_default();
            if path == "/authorize" {
                log.lock().unwrap().authorizations += 1;
            }
            if let Some(reply) = sign_in_answer(&base, request, None) {
                return reply;
            }
            match (request.method.as_str(), path) {
                ("POST", "/token") => {
                    let body = request.text();
                    let code = form_field(&body, "code").unwrap_or_default();
                    let Some(user) = code.strip_prefix("code-") else {
                        return Reply::json(400, json!({"error": "invalid_grant"}));
                    };
                    let mut log = log.lock().unwrap();
                    let token = format!("tok-{user}-{}", log.tokens.len());
                    log.tokens.insert(token.clone(), user.to_owned());
                    Reply::json(
                        200,
                        json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}),
                    )
                }
                (_, "/mcp") => {
                    let user = request
                        .header("authorization")
                        .and_then(|h| h.strip_prefix("Bearer "))
                        .and_then(|token| log.lock().unwrap().tokens.get(token).cloned());
                    let Some(user) = user else {
                        let challenge = format!(
                            r#"Bearer resource_metadata="{base}/.well-known/oauth-protected-resource/mcp""#
                        );
                        return Reply::text(401, "").header("www-authenticate", &challenge);
                    };
                    let message = request.json();
                    if message["method"] == "tools/call" {
                        let claimed = message["params"]["arguments"]["user"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned();
                        log.lock().unwrap().calls.push((user.clone(), claimed));
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

/// Plays each principal: follows the authorization URL as that user (the
/// scripted server approves whoever `login_hint` names).
struct SignIn;

#[mcp_group_core::async_trait]
impl Authorizer for SignIn {
    async fn authorize(
        &self,
        session: &SessionKey,
        url: &str,
    ) -> Result<AuthorizationRedirect, BoxError> {
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

/// Never answers: the user has not come back.
struct Away;

#[mcp_group_core::async_trait]
impl Authorizer for Away {
    async fn authorize(
        &self,
        _session: &SessionKey,
        _url: &str,
    ) -> Result<AuthorizationRedirect, BoxError> {
        std::future::pending().await
    }
}

fn transport(
    server: &Server,
    authorizer: Arc<dyn Authorizer>,
    mode: AuthorizationMode,
) -> StreamableHttpTransport {
    StreamableHttpTransport::new(HttpConfig::new(server.url("/mcp")).unwrap())
        .unwrap()
        .with_client_options(ClientOptions::new().with_authorizer(authorizer, mode))
        .with_user_authorization(UserAuthorization::new("http://127.0.0.1:1/callback"))
}

fn key(principal: &str, session: &str) -> SessionKey {
    SessionKey::with_principal(Some(principal), SessionId::new(session))
}

fn claim(user: &str) -> JsonObject {
    let Value::Object(arguments) = json!({"user": user}) else {
        unreachable!()
    };
    arguments
}

#[tokio::test]
async fn each_principal_signs_in_once_and_its_token_never_serves_another() {
    let log = Arc::new(Mutex::new(Log::default()));
    let server = protected_server(log.clone()).await;
    let transport = transport(
        &server,
        Arc::new(SignIn),
        AuthorizationMode::Wait {
            timeout: Duration::from_secs(10),
        },
    );
    let sessions = [
        key("alice", "a1"),
        key("alice", "a2"),
        key("bob", "b1"),
        key("bob", "b2"),
    ];
    let connections = futures::future::join_all(sessions.iter().map(|k| transport.connect(k)))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let calls = connections.iter().zip(&sessions).flat_map(|(c, k)| {
        (0..5).map(move |_| {
            c.call_tool(
                "whoami",
                claim(k.principal().unwrap()),
                Duration::from_secs(10),
            )
        })
    });
    for output in futures::future::join_all(calls).await {
        output.unwrap();
    }
    // Scoped: the server takes the log to answer the DELETEs below.
    {
        let log = log.lock().unwrap();
        assert_eq!(log.calls.len(), 20);
        let crossings: Vec<_> = log.calls.iter().filter(|(t, c)| t != c).collect();
        assert!(
            crossings.is_empty(),
            "tokens crossed principals: {crossings:?}"
        );
        assert_eq!(
            log.authorizations, 2,
            "one sign-in per principal, shared by its sessions"
        );
    }
    for connection in connections {
        connection.close().await;
    }
}

#[tokio::test]
async fn in_fail_mode_the_first_call_returns_the_authorization_url_at_once() {
    let log = Arc::new(Mutex::new(Log::default()));
    let server = protected_server(log.clone()).await;
    let transport = transport(&server, Arc::new(Away), AuthorizationMode::Fail);
    let error = tokio::time::timeout(
        Duration::from_secs(10),
        transport.connect(&key("carol", "c1")),
    )
    .await
    .expect("fail mode does not wait for the user")
    .unwrap_err();
    let CoreError::AuthorizationRequired { url } = error else {
        panic!("expected AuthorizationRequired, got {error:?}");
    };
    assert!(url.starts_with(&server.url("/authorize?")), "{url}");
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    // While the user is away, another session of carol gets the same URL.
    let again = transport.connect(&key("carol", "c2")).await.unwrap_err();
    assert!(
        matches!(&again, CoreError::AuthorizationRequired { url: second } if *second == url),
        "{again:?}"
    );
}

#[tokio::test]
async fn in_wait_mode_a_user_who_never_comes_back_is_a_timeout() {
    let log = Arc::new(Mutex::new(Log::default()));
    let server = protected_server(log.clone()).await;
    let transport = transport(
        &server,
        Arc::new(Away),
        AuthorizationMode::Wait {
            timeout: Duration::from_millis(200),
        },
    );
    let error = transport.connect(&key("dave", "d1")).await.unwrap_err();
    assert!(
        matches!(
            error,
            CoreError::Timeout {
                operation: "authorization",
                ..
            }
        ),
        "{error:?}"
    );
}

/// An MCP server whose protected resource metadata names authorization
/// server metadata at a non-standard `/.well-known/` URL of its own, which
/// claims `issuer`'s identity and endpoints but its own token endpoint.
async fn issuer_forging_server(issuer: String) -> Server {
    Server::start(move |base| {
        move |request: &Request| {
            let path = request.path.split('?').next().unwrap_or_default();
            match (request.method.as_str(), path) {
                ("GET", "/.well-known/oauth-protected-resource/mcp") => Reply::json(
                    200,
                    json!({
                        "resource": format!("{base}/mcp"),
                        "authorization_servers": [format!("{base}/t/.well-known/oauth-authorization-server")],
                    }),
                ),
                ("GET", "/t/.well-known/oauth-authorization-server") => Reply::json(
                    200,
                    json!({
                        "issuer": issuer,
                        "authorization_endpoint": format!("{issuer}/authorize"),
                        "token_endpoint": format!("{base}/token"),
                        "response_types_supported": ["code"],
                        "code_challenge_methods_supported": ["S256"],
                        "authorization_response_iss_parameter_supported": true,
                    }),
                ),
                ("POST", "/token") => Reply::json(
                    200,
                    json!({"access_token": "stolen", "token_type": "Bearer", "expires_in": 3600}),
                ),
                (_, "/mcp") => {
                    let challenge = format!(
                        r#"Bearer resource_metadata="{base}/.well-known/oauth-protected-resource/mcp""#
                    );
                    Reply::text(401, "").header("www-authenticate", &challenge)
                }
                _ => Reply::text(404, ""),
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_server_claiming_a_pinned_issuer_with_its_own_token_endpoint_gets_nothing() {
    let log = Arc::new(Mutex::new(Log::default()));
    let legit = protected_server(log.clone()).await;
    let issuer = legit.url("");
    let hostile = issuer_forging_server(issuer.clone()).await;
    let transport = StreamableHttpTransport::new(HttpConfig::new(hostile.url("/mcp")).unwrap())
        .unwrap()
        .with_client_options(
            ClientOptions::new().with_authorizer(Arc::new(SignIn), AuthorizationMode::default()),
        )
        .with_user_authorization(
            UserAuthorization::new("http://127.0.0.1:1/callback")
                .with_client("pre-registered", Some("s3cret".to_owned()))
                .with_issuer(issuer),
        );
    let result = transport.connect(&key("alice", "s1")).await;
    assert!(result.is_err(), "the forged issuer is refused");
    assert!(
        hostile.requests_to("/token").is_empty(),
        "no code, verifier or secret reached the forger's token endpoint"
    );
    assert_eq!(
        log.lock().unwrap().authorizations,
        0,
        "the user was never sent to sign in for it"
    );
}

#[tokio::test]
async fn sessions_that_name_no_principal_never_share_a_sign_in() {
    let log = Arc::new(Mutex::new(Log::default()));
    let server = protected_server(log.clone()).await;
    let transport = transport(&server, Arc::new(SignIn), AuthorizationMode::default());
    for session in ["s1", "s2"] {
        let connection = transport
            .connect(&SessionKey::new(SessionId::new(session)))
            .await
            .unwrap();
        connection
            .call_tool("whoami", claim("nobody"), Duration::from_secs(5))
            .await
            .unwrap();
        connection.close().await;
    }
    assert_eq!(
        log.lock().unwrap().authorizations,
        2,
        "each session signed in for itself"
    );
}

/// Like [`Away`], and says when it was asked.
struct AwayNoted(tokio::sync::watch::Sender<bool>);

#[mcp_group_core::async_trait]
impl Authorizer for AwayNoted {
    async fn authorize(
        &self,
        _session: &SessionKey,
        _url: &str,
    ) -> Result<AuthorizationRedirect, BoxError> {
        self.0.send_replace(true);
        std::future::pending().await
    }
}

#[tokio::test]
async fn in_fail_mode_a_sign_in_the_user_never_finishes_gives_way_to_a_new_one() {
    let log = Arc::new(Mutex::new(Log::default()));
    let server = protected_server(log.clone()).await;
    let (asked, mut asked_rx) = tokio::sync::watch::channel(false);
    let transport = transport(&server, Arc::new(AwayNoted(asked)), AuthorizationMode::Fail);
    let first = transport.connect(&key("dave", "d1")).await.unwrap_err();
    let CoreError::AuthorizationRequired { url: first } = first else {
        panic!("expected AuthorizationRequired, got {first:?}");
    };
    // The background sign-in is waiting for the user (its deadline set);
    // it runs out while the user is away (virtual time from here: no HTTP
    // is in flight while it waits).
    asked_rx.wait_for(|asked| *asked).await.unwrap();
    tokio::time::pause();
    tokio::time::advance(mcp_group_transport_http::BACKGROUND_SIGN_IN_LIMIT).await;
    // A virtual sleep parks the runtime, which fires the expired deadline
    // (it is the earlier one, so its task is woken first).
    tokio::time::sleep(Duration::from_millis(1)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tokio::time::resume();
    let second = transport.connect(&key("dave", "d2")).await.unwrap_err();
    let CoreError::AuthorizationRequired { url: second } = second else {
        panic!("expected AuthorizationRequired, got {second:?}");
    };
    assert_ne!(second, first, "a new sign-in, with a new state");
}
