//! OAuth client credentials against authorization servers scripted here,
//! honest and hostile: discovery is validated (RFC 9728 §3.3, RFC 8414 §3.3,
//! https except on loopback) before any secret or signed assertion leaves.
#![allow(clippy::unwrap_used)]

mod support;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use mcp_group_core::{ClientCredentials, Error as CoreError, SessionId, Transport};
use mcp_group_transport_http::{Error, HttpConfig, StreamableHttpTransport};
use serde_json::{Value, json};
use support::{Reply, Request, Server, mcp_answer};

/// What the scripted MCP server and its authorization server (one origin)
/// answer; each test changes what it needs.
struct Script {
    /// The `resource_metadata` of the `401`'s challenge.
    hint: Option<String>,
    /// Protected resource metadata, at the path-inserted well-known URL.
    resource: Value,
    /// Authorization server metadata, at the well-known URL of the issuer
    /// `http://127.0.0.1:PORT`.
    server: Value,
    token_status: u16,
    token_body: Vec<u8>,
    /// The answer of an enterprise identity provider at `/idp/token`.
    idp_body: Value,
}

const TOKEN: &str = "tok-123";

/// The MCP server at `/mcp` (it wants `Bearer tok-123`), its metadata and
/// its authorization server, as `tweak` leaves them.
async fn protected_server(tweak: impl FnOnce(&str, &mut Script)) -> Server {
    Server::start(|base| {
        let mut script = Script {
            hint: Some(format!("{base}/.well-known/oauth-protected-resource/mcp")),
            resource: json!({"resource": format!("{base}/mcp"), "authorization_servers": [base]}),
            server: json!({
                "issuer": base,
                "token_endpoint": format!("{base}/token"),
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
            }),
            token_status: 200,
            token_body: json!({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600})
                .to_string()
                .into_bytes(),
            idp_body: Value::Null,
        };
        tweak(&base, &mut script);
        move |request: &Request| match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/.well-known/oauth-protected-resource/mcp") => {
                Reply::json(200, script.resource.clone())
            }
            ("GET", "/.well-known/oauth-authorization-server") => {
                Reply::json(200, script.server.clone())
            }
            ("POST", "/idp/token") => Reply::json(200, script.idp_body.clone()),
            ("POST", "/token") => Reply::Full {
                status: script.token_status,
                headers: vec![("content-type".into(), "application/json".into())],
                body: script.token_body.clone(),
            },
            (_, "/mcp") if request.header("authorization") == Some(&format!("Bearer {TOKEN}")) => {
                mcp_answer(request).unwrap_or_else(|| Reply::text(400, ""))
            }
            (_, "/mcp") => {
                let challenge = match &script.hint {
                    Some(hint) => format!(r#"Bearer resource_metadata="{hint}""#),
                    None => "Bearer".to_owned(),
                };
                Reply::text(401, "").header("www-authenticate", &challenge)
            }
            _ => Reply::text(404, ""),
        }
    })
    .await
}

fn secret() -> ClientCredentials {
    ClientCredentials {
        client_id: "agent".into(),
        client_secret: "s3cret-value".into(),
        ..ClientCredentials::default()
    }
}

/// A fresh ES256 key, PKCS#8 PEM.
fn private_key() -> ClientCredentials {
    use aws_lc_rs::{
        rand::SystemRandom,
        signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair},
    };
    let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .unwrap();
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    ClientCredentials {
        client_id: "agent".into(),
        private_key_pem: Some(format!(
            "-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"
        )),
        ..ClientCredentials::default()
    }
}

async fn connect(server: &Server, credentials: ClientCredentials) -> Result<(), CoreError> {
    let transport = StreamableHttpTransport::new(HttpConfig::new(server.url("/mcp")).unwrap())
        .unwrap()
        .with_client_credentials(credentials);
    transport
        .connect(&SessionId::new("s").into())
        .await
        .map(|_| ())
}

/// The HTTP transport's error behind a failed connect.
fn oauth_error(result: Result<(), CoreError>) -> Error {
    match result {
        Err(CoreError::Connect { source, .. } | CoreError::Start { source, .. }) => {
            match source.downcast::<Error>() {
                Ok(error) => *error,
                Err(other) => panic!("not the transport's error: {other:?}"),
            }
        }
        other => panic!("expected a failed connect, got {other:?}"),
    }
}

/// The claims of the JWT assertion in a token request's form.
fn assertion_claims(request: &Request) -> Value {
    let form = request.text();
    let assertion = form
        .split('&')
        .find_map(|pair| pair.strip_prefix("client_assertion="))
        .unwrap();
    let claims = assertion.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap()
}

#[tokio::test]
async fn an_honest_server_gets_a_secret_by_basic_auth_and_an_assertion_for_its_issuer() {
    let server = protected_server(|_, _| {}).await;
    connect(&server, secret()).await.unwrap();
    let token_requests = server.requests_to("/token");
    assert_eq!(token_requests.len(), 1);
    assert!(
        token_requests[0]
            .header("authorization")
            .is_some_and(|h| h.starts_with("Basic ")),
        "{token_requests:?}"
    );

    let server = protected_server(|_, _| {}).await;
    connect(&server, private_key()).await.unwrap();
    let token_requests = server.requests_to("/token");
    assert_eq!(assertion_claims(&token_requests[0])["aud"], server.url(""));
}

#[tokio::test]
async fn a_token_endpoint_on_another_origin_over_plain_http_is_refused_and_never_contacted() {
    let elsewhere = Server::recorder().await;
    // 0.0.0.0 reaches this host's listeners but is not a loopback name, so it
    // stands for a remote host here.
    let token_endpoint = format!("http://0.0.0.0:{}/token", elsewhere.port());
    let server = protected_server(|_, script| {
        script.server["token_endpoint"] = json!(token_endpoint);
    })
    .await;

    let err = oauth_error(connect(&server, secret()).await);

    assert!(
        matches!(&err, Error::OAuthInsecureUrl { what: "token endpoint", url } if *url == token_endpoint),
        "{err:?}"
    );
    assert!(
        elsewhere.requests().is_empty(),
        "{:?}",
        elsewhere.requests()
    );
}

#[tokio::test]
async fn an_authorization_server_naming_another_issuer_is_refused_before_any_assertion() {
    // The metadata claims to be the real identity provider, so that a signed
    // assertion for it could be replayed there.
    let server = protected_server(|_, script| {
        script.server["issuer"] = json!("https://idp.example.com");
    })
    .await;

    let err = oauth_error(connect(&server, private_key()).await);

    assert!(
        matches!(&err, Error::OAuthIssuerMismatch { expected, found }
            if *expected == server.url("") && found == "https://idp.example.com"),
        "{err:?}"
    );
    assert!(server.requests_to("/token").is_empty());
}

#[tokio::test]
async fn protected_resource_metadata_for_another_resource_is_refused() {
    let server = protected_server(|_, script| {
        script.resource["resource"] = json!("https://evil.example.com/mcp");
    })
    .await;

    let err = oauth_error(connect(&server, secret()).await);

    assert!(
        matches!(&err, Error::OAuthResourceMismatch { found, .. } if found == "https://evil.example.com/mcp"),
        "{err:?}"
    );
    assert!(server.requests_to("/token").is_empty());
    assert!(
        server
            .requests_to("/.well-known/oauth-authorization-server")
            .is_empty()
    );
}

#[tokio::test]
async fn metadata_for_the_server_root_covers_its_paths_and_none_for_another_path() {
    let server = protected_server(|base, script| {
        script.resource["resource"] = json!(format!("{base}/"));
    })
    .await;
    connect(&server, secret()).await.unwrap();

    let server = protected_server(|base, script| {
        script.resource["resource"] = json!(format!("{base}/mcp-other"));
    })
    .await;
    let err = oauth_error(connect(&server, secret()).await);
    assert!(
        matches!(&err, Error::OAuthResourceMismatch { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_resource_metadata_hint_to_another_origin_over_http_is_refused() {
    let elsewhere = Server::recorder().await;
    let hint = elsewhere.url("/.well-known/oauth-protected-resource");
    let server = protected_server(|_, script| script.hint = Some(hint.clone())).await;

    let err = oauth_error(connect(&server, secret()).await);

    assert!(
        matches!(
            &err,
            Error::OAuthInsecureUrl {
                what: "resource_metadata hint",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        elsewhere.requests().is_empty(),
        "{:?}",
        elsewhere.requests()
    );
}

#[tokio::test]
async fn a_pinned_issuer_refuses_an_authorization_server_it_does_not_name() {
    let impostor = protected_server(|_, _| {}).await;
    let impostor_issuer = impostor.url("");
    let server = protected_server(|_, script| {
        script.resource["authorization_servers"] = json!([impostor_issuer]);
    })
    .await;
    let credentials = ClientCredentials {
        issuer: Some(server.url("")),
        ..secret()
    };

    let err = oauth_error(connect(&server, credentials).await);

    assert!(
        matches!(&err, Error::OAuthIssuerMismatch { expected, found }
            if *expected == server.url("") && *found == impostor.url("")),
        "{err:?}"
    );
    assert!(impostor.requests().is_empty(), "{:?}", impostor.requests());
}

#[tokio::test]
async fn a_pinned_token_endpoint_refuses_metadata_that_names_another() {
    let server = protected_server(|base, script| {
        script.server["token_endpoint"] = json!(format!("{base}/token-elsewhere"));
    })
    .await;
    let credentials = ClientCredentials {
        token_endpoint: Some(server.url("/token")),
        ..secret()
    };

    let err = oauth_error(connect(&server, credentials).await);

    assert!(
        matches!(&err, Error::OAuthTokenEndpointMismatch { expected, found }
            if *expected == server.url("/token") && *found == server.url("/token-elsewhere")),
        "{err:?}"
    );
    assert!(server.requests_to("/token-elsewhere").is_empty());
}

#[tokio::test]
async fn a_token_endpoint_error_shows_only_a_short_sanitized_excerpt() {
    let server = protected_server(|_, script| {
        script.token_status = 400;
        let mut body =
            b"\x1b[2J\x1b]0;owned\x07error: bad client s3cret-value\r\nforged log line".to_vec();
        body.extend(std::iter::repeat_n(b'x', 10_000));
        script.token_body = body;
    })
    .await;

    let err = oauth_error(connect(&server, secret()).await);

    let Error::OAuthToken { status, body, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*status, 400);
    assert!(
        body.chars().count() <= 200,
        "{} chars",
        body.chars().count()
    );
    assert!(!body.chars().any(char::is_control), "{body:?}");
    assert!(!body.contains("s3cret-value"), "{body:?}");
    assert!(body.contains("error: bad client"), "{body:?}");
}

#[tokio::test]
async fn a_token_said_to_live_u64_max_seconds_is_cached_without_a_panic() {
    let server = protected_server(|_, script| {
        script.token_body = format!(
            r#"{{"access_token": "{TOKEN}", "token_type": "Bearer", "expires_in": {}}}"#,
            u64::MAX
        )
        .into_bytes();
    })
    .await;
    let transport = StreamableHttpTransport::new(HttpConfig::new(server.url("/mcp")).unwrap())
        .unwrap()
        .with_client_credentials(secret());

    transport
        .connect(&SessionId::new("a").into())
        .await
        .unwrap();
    transport
        .connect(&SessionId::new("b").into())
        .await
        .unwrap();

    assert_eq!(server.requests_to("/token").len(), 1, "the token is cached");
}

#[tokio::test]
async fn a_client_secret_goes_to_an_authorization_server_on_another_host_only_if_pinned() {
    // The authorization server the MCP server names runs on another host
    // ("localhost" is not "127.0.0.1" as a name): an MCP server must not be
    // able to send our secret wherever it likes.
    let elsewhere = protected_server(|base, script| {
        script.server["issuer"] = json!(base.replace("127.0.0.1", "localhost"));
    })
    .await;
    let issuer = format!("http://localhost:{}", elsewhere.port());
    let server = protected_server(|base, script| {
        script.resource =
            json!({"resource": format!("{base}/mcp"), "authorization_servers": [issuer.clone()]});
    })
    .await;
    let error = oauth_error(connect(&server, secret()).await);
    assert!(
        matches!(error, Error::OAuthIssuerNotPinned { .. }),
        "{error:?}"
    );
    assert!(
        elsewhere.requests().is_empty(),
        "{:?}",
        elsewhere.requests()
    );
    // Pinned, it is trusted (and then fails later for unrelated reasons or
    // succeeds; what matters is that the pin admits it).
    let pinned = ClientCredentials {
        issuer: Some(issuer),
        ..secret()
    };
    let result = connect(&server, pinned).await;
    if let Err(CoreError::Connect { source, .. } | CoreError::Start { source, .. }) = &result {
        assert!(
            !matches!(
                source.downcast_ref::<Error>(),
                Some(Error::OAuthIssuerNotPinned { .. })
            ),
            "{result:?}"
        );
    }
}

/// The form of a request, decoded.
fn form(request: &Request) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{}", request.text()))
        .unwrap()
        .query_pairs()
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect()
}

fn field(form: &[(String, String)], name: &str) -> Option<String> {
    form.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
}

#[tokio::test]
async fn a_workload_jwt_is_sent_with_the_jwt_bearer_grant_as_a_public_client() {
    let server = protected_server(|_, _| {}).await;
    let credentials = ClientCredentials {
        client_id: "workload".into(),
        assertion: Some("header.claims.signature".into()),
        ..ClientCredentials::default()
    };
    connect(&server, credentials).await.unwrap();
    let request = &server.requests_to("/token")[0];
    let form = form(request);
    assert_eq!(
        field(&form, "grant_type").as_deref(),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    assert_eq!(
        field(&form, "assertion").as_deref(),
        Some("header.claims.signature")
    );
    assert_eq!(field(&form, "client_id").as_deref(), Some("workload"));
    assert_eq!(field(&form, "resource"), Some(server.url("/mcp")));
    assert!(
        request.header("authorization").is_none(),
        "no secret to send"
    );
}

#[tokio::test]
async fn a_workload_jwt_goes_to_no_unpinned_authorization_server_on_another_host() {
    let server = protected_server(|_, script| {
        script.resource["authorization_servers"] = json!(["http://localhost:1"]);
    })
    .await;
    let credentials = ClientCredentials {
        client_id: "workload".into(),
        assertion: Some("header.claims.signature".into()),
        ..ClientCredentials::default()
    };
    let error = oauth_error(connect(&server, credentials).await);
    assert!(
        matches!(error, Error::OAuthIssuerNotPinned { .. }),
        "{error:?}"
    );
}

/// An unsigned-looking ID-JAG (rmcp checks its claims, the authorization
/// server its signature).
fn id_jag(base: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header =
        URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "typ": "oauth-id-jag+jwt"}).to_string());
    let claims = URL_SAFE_NO_PAD.encode(
        json!({
            "iss": format!("{base}/idp"), "sub": "user", "aud": base,
            "resource": format!("{base}/mcp"), "client_id": "agent",
            "jti": "j1", "iat": now, "exp": now + 300,
        })
        .to_string(),
    );
    format!("{header}.{claims}.{}", URL_SAFE_NO_PAD.encode("sig"))
}

#[tokio::test]
async fn an_enterprise_identity_token_becomes_an_id_jag_then_an_access_token() {
    let server = protected_server(|base, script| {
        script.idp_body = json!({
            "access_token": id_jag(base),
            "issued_token_type": "urn:ietf:params:oauth:token-type:id-jag",
            "token_type": "N_A",
        });
    })
    .await;
    let credentials = ClientCredentials {
        client_id: "agent".into(),
        client_secret: "s3cret-value".into(),
        enterprise: Some(Box::new(mcp_group_core::EnterpriseIdentity {
            issuer: server.url("/idp"),
            token_endpoint: server.url("/idp/token"),
            client_id: "idp-client".into(),
            client_secret: None,
            id_token: "the-id-token".into(),
        })),
        ..ClientCredentials::default()
    };
    connect(&server, credentials).await.unwrap();
    let exchange = form(&server.requests_to("/idp/token")[0]);
    assert_eq!(
        field(&exchange, "grant_type").as_deref(),
        Some("urn:ietf:params:oauth:grant-type:token-exchange")
    );
    assert_eq!(
        field(&exchange, "subject_token").as_deref(),
        Some("the-id-token")
    );
    assert_eq!(
        field(&exchange, "requested_token_type").as_deref(),
        Some("urn:ietf:params:oauth:token-type:id-jag")
    );
    assert_eq!(field(&exchange, "audience"), Some(server.url("")));
    assert_eq!(field(&exchange, "resource"), Some(server.url("/mcp")));
    let grant = &server.requests_to("/token")[0];
    let form = form(grant);
    assert_eq!(
        field(&form, "grant_type").as_deref(),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    assert_eq!(field(&form, "assertion"), Some(id_jag_prefix(&form)));
    assert!(
        grant
            .header("authorization")
            .is_some_and(|h| h.starts_with("Basic ")),
        "client_secret_basic"
    );
}

/// The assertion sent is the ID-JAG the identity provider issued (its
/// claims carry a timestamp, so compare the header and claims' shape).
fn id_jag_prefix(form: &[(String, String)]) -> String {
    let assertion = field(form, "assertion").unwrap();
    let claims = assertion.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    assert_eq!(claims["client_id"], "agent");
    assertion
}
