//! End-user authorization: what a transport needs from the application to
//! sign a session's user in (the [`Authorizer`]), how it is configured
//! ([`UserAuthorization`], [`AuthorizationMode`]) and the key credentials
//! are stored under ([`CredentialKey`]). No I/O happens here: the OAuth flow
//! itself is the HTTP transport's.

use std::{fmt, sync::Arc, time::Duration};

use crate::{BoxError, SessionKey, redact_url};

/// The parameters of the authorization server's redirect back to the
/// client: `code`, `state` and, when the server sends it, `iss` (RFC 9207).
/// `Debug` redacts the code and the state.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthorizationRedirect {
    /// The authorization code.
    pub code: String,
    /// The `state` the authorization URL carried.
    pub state: String,
    /// The issuer the authorization server named in the redirect, if any.
    pub iss: Option<String>,
}

impl AuthorizationRedirect {
    /// A redirect carrying `code` and `state`, and `iss` if given.
    pub fn new(code: impl Into<String>, state: impl Into<String>, iss: Option<String>) -> Self {
        Self {
            code: code.into(),
            state: state.into(),
            iss,
        }
    }
}

impl fmt::Debug for AuthorizationRedirect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationRedirect")
            .field("code", &"<redacted>")
            .field("state", &"<redacted>")
            .field("iss", &self.iss)
            .finish()
    }
}

/// Gets an end user through the authorization server's consent page.
///
/// The transport calls it when a session's server demands OAuth and no
/// usable token is stored for the session's principal: given the session
/// (its id and principal) and the authorization URL, it sends that user to
/// the URL (a browser, a link in a chat) and returns the parameters of the
/// redirect the authorization server answers with. One authorization serves
/// every session of the principal; concurrent sessions wait for it.
///
/// # Cancel safety
/// The future may be dropped (a timeout, a cancelled call): the transport
/// then forgets the attempt, and a later call starts a new one.
#[async_trait::async_trait]
pub trait Authorizer: Send + Sync + 'static {
    /// Authorizes `session`'s user at `url`; an error (the user declined,
    /// the redirect never came) fails the call that needed the token.
    async fn authorize(
        &self,
        session: &SessionKey,
        url: &str,
    ) -> Result<AuthorizationRedirect, BoxError>;
}

/// What the first call of a session that is not authorized yet does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthorizationMode {
    /// Waits for the [`Authorizer`], at most this long, then fails with
    /// [`crate::Error::Timeout`].
    Wait {
        /// The longest wait.
        timeout: Duration,
    },
    /// Fails at once with [`crate::Error::AuthorizationRequired`] carrying
    /// the URL to show the user, while the [`Authorizer`] runs in the
    /// background; the session's next call uses the token it obtained.
    Fail,
}

impl Default for AuthorizationMode {
    /// Waits up to 5 minutes.
    fn default() -> Self {
        Self::Wait {
            timeout: Duration::from_secs(300),
        }
    }
}

/// How the client identifies itself to authorization servers for the
/// authorization-code flow. Registration follows the MCP specification's
/// order: a pre-registered `client_id`, else a Client ID Metadata Document
/// (`client_metadata_url`) when the server supports it, else dynamic client
/// registration. `Debug` redacts the secret.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserAuthorization {
    /// A client id registered with the authorization server beforehand.
    pub client_id: Option<String>,
    /// The secret of the pre-registered client, if it is confidential.
    pub client_secret: Option<String>,
    /// The https URL of this client's metadata document (CIMD).
    pub client_metadata_url: Option<String>,
    /// The scopes to ask for; empty: those the server's challenge names,
    /// else those its metadata supports, else none.
    pub scopes: Vec<String>,
    /// Where the authorization server sends the user back.
    pub redirect_url: String,
    /// Pins the authorization server by its issuer identifier: no other is
    /// used. Without it, a client secret goes only to an authorization
    /// server on the MCP server's own host.
    pub issuer: Option<String>,
    /// The client name given in dynamic registration.
    pub client_name: Option<String>,
}

impl UserAuthorization {
    /// A client that redirects to `redirect_url` and registers itself
    /// dynamically unless told otherwise.
    pub fn new(redirect_url: impl Into<String>) -> Self {
        Self {
            redirect_url: redirect_url.into(),
            ..Self::default()
        }
    }

    /// Uses a pre-registered client id (and secret, for a confidential
    /// client).
    pub fn with_client(mut self, client_id: impl Into<String>, secret: Option<String>) -> Self {
        self.client_id = Some(client_id.into());
        self.client_secret = secret;
        self
    }

    /// Offers a Client ID Metadata Document at `url`.
    pub fn with_client_metadata_url(mut self, url: impl Into<String>) -> Self {
        self.client_metadata_url = Some(url.into());
        self
    }

    /// Asks for `scopes`.
    pub fn with_scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Pins the authorization server.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }
}

impl fmt::Debug for UserAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserAuthorization")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("client_metadata_url", &self.client_metadata_url)
            .field("scopes", &self.scopes)
            .field("redirect_url", &redact_url(&self.redirect_url))
            .field("issuer", &self.issuer)
            .field("client_name", &self.client_name)
            .finish()
    }
}

/// The key stored credentials live under: the end user (principal), the
/// authorization server that issued them (its issuer identifier) and the
/// protected resource (the MCP server) they are for. A token is never used
/// for another key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct CredentialKey {
    principal: Option<Arc<str>>,
    issuer: String,
    resource: String,
}

impl CredentialKey {
    /// The key of `principal`'s credentials from `issuer` for `resource`.
    pub fn new(
        principal: Option<&str>,
        issuer: impl Into<String>,
        resource: impl Into<String>,
    ) -> Self {
        Self {
            principal: principal.map(Arc::from),
            issuer: issuer.into(),
            resource: resource.into(),
        }
    }

    /// The end user, if the session has one.
    pub fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// The authorization server's issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The protected resource (the MCP server's URL).
    pub fn resource(&self) -> &str {
        &self.resource
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_code_state_and_secret() {
        let redirect = AuthorizationRedirect::new("c0de", "st4te", Some("https://as".into()));
        let text = format!("{redirect:?}");
        assert!(!text.contains("c0de") && !text.contains("st4te"), "{text}");
        let config =
            UserAuthorization::new("http://127.0.0.1/cb").with_client("id", Some("s3cret".into()));
        let text = format!("{config:?}");
        assert!(!text.contains("s3cret") && text.contains("id"), "{text}");
    }

    #[test]
    fn credential_keys_differ_by_each_part() {
        let a = CredentialKey::new(Some("alice"), "https://as", "https://mcp");
        assert_ne!(
            a,
            CredentialKey::new(Some("bob"), "https://as", "https://mcp")
        );
        assert_ne!(a, CredentialKey::new(None, "https://as", "https://mcp"));
        assert_ne!(
            a,
            CredentialKey::new(Some("alice"), "https://as2", "https://mcp")
        );
        assert_ne!(
            a,
            CredentialKey::new(Some("alice"), "https://as", "https://mcp2")
        );
        assert_eq!(a.principal(), Some("alice"));
    }
}
