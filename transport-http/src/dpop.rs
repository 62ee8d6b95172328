//! DPoP (RFC 9449): end users' tokens bound to a key the client holds.
//!
//! When an authorization server advertises ES256 in
//! `dpop_signing_alg_values_supported`, the principal's token requests
//! carry a `DPoP` proof (a JWT signed with the principal's key, its public
//! half in the header), the server binds the token to that key, and every
//! request to the MCP server presents it as `Authorization: DPoP <token>`
//! with a fresh proof (`htm`, `htu`, `ath`: the token's hash). A
//! `use_dpop_nonce` answer — `400` from the token endpoint, `401` from the
//! MCP server — is retried once with the server's `DPoP-Nonce`.
//!
//! rmcp 3.11 has no DPoP, and the JOSE needed here is one ES256 signature
//! over a JSON header and claims: aws-lc-rs (already in the build through
//! rustls, and signing the client assertions of `oauth.rs`) signs, `base64`
//! encodes; a JOSE crate would add a second crypto stack for that.
//!
//! The key lives in memory, one per principal and transport: tokens a
//! store kept from an earlier run are bound to a key that is gone, so the
//! server refuses them and the user authorizes anew.

use std::sync::Mutex;

use aws_lc_rs::{
    digest,
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::Error;

/// A principal's DPoP key and the nonces servers gave it.
pub(crate) struct Dpop {
    key: EcdsaKeyPair,
    jwk: Value,
    /// The token endpoint proofs go to; `None` until an authorization
    /// server that supports DPoP is found (and then DPoP is in use).
    token_endpoint: Mutex<Option<String>>,
    /// The last `DPoP-Nonce` of the authorization server.
    as_nonce: Mutex<Option<String>>,
    /// The last `DPoP-Nonce` of the MCP server.
    rs_nonce: Mutex<Option<String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Dpop {
    /// A fresh P-256 key.
    pub(crate) fn new() -> Result<Self, Error> {
        let key =
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| Error::DpopKey)?;
        // Uncompressed point: 0x04, x, y.
        let point = key.public_key().as_ref();
        if point.len() != 65 {
            return Err(Error::DpopKey);
        }
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        });
        Ok(Self {
            key,
            jwk,
            token_endpoint: Mutex::new(None),
            as_nonce: Mutex::new(None),
            rs_nonce: Mutex::new(None),
        })
    }

    /// Uses DPoP with the authorization server whose metadata this is, if
    /// it supports ES256 proofs.
    pub(crate) fn adopt(&self, metadata: &rmcp::transport::auth::AuthorizationMetadata) {
        let supported = metadata
            .additional_fields
            .get("dpop_signing_alg_values_supported")
            .and_then(Value::as_array)
            .is_some_and(|algs| algs.iter().any(|alg| alg == "ES256"));
        *lock(&self.token_endpoint) = supported.then(|| metadata.token_endpoint.clone());
    }

    /// Whether tokens are DPoP-bound.
    pub(crate) fn active(&self) -> bool {
        lock(&self.token_endpoint).is_some()
    }

    /// Whether `url` is the token endpoint proofs go to.
    pub(crate) fn is_token_endpoint(&self, url: &str) -> bool {
        lock(&self.token_endpoint)
            .as_deref()
            .is_some_and(|endpoint| without_query(endpoint) == without_query(url))
    }

    pub(crate) fn set_as_nonce(&self, nonce: Option<String>) {
        if nonce.is_some() {
            *lock(&self.as_nonce) = nonce;
        }
    }

    pub(crate) fn set_rs_nonce(&self, nonce: Option<String>) {
        if nonce.is_some() {
            *lock(&self.rs_nonce) = nonce;
        }
    }

    /// A proof for a token request to `url`.
    pub(crate) fn token_request_proof(&self, url: &str) -> Result<String, Error> {
        let nonce = lock(&self.as_nonce).clone();
        self.proof("POST", url, None, nonce.as_deref())
    }

    /// A proof for a `method` request to the MCP server at `url` carrying
    /// `access_token`.
    pub(crate) fn resource_proof(
        &self,
        method: &str,
        url: &str,
        access_token: &str,
    ) -> Result<String, Error> {
        let nonce = lock(&self.rs_nonce).clone();
        self.proof(method, url, Some(access_token), nonce.as_deref())
    }

    fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<String, Error> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| Error::DpopKey)?;
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
        let mut claims = json!({
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "htm": method,
            "htu": without_query(url),
            "iat": now,
        });
        if let Some(token) = access_token {
            let hash = digest::digest(&digest::SHA256, token.as_bytes());
            claims["ath"] = json!(URL_SAFE_NO_PAD.encode(hash.as_ref()));
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| Error::DpopKey)?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

/// `url` without its query and fragment (RFC 9449 §4.2: `htu`).
fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// Whether a `WWW-Authenticate` challenge (or an error body) asks for a
/// DPoP nonce.
pub(crate) fn asks_for_nonce(text: &str) -> bool {
    text.contains("use_dpop_nonce")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn decode(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn a_proof_carries_the_public_key_the_request_and_the_token_hash_and_verifies() {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
        let dpop = Dpop::new().unwrap();
        dpop.set_rs_nonce(Some("n-1".into()));
        let proof = dpop
            .resource_proof("POST", "https://mcp.example/mcp?x=1", "tok")
            .unwrap();
        let parts: Vec<&str> = proof.split('.').collect();
        let header = decode(parts[0]);
        let claims = decode(parts[1]);
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert!(header["jwk"].get("d").is_none(), "no private key");
        assert_eq!(claims["htm"], "POST");
        assert_eq!(claims["htu"], "https://mcp.example/mcp");
        assert_eq!(claims["nonce"], "n-1");
        let hash = digest::digest(&digest::SHA256, b"tok");
        assert_eq!(claims["ath"], URL_SAFE_NO_PAD.encode(hash.as_ref()));
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, dpop.key.public_key());
        let signed = format!("{}.{}", parts[0], parts[1]);
        public
            .verify(
                signed.as_bytes(),
                &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
            )
            .unwrap();
        let again = dpop
            .resource_proof("POST", "https://mcp.example/mcp", "tok")
            .unwrap();
        assert_ne!(
            decode(again.split('.').nth(1).unwrap())["jti"],
            claims["jti"],
            "a fresh jti per proof"
        );
    }
}
