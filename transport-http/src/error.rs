//! The one error type of the HTTP transports' own layer.

use reqwest::header::{InvalidHeaderName, InvalidHeaderValue};

/// What the HTTP transports report of their own: a configuration that cannot
/// be used, an HTTP client that cannot be built, an OAuth flow that failed.
/// It reaches callers as the source of a [`mcp_group_core::Error`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL does not start with `http://` or `https://`.
    #[error("`{url}` is not an http:// or https:// URL")]
    NotHttpUrl {
        /// The URL given.
        url: String,
    },
    /// Nothing follows the scheme.
    #[error("`{url}` has no host")]
    NoHost {
        /// The URL given.
        url: String,
    },
    /// A configured or per-session header has a name HTTP cannot carry.
    #[error("header name `{name}` cannot be sent")]
    HeaderName {
        /// The header's name.
        name: String,
        /// What the HTTP library reported.
        #[source]
        source: InvalidHeaderName,
    },
    /// A header's value holds characters a header cannot (the value itself is
    /// never shown: it may be a secret).
    #[error("the value of header `{name}` cannot be sent")]
    HeaderValue {
        /// The header's name.
        name: String,
        /// What the HTTP library reported.
        #[source]
        source: InvalidHeaderValue,
    },
    /// A credential would go over plain http to a host that is not loopback,
    /// and the configuration does not allow it; nothing was sent.
    #[error(
        "refusing to send `{header}` over plain http to {url}: use https, or set allow_insecure_http"
    )]
    InsecureCredentials {
        /// The header (`Authorization` for an OAuth token).
        header: String,
        /// The server URL.
        url: String,
    },
    /// OAuth client credentials and an `Authorization` header of their own
    /// were both given; only one can authorize a request.
    #[error("OAuth client credentials cannot be combined with an `Authorization` header")]
    ConflictingAuthorization,
    /// The HTTP client could not be built (for an https URL, when the system
    /// has no CA certificates).
    #[error("the HTTP client cannot be built")]
    Client {
        /// What reqwest reported.
        #[source]
        source: reqwest::Error,
    },
    /// An OAuth discovery or token request failed at the HTTP level.
    #[error("OAuth request to {url} failed")]
    OAuthRequest {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// An OAuth discovery or token answer is larger than the limit; the rest
    /// was not read.
    #[error("the OAuth answer from {url} exceeds {limit} bytes")]
    OAuthBodyTooLarge {
        /// The URL.
        url: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// No OAuth protected-resource or authorization-server metadata was found.
    #[error("no OAuth {what} found (tried {tried:?})")]
    OAuthDiscovery {
        /// `protected resource metadata` or `authorization server metadata`.
        what: &'static str,
        /// The URLs tried.
        tried: Vec<String>,
    },
    /// The MCP server named an authorization server on another host, and a
    /// client secret would go to it: only a pinned `issuer`, `token_endpoint`
    /// or `token_url` may send a secret off the MCP server's host.
    #[error(
        "the OAuth authorization server {issuer} is on another host than the MCP server; pin it (issuer) to send it the client secret"
    )]
    OAuthIssuerNotPinned {
        /// The authorization server the MCP server named.
        issuer: String,
    },
    /// No DPoP key could be made, or a proof could not be signed.
    #[error("a DPoP proof could not be made")]
    DpopKey,
    /// The OAuth private key cannot be read or used to sign.
    #[error("the OAuth private key is not a usable ES256 PKCS#8 PEM key")]
    OAuthPrivateKey,
    /// Enterprise-managed authorization failed: the identity provider's
    /// token exchange or the authorization server's JWT-bearer grant.
    #[error("enterprise-managed authorization for {url} failed")]
    EnterpriseGrant {
        /// The authorization server's token endpoint.
        url: String,
        /// Which step, and why (rmcp's error names no secret).
        #[source]
        source: rmcp::transport::auth::enterprise::EmaError,
    },
    /// The OAuth token endpoint refused.
    #[error("the token endpoint {url} answered {status}: {body}")]
    OAuthToken {
        /// The token endpoint.
        url: String,
        /// Its HTTP status.
        status: u16,
        /// The start of its answer: at most 200 characters, control
        /// characters replaced, the client secret masked.
        body: String,
    },
    /// An OAuth URL the flow would use is refused: not https and not on a
    /// loopback host, or a `resource_metadata` hint on another origin than
    /// the MCP server's over plain http. Nothing was sent to it.
    #[error(
        "refusing the OAuth {what} `{url}`: plain http is accepted only on a loopback host \
         (and for the resource_metadata hint, only on the MCP server's own origin)"
    )]
    OAuthInsecureUrl {
        /// `resource_metadata hint`, `authorization server` or `token endpoint`.
        what: &'static str,
        /// The URL (server-supplied; control characters removed).
        url: String,
    },
    /// The protected resource metadata describes another resource than the
    /// MCP server (RFC 9728 §3.3).
    #[error("the protected resource metadata is for `{found}`, not for {expected}")]
    OAuthResourceMismatch {
        /// The MCP server's URL.
        expected: String,
        /// The `resource` the metadata names (control characters removed).
        found: String,
    },
    /// The authorization server is not the expected one: its metadata names
    /// another issuer than the one it was fetched for (RFC 8414 §3.3), or the
    /// MCP server does not name the pinned issuer.
    #[error("the authorization server is `{found}`, expected `{expected}`")]
    OAuthIssuerMismatch {
        /// The issuer asked for, or pinned.
        expected: String,
        /// What the metadata names (control characters removed).
        found: String,
    },
    /// The authorization server's token endpoint is not the pinned one.
    #[error("the authorization server's token endpoint is `{found}`, pinned `{expected}`")]
    OAuthTokenEndpointMismatch {
        /// The pinned token endpoint.
        expected: String,
        /// What the metadata names (control characters removed).
        found: String,
    },
    /// The server demands OAuth and the user has not authorized yet; the
    /// authorization runs in the background.
    #[error("the user must authorize this client at {url}")]
    AuthorizationRequired {
        /// The authorization URL to show the user.
        url: String,
    },
    /// The user did not complete the authorization in time.
    #[error("the authorization did not complete within {after:?}")]
    AuthorizationTimeout {
        /// The limit.
        after: std::time::Duration,
    },
    /// The application's authorizer failed (the user declined, say).
    #[error("the authorizer failed")]
    Authorizer {
        /// The authorizer's error.
        #[source]
        source: mcp_group_core::BoxError,
    },
    /// rmcp's OAuth flow failed: discovery, registration, the token
    /// exchange (including an `iss` that does not match), a refresh.
    #[error("OAuth authorization failed")]
    OAuth {
        /// What rmcp reported, as text fit to show (see [`OAuthFailure`]).
        #[source]
        source: OAuthFailure,
    },
    /// The configuration asks for end-user authorization, but the client
    /// options carry no authorizer.
    #[error("end-user authorization is configured but no authorizer is set")]
    NoAuthorizer,
    /// The authorization server's answer carries no redirect with a code
    /// and a state (the user declined, or it was not a redirect).
    #[error("no authorization code in the redirect from {url}")]
    NoAuthorizationCode {
        /// The authorization URL.
        url: String,
    },
}

/// What rmcp's OAuth flow reported, as text fit to show an agent or a log:
/// rmcp puts an authorization server's error bodies and descriptions into
/// its errors verbatim, so the text is cut to [`OAuthFailure::MAX_CHARS`],
/// control characters are replaced, and the configured client secret is
/// masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthFailure {
    text: String,
}

impl OAuthFailure {
    /// The most characters kept.
    pub const MAX_CHARS: usize = 500;

    pub(crate) fn new(error: &rmcp::transport::auth::AuthError, secret: &str) -> Self {
        Self {
            text: crate::trust::excerpt(&error.to_string(), secret, Self::MAX_CHARS),
        }
    }
}

impl std::fmt::Display for OAuthFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for OAuthFailure {}

#[cfg(test)]
mod tests {
    use rmcp::transport::auth::AuthError;

    use super::OAuthFailure;

    #[test]
    fn an_authorization_servers_error_text_is_cut_cleaned_and_masked() {
        let body = format!(
            "HTTP 400: \u{1b}]0;pwned\u{7} bad client_secret s3cret {}",
            "A".repeat(500_000)
        );
        let failure = OAuthFailure::new(&AuthError::RegistrationFailed(body), "s3cret");
        let text = failure.to_string();
        assert!(
            text.chars().count() <= OAuthFailure::MAX_CHARS,
            "{}",
            text.len()
        );
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }
}
