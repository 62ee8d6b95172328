//! OAuth client credentials, shared by the configuration and the HTTP
//! transport.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::redact_url;

/// An OAuth client's credentials for the client-credentials grant
/// (`[server.oauth_client_credentials]` in a configuration file). `Debug`
/// redacts the secret and the private key.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentials {
    /// The client id.
    pub client_id: String,
    /// The client secret, sent with HTTP Basic (or in the form). Unused when
    /// `private_key_pem` is set.
    #[serde(default)]
    pub client_secret: String,
    /// An ES256 private key (PKCS#8 PEM): authenticate with a signed JWT
    /// assertion (`private_key_jwt`, RFC 7523) instead of the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_pem: Option<String>,
    /// The scope to ask for (space-separated); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// A fixed token endpoint. Unset (the default), the authorization server
    /// is discovered from the MCP server's `401` and metadata; set, a token
    /// is requested from this URL before every session connects, with no
    /// discovery and no `resource` parameter, as NeMo Agent Toolkit's
    /// service accounts do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// Pins the authorization server by its issuer identifier (RFC 8414):
    /// the MCP server's metadata must name it, and no other is used. Without
    /// it, the first one the MCP server names is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Pins the token endpoint: the authorization server's metadata must
    /// name this one, or no credentials are sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// Workload identity federation: a JWT the platform issued to this
    /// workload (audience: the authorization server), sent with the
    /// JWT-bearer grant (RFC 7523 §2.1) instead of the client-credentials
    /// grant. The client authenticates with its secret if it has one, else
    /// names itself (`client_id`) as a public client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertion: Option<String>,
    /// Enterprise-managed authorization: exchange an identity token from
    /// the enterprise's identity provider for an identity assertion grant
    /// (ID-JAG), then redeem it at the MCP server's authorization server
    /// with the JWT-bearer grant, authenticated with `client_secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enterprise: Option<Box<EnterpriseIdentity>>,
}

/// The enterprise identity provider of
/// [`ClientCredentials::enterprise`]. `Debug` redacts the identity token
/// and the secret.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnterpriseIdentity {
    /// The identity provider's issuer identifier.
    pub issuer: String,
    /// Its token endpoint (RFC 8693 token exchange).
    pub token_endpoint: String,
    /// This client's id at the identity provider.
    pub client_id: String,
    /// This client's secret there (HTTP Basic), if it is confidential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// The user's OpenID Connect identity token, issued to `client_id`.
    pub id_token: String,
}

impl fmt::Debug for EnterpriseIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnterpriseIdentity")
            .field("issuer", &redact_url(&self.issuer))
            .field("token_endpoint", &redact_url(&self.token_endpoint))
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("id_token", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field(
                "private_key_pem",
                &self.private_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("scope", &self.scope)
            .field("token_url", &self.token_url.as_deref().map(redact_url))
            .field("issuer", &self.issuer.as_deref().map(redact_url))
            .field(
                "token_endpoint",
                &self.token_endpoint.as_deref().map(redact_url),
            )
            .field("assertion", &self.assertion.as_ref().map(|_| "<redacted>"))
            .field("enterprise", &self.enterprise)
            .finish()
    }
}
