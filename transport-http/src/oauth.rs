//! OAuth 2.1 client credentials for MCP servers behind an authorization
//! server (the MCP authorization spec with SEP-1046): discover the
//! authorization server from the MCP server's `401` and protected-resource
//! metadata (RFC 9728), read its metadata (RFC 8414, or OpenID discovery),
//! request a token with `grant_type=client_credentials` (client secret in
//! HTTP Basic, in the form if that is all the server accepts, or as a signed
//! ES256 JWT assertion, `private_key_jwt`), and cache
//! it until it expires. Every session's connection then carries
//! `Authorization: Bearer <token>`. With a fixed `token_url` there is no
//! discovery: the token is requested from that URL (secret in HTTP Basic, no
//! `resource` parameter) whether or not the server asks for one.
//!
//! Discovery is checked before any secret leaves: the protected resource
//! metadata must be this MCP server's (RFC 9728 §3.3), the authorization
//! server's metadata must carry the issuer it was fetched for (RFC 8414
//! §3.3), which is then the only audience of a signed assertion; metadata,
//! the authorization server and the token endpoint must be https (plain http
//! only on a loopback host, unless the configuration allows insecure http),
//! and a `resource_metadata` hint https or on the MCP server's own origin. [`ClientCredentials`] may pin the issuer and the
//! token endpoint. A token endpoint's refusal is shown as a short excerpt,
//! control characters and the secret removed.
//!
//! Two more grants for machine identity: a workload's platform-issued JWT
//! (workload identity federation) goes with the JWT-bearer grant (RFC 7523
//! §2.1) instead of `client_credentials`, the workload a public client
//! unless it has a secret; an enterprise identity token (enterprise-managed
//! authorization) is exchanged at the identity provider for an ID-JAG and
//! redeemed at the authorization server, on rmcp's `enterprise` module
//! (`auth-enterprise-managed`). Both are as good as a secret to whoever
//! receives them, so the same rule holds for where they may go.
//!
//! Written here, not on rmcp's `auth` module (which the end-user flow in
//! `authorization.rs` uses), because rmcp 3.11's client-credentials grant
//! sends a client secret only in the form (`client_secret_post`), not with
//! HTTP Basic, and signs assertions only behind its
//! `auth-client-credentials-jwt` feature (the `jsonwebtoken` crate), while
//! this grant is a few requests long.

use std::{fmt, time::Duration};

pub use mcp_group_core::ClientCredentials;

use reqwest::{StatusCode, Url, header};
use serde_json::Value;
use tokio::time::Instant;

use crate::{
    Error,
    trust::{excerpt, is_secure},
};

/// A token cache in front of the client-credentials flow.
pub(crate) struct TokenSource {
    credentials: ClientCredentials,
    /// Plain http to any host is allowed for metadata and endpoints.
    allow_insecure_http: bool,
    cached: tokio::sync::Mutex<Option<(String, Option<Instant>)>>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("credentials", &self.credentials)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish()
    }
}

/// Refresh this long before the token says it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

impl TokenSource {
    pub(crate) fn new(credentials: ClientCredentials, allow_insecure_http: bool) -> Self {
        Self {
            credentials,
            allow_insecure_http,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// A valid token for `mcp_url`, from the cache or a new flow; `None` if
    /// the server asks for no authorization.
    pub(crate) async fn token(
        &self,
        client: &reqwest::Client,
        mcp_url: &str,
    ) -> Result<Option<String>, Error> {
        let mut cached = self.cached.lock().await;
        if let Some((token, expires)) = cached.as_ref() {
            let fresh = |at| {
                Instant::now()
                    .checked_add(EXPIRY_MARGIN)
                    .is_some_and(|soon| soon < at)
            };
            if expires.is_none_or(fresh) {
                return Ok(Some(token.clone()));
            }
        }
        let Some((token, lifetime)) = self.fetch(client, mcp_url).await? else {
            return Ok(None);
        };
        // The lifetime is the server's word: one too long for the clock is
        // taken as no expiry, like an absent one.
        let expires = lifetime.and_then(|l| Instant::now().checked_add(l));
        *cached = Some((token.clone(), expires));
        Ok(Some(token))
    }

    async fn fetch(
        &self,
        client: &reqwest::Client,
        mcp_url: &str,
    ) -> Result<Option<(String, Option<Duration>)>, Error> {
        let c = &self.credentials;
        let is_secure = |url: &Url| self.allow_insecure_http || is_secure(url);
        if let Some(token_url) = &c.token_url {
            // A fixed token endpoint from the configuration: no discovery,
            // but the same rule for where a secret may go.
            if !Url::parse(token_url).is_ok_and(|url| is_secure(&url)) {
                return Err(Error::OAuthInsecureUrl {
                    what: "token endpoint",
                    url: excerpt(token_url, "", MAX_SHOWN),
                });
            }
            return self
                .request_token(client, token_url, token_url, None, false)
                .await
                .map(Some);
        }
        let mcp = Url::parse(mcp_url).map_err(|_| Error::NotHttpUrl {
            url: mcp_group_core::redact_url(mcp_url),
        })?;
        // 1. Does the server want a token, and where is its metadata?
        let probe = client
            .post(mcp_url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":0,"method":"ping"}"#)
            .send()
            .await
            .map_err(|source| Error::OAuthRequest {
                url: mcp_group_core::redact_url(mcp_url),
                source,
            })?;
        if probe.status() != StatusCode::UNAUTHORIZED {
            return Ok(None);
        }
        let hinted = probe
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| auth_param(v, "resource_metadata"));
        let mut candidates = Vec::new();
        if let Some(hint) = hinted {
            // The hint comes from the server's answer: fetched only over
            // https, or from the server's own origin.
            let url = mcp
                .join(&hint)
                .ok()
                .filter(|url| {
                    is_secure(url) && (url.scheme() == "https" || url.origin() == mcp.origin())
                })
                .ok_or_else(|| Error::OAuthInsecureUrl {
                    what: "resource_metadata hint",
                    url: excerpt(&hint, "", MAX_SHOWN),
                })?;
            candidates.push(url.to_string());
        }
        let (origin, path) = split_url(mcp_url);
        candidates.push(format!(
            "{origin}/.well-known/oauth-protected-resource{path}"
        ));
        candidates.push(format!("{origin}/.well-known/oauth-protected-resource"));
        let resource = first_json(client, &candidates, "authorization_servers")
            .await?
            .ok_or(Error::OAuthDiscovery {
                what: "protected resource metadata",
                tried: candidates.clone(),
            })?;
        // RFC 9728 §3.3: the metadata must be this server's.
        let named = resource["resource"].as_str().unwrap_or_default();
        if !Url::parse(named).is_ok_and(|named| covers(&named, &mcp)) {
            return Err(Error::OAuthResourceMismatch {
                expected: mcp_group_core::redact_url(mcp_url),
                found: excerpt(named, "", MAX_SHOWN),
            });
        }
        let offered: Vec<&str> = resource["authorization_servers"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let issuer = match (&c.issuer, offered.first()) {
            (Some(pinned), _) => offered
                .iter()
                .find(|offered| same_identifier(offered, pinned))
                .map(|_| pinned.as_str())
                .ok_or_else(|| Error::OAuthIssuerMismatch {
                    expected: pinned.clone(),
                    found: excerpt(&offered.join(" "), "", MAX_SHOWN),
                })?,
            (None, Some(first)) => first,
            (None, None) => {
                return Err(Error::OAuthDiscovery {
                    what: "authorization server",
                    tried: candidates,
                });
            }
        };
        let issuer = issuer.trim_end_matches('/').to_owned();
        if !Url::parse(&issuer).is_ok_and(|url| is_secure(&url)) {
            return Err(Error::OAuthInsecureUrl {
                what: "authorization server",
                url: excerpt(&issuer, "", MAX_SHOWN),
            });
        }
        // A secret (not a signed assertion, whose audience is the issuer
        // itself) leaves the MCP server's host only for a pinned server.
        // A workload's JWT or an enterprise grant is as good as a secret
        // to whoever receives it.
        let bearer = c.private_key_pem.is_none() || c.assertion.is_some() || c.enterprise.is_some();
        let pinned = c.issuer.is_some() || c.token_endpoint.is_some();
        let same_host = Url::parse(&issuer).is_ok_and(|url| url.host() == mcp.host());
        if bearer && !pinned && !same_host {
            return Err(Error::OAuthIssuerNotPinned {
                issuer: excerpt(&issuer, "", MAX_SHOWN),
            });
        }

        // 2. The authorization server's metadata.
        let (issuer_origin, issuer_path) = split_url(&issuer);
        let candidates = vec![
            format!("{issuer_origin}/.well-known/oauth-authorization-server{issuer_path}"),
            format!("{issuer_origin}/.well-known/openid-configuration{issuer_path}"),
            format!("{issuer}/.well-known/openid-configuration"),
        ];
        let server = first_json(client, &candidates, "token_endpoint")
            .await?
            .ok_or(Error::OAuthDiscovery {
                what: "authorization server metadata",
                tried: candidates,
            })?;
        // RFC 8414 §3.3: the metadata must be that of the issuer asked for;
        // only then is it the audience of an assertion.
        let audience = server["issuer"].as_str().unwrap_or_default();
        if !same_identifier(audience, &issuer) {
            return Err(Error::OAuthIssuerMismatch {
                expected: issuer,
                found: excerpt(audience, "", MAX_SHOWN),
            });
        }
        let token_url = server["token_endpoint"].as_str().unwrap_or_default();
        if let Some(pinned) = &c.token_endpoint {
            if !same_identifier(token_url, pinned) {
                return Err(Error::OAuthTokenEndpointMismatch {
                    expected: pinned.clone(),
                    found: excerpt(token_url, "", MAX_SHOWN),
                });
            }
        }
        if !Url::parse(token_url).is_ok_and(|url| is_secure(&url)) {
            return Err(Error::OAuthInsecureUrl {
                what: "token endpoint",
                url: excerpt(token_url, "", MAX_SHOWN),
            });
        }
        let token_url = token_url.to_owned();
        let methods: Vec<&str> = server["token_endpoint_auth_methods_supported"]
            .as_array()
            .map(|m| m.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let secret_in_form = !methods.is_empty()
            && !methods.contains(&"client_secret_basic")
            && methods.contains(&"client_secret_post");

        // 3. The token; an assertion's audience is the verified issuer.
        self.request_token(client, &token_url, audience, Some(mcp_url), secret_in_form)
            .await
            .map(Some)
    }

    /// Requests a token from `token_url`; `resource` is the RFC 8707
    /// resource indicator (the MCP server), `audience` a JWT assertion's.
    async fn request_token(
        &self,
        client: &reqwest::Client,
        token_url: &str,
        audience: &str,
        resource: Option<&str>,
        secret_in_form: bool,
    ) -> Result<(String, Option<Duration>), Error> {
        let c = &self.credentials;
        if let Some(enterprise) = &c.enterprise {
            return self
                .enterprise_grant(client, enterprise, token_url, audience, resource)
                .await;
        }
        let mut form = match &c.assertion {
            Some(assertion) => vec![
                ("grant_type", JWT_BEARER),
                ("assertion", assertion.as_str()),
            ],
            None => vec![("grant_type", "client_credentials")],
        };
        if let Some(resource) = resource {
            form.push(("resource", resource));
        }
        if let Some(scope) = c.scope.as_deref() {
            form.push(("scope", scope));
        }
        // A workload with a JWT and no secret is a public client.
        let public = c.assertion.is_some() && c.client_secret.is_empty();
        let secret_in_form = secret_in_form || public;
        let assertion;
        if public {
            form.push(("client_id", &c.client_id));
        } else if let Some(pem) = &c.private_key_pem {
            assertion = jwt_assertion(&c.client_id, audience, pem)?;
            form.push(("client_id", &c.client_id));
            form.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ));
            form.push(("client_assertion", &assertion));
        } else if secret_in_form {
            form.push(("client_id", &c.client_id));
            form.push(("client_secret", &c.client_secret));
        }
        let secret_in_form = secret_in_form || c.private_key_pem.is_some();
        let mut request = client
            .post(token_url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(form_encode(&form));
        if !secret_in_form {
            request = request.basic_auth(
                form_component(&c.client_id),
                Some(form_component(&c.client_secret)),
            );
        }
        let response = request.send().await.map_err(|source| Error::OAuthRequest {
            url: mcp_group_core::redact_url(token_url),
            source,
        })?;
        let status = response.status();
        let body = read_body(response, token_url).await?;
        let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        match answer["access_token"].as_str() {
            Some(token) if status.is_success() => {
                let lifetime = answer["expires_in"].as_u64().map(Duration::from_secs);
                tracing::debug!(token_endpoint = %mcp_group_core::redact_url(token_url), ?lifetime, "OAuth token obtained");
                Ok((token.to_owned(), lifetime))
            }
            _ => Err(Error::OAuthToken {
                url: mcp_group_core::redact_url(token_url),
                status: status.as_u16(),
                body: excerpt(&String::from_utf8_lossy(&body), &c.client_secret, MAX_SHOWN),
            }),
        }
    }
}

/// The JWT-bearer grant type (RFC 7523 §2.1).
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

impl TokenSource {
    /// Enterprise-managed authorization on rmcp's `enterprise` module: the
    /// identity token for an ID-JAG at the identity provider (RFC 8693),
    /// then the ID-JAG for an access token at the authorization server
    /// `issuer` (JWT-bearer grant, `client_secret_basic`).
    async fn enterprise_grant(
        &self,
        client: &reqwest::Client,
        enterprise: &mcp_group_core::EnterpriseIdentity,
        token_url: &str,
        issuer: &str,
        resource: Option<&str>,
    ) -> Result<(String, Option<Duration>), Error> {
        use rmcp::transport::auth::enterprise::{
            EmaAuthorizationServer, EmaClientAuthentication, EmaExchangeRequest,
        };
        let c = &self.credentials;
        let is_secure = |url: &str| {
            Url::parse(url).is_ok_and(|url| self.allow_insecure_http || is_secure(&url))
        };
        if !is_secure(&enterprise.token_endpoint) {
            return Err(Error::OAuthInsecureUrl {
                what: "identity provider token endpoint",
                url: excerpt(&enterprise.token_endpoint, "", MAX_SHOWN),
            });
        }
        let secret = |secret: &str| oauth2::ClientSecret::new(secret.to_owned());
        let mut idp = EmaAuthorizationServer::new(
            enterprise.issuer.clone(),
            enterprise.token_endpoint.clone(),
            enterprise.client_id.clone(),
        );
        if let Some(idp_secret) = &enterprise.client_secret {
            idp = idp.with_client_authentication(EmaClientAuthentication::ClientSecretBasic(
                secret(idp_secret),
            ));
        }
        let resource_server = EmaAuthorizationServer::new(issuer, token_url, c.client_id.clone())
            .with_client_authentication(EmaClientAuthentication::ClientSecretBasic(secret(
                &c.client_secret,
            )));
        let resource = resource.unwrap_or(token_url);
        let mut request = EmaExchangeRequest::new_with_id_token(
            idp,
            resource_server,
            resource,
            &enterprise.id_token,
        );
        if let Some(scope) = &c.scope {
            request = request.with_scopes(scope.split_whitespace());
        }
        let http = crate::authorization::GuardedHttp {
            client: client.clone(),
            allow_insecure_http: self.allow_insecure_http,
        };
        let token =
            request
                .exchange(&http, &http)
                .await
                .map_err(|source| Error::EnterpriseGrant {
                    url: mcp_group_core::redact_url(token_url),
                    source,
                })?;
        Ok((token.access_token.secret().clone(), token.expires_in))
    }
}

/// At most this many characters of server-supplied text go into an error.
const MAX_SHOWN: usize = 200;

/// Whether protected resource metadata naming `resource` may be used for
/// the MCP server at `mcp` (RFC 9728 §3.3): the same origin, and the same
/// path or a parent of it — what the MCP TypeScript SDK accepts, so that
/// metadata served for the whole host (`https://host/`) covers `/mcp`.
fn covers(resource: &Url, mcp: &Url) -> bool {
    let parent = resource.path().trim_end_matches('/');
    let path = mcp.path().trim_end_matches('/');
    resource.origin() == mcp.origin() && (path == parent || path.starts_with(&format!("{parent}/")))
}

/// Two issuer identifiers or endpoint URLs are the same, but for a trailing
/// `/`.
fn same_identifier(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// A JWT client assertion (RFC 7523) signed with ES256.
fn jwt_assertion(client_id: &str, audience: &str, pem: &str) -> Result<String, Error> {
    use aws_lc_rs::{
        rand::SystemRandom,
        signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair},
    };
    use base64::{
        Engine,
        engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    };

    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .map(str::trim)
        .collect();
    let der = STANDARD.decode(body).map_err(|_| Error::OAuthPrivateKey)?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
        .map_err(|_| Error::OAuthPrivateKey)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut nonce = [0u8; 16];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| Error::OAuthPrivateKey)?;
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT"});
    let claims = serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + 300,
        "jti": URL_SAFE_NO_PAD.encode(nonce),
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .map_err(|_| Error::OAuthPrivateKey)?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.as_ref())
    ))
}

/// The first of `urls` answering JSON with the field `needed`; `None` if
/// none does. A request that fails (unreachable, timed out) moves on to the
/// next URL, and is the error if no URL answers; an answer over
/// [`MAX_BODY`] is an error at once.
async fn first_json(
    client: &reqwest::Client,
    urls: &[String],
    needed: &str,
) -> Result<Option<Value>, Error> {
    let mut failure = None;
    for (i, url) in urls.iter().enumerate() {
        if urls[..i].contains(url) {
            continue;
        }
        let response = match client
            .get(url)
            .header(header::ACCEPT, "application/json")
            .send()
            .await
        {
            Ok(response) => response,
            Err(source) => {
                failure = Some(Error::OAuthRequest {
                    url: mcp_group_core::redact_url(url),
                    source,
                });
                continue;
            }
        };
        if !response.status().is_success() {
            continue;
        }
        let body = match read_body(response, url).await {
            Ok(body) => body,
            Err(error @ Error::OAuthBodyTooLarge { .. }) => return Err(error),
            Err(error) => {
                failure = Some(error);
                continue;
            }
        };
        if let Ok(value) = serde_json::from_slice::<Value>(&body) {
            if !value[needed].is_null() {
                return Ok(Some(value));
            }
        }
    }
    failure.map_or(Ok(None), Err)
}

/// The most of an OAuth answer read: 1 MiB, far above any metadata or token
/// response.
const MAX_BODY: usize = 1 << 20;

/// `response`'s body, up to [`MAX_BODY`].
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    url: &str,
) -> Result<Vec<u8>, Error> {
    let too_large = || Error::OAuthBodyTooLarge {
        url: mcp_group_core::redact_url(url),
        limit: MAX_BODY,
    };
    if response
        .content_length()
        .is_some_and(|length| length > MAX_BODY as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| Error::OAuthRequest {
            url: mcp_group_core::redact_url(url),
            source,
        })?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `("https://host:port", "/path")` of a URL (path without a trailing `/`).
fn split_url(url: &str) -> (String, String) {
    match reqwest::Url::parse(url) {
        Ok(parsed) => {
            let origin = parsed.origin().ascii_serialization();
            let path = parsed.path().trim_end_matches('/').to_owned();
            (origin, path)
        }
        Err(_) => (url.trim_end_matches('/').to_owned(), String::new()),
    }
}

/// The value of `name=` in a `WWW-Authenticate` challenge.
fn auth_param(challenge: &str, name: &str) -> Option<String> {
    let start = challenge.find(&format!("{name}="))? + name.len() + 1;
    let rest = &challenge[start..];
    let value = match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next()?,
        None => rest.split([',', ' ']).next()?,
    };
    Some(value.to_owned())
}

/// `application/x-www-form-urlencoded` of one component.
fn form_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", form_component(k), form_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parameters_and_form_encoding() {
        let challenge = r#"Bearer error="invalid_token", resource_metadata="http://h:1/.well-known/oauth-protected-resource/mcp""#;
        assert_eq!(
            auth_param(challenge, "resource_metadata").as_deref(),
            Some("http://h:1/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(auth_param("Bearer realm=x", "resource_metadata"), None);
        assert_eq!(form_encode(&[("a b", "c&d=é")]), "a+b=c%26d%3D%C3%A9");
        assert_eq!(
            split_url("http://localhost:8080/mcp/"),
            ("http://localhost:8080".to_owned(), "/mcp".to_owned())
        );
        let debug = format!(
            "{:?}",
            ClientCredentials {
                client_id: "id".into(),
                client_secret: "s3cret".into(),
                private_key_pem: Some("-----BEGIN PRIVATE KEY-----".into()),
                scope: None,
                ..ClientCredentials::default()
            }
        );
        assert!(
            !debug.contains("s3cret") && !debug.contains("BEGIN"),
            "{debug}"
        );
        assert!(matches!(
            jwt_assertion("id", "http://as", "not a key"),
            Err(Error::OAuthPrivateKey)
        ));
    }
}
