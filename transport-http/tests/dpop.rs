//! DPoP (RFC 9449) for end users' tokens against an authorization server
//! and MCP server scripted here, both demanding a nonce: the token request
//! carries a proof and is retried with the server's nonce, and every MCP
//! request presents the token in the `DPoP` scheme with a fresh proof bound
//! to the token (`ath`) and the MCP server's nonce.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use mcp_group_core::{
    AuthorizationMode, ClientOptions, SessionId, SessionKey, Transport, UserAuthorization,
};
use mcp_group_transport_http::{FollowRedirect, HttpConfig, StreamableHttpTransport};
use serde_json::{Value, json};
use support::{Reply, Request, Server, mcp_answer, query};

const TOKEN: &str = "dpop-bound-token";
const AS_NONCE: &str = "as-nonce-1";
const RS_NONCE: &str = "rs-nonce-1";

fn claims(proof: &str) -> Value {
    let part = proof.split('.').nth(1).unwrap_or_default();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap_or_default()).unwrap_or(Value::Null)
}

/// What the MCP server saw on requests that carried the token.
#[derive(Default)]
struct Seen {
    schemes: Vec<String>,
    jtis: Vec<String>,
    proofs: Vec<Value>,
}

async fn server(seen: Arc<Mutex<Seen>>) -> Server {
    Server::start(move |base| {
        move |request: &Request| {
            let path = request.path.split('?').next().unwrap_or_default();
            let prm = format!("{base}/.well-known/oauth-protected-resource/mcp");
            match (request.method.as_str(), path) {
                ("GET", "/.well-known/oauth-protected-resource/mcp") => Reply::json(
                    200,
                    json!({"resource": format!("{base}/mcp"), "authorization_servers": [base]}),
                ),
                ("GET", "/.well-known/oauth-authorization-server") => Reply::json(
                    200,
                    json!({
                        "issuer": base,
                        "authorization_endpoint": format!("{base}/authorize"),
                        "token_endpoint": format!("{base}/token"),
                        "response_types_supported": ["code"],
                        "code_challenge_methods_supported": ["S256"],
                        "dpop_signing_alg_values_supported": ["ES256"],
                    }),
                ),
                ("GET", "/authorize") => {
                    let redirect = query(&request.path, "redirect_uri").unwrap_or_default();
                    let state = query(&request.path, "state").unwrap_or_default();
                    let location = reqwest::Url::parse_with_params(
                        &redirect,
                        [("code", "the-code"), ("state", &state), ("iss", &base)],
                    )
                    .unwrap();
                    Reply::text(302, "").header("location", location.as_str())
                }
                ("POST", "/token") => {
                    let Some(proof) = request.header("dpop") else {
                        return Reply::json(400, json!({"error": "invalid_dpop_proof"}));
                    };
                    let claims = claims(proof);
                    if claims["htm"] != "POST" || claims["htu"] != format!("{base}/token") {
                        return Reply::json(400, json!({"error": "invalid_dpop_proof"}));
                    }
                    if claims["nonce"] != AS_NONCE {
                        return Reply::json(400, json!({"error": "use_dpop_nonce"}))
                            .header("dpop-nonce", AS_NONCE);
                    }
                    Reply::json(
                        200,
                        json!({"access_token": TOKEN, "token_type": "DPoP", "expires_in": 3600}),
                    )
                }
                (_, "/mcp") => {
                    let Some(authorization) = request.header("authorization") else {
                        return Reply::text(401, "").header(
                            "www-authenticate",
                            &format!(r#"DPoP resource_metadata="{prm}""#),
                        );
                    };
                    let (scheme, token) = authorization.split_once(' ').unwrap_or_default();
                    let proof = claims(request.header("dpop").unwrap_or_default());
                    {
                        let mut seen = seen.lock().unwrap();
                        seen.schemes.push(scheme.to_owned());
                        seen.jtis
                            .push(proof["jti"].as_str().unwrap_or_default().to_owned());
                        seen.proofs.push(proof.clone());
                    }
                    if proof["nonce"] != RS_NONCE {
                        return Reply::text(401, "")
                            .header(
                                "www-authenticate",
                                &format!(
                                    r#"DPoP error="use_dpop_nonce", resource_metadata="{prm}""#
                                ),
                            )
                            .header("dpop-nonce", RS_NONCE);
                    }
                    if token != TOKEN {
                        return Reply::text(401, "").header(
                            "www-authenticate",
                            &format!(r#"DPoP error="invalid_token", resource_metadata="{prm}""#),
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

#[tokio::test]
async fn a_dpop_bound_token_is_requested_and_presented_with_fresh_proofs_and_nonces() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let server = server(seen.clone()).await;
    let transport = StreamableHttpTransport::new(HttpConfig::new(server.url("/mcp")).unwrap())
        .unwrap()
        .with_client_options(ClientOptions::new().with_authorizer(
            Arc::new(FollowRedirect::new().unwrap()),
            AuthorizationMode::Wait {
                timeout: Duration::from_secs(10),
            },
        ))
        .with_user_authorization(
            UserAuthorization::new("http://127.0.0.1:1/callback")
                .with_client("pre-registered", None),
        );
    let key = SessionKey::with_principal(Some("alice"), SessionId::new("a1"));
    let connection = transport.connect(&key).await.unwrap();
    connection
        .list_tools(Duration::from_secs(10))
        .await
        .unwrap();

    let tokens = server.requests_to("/token");
    assert_eq!(
        tokens.len(),
        2,
        "one token request, retried once with the nonce"
    );
    assert_eq!(claims(tokens[1].header("dpop").unwrap())["nonce"], AS_NONCE);

    connection.close().await;
    let seen = seen.lock().unwrap();
    assert!(!seen.schemes.is_empty());
    assert!(
        seen.schemes.iter().all(|s| s == "DPoP"),
        "{:?}",
        seen.schemes
    );
    let mut jtis = seen.jtis.clone();
    jtis.sort();
    jtis.dedup();
    assert_eq!(jtis.len(), seen.jtis.len(), "a fresh proof per request");
    let ath = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        TOKEN.as_bytes(),
    ));
    for proof in &seen.proofs {
        assert_eq!(proof["htu"], server.url("/mcp"));
        assert_eq!(proof["ath"], ath.as_str());
    }
    assert!(
        seen.proofs.iter().any(|p| p["nonce"] == RS_NONCE),
        "the MCP server's nonce was used"
    );
}
