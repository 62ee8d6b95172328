//! An [`Authorizer`] for authorization servers that approve on their own.

use mcp_group_core::{AuthorizationRedirect, Authorizer, BoxError, SessionKey, redact_url};
use reqwest::{StatusCode, Url, header::LOCATION};

use crate::{Error, trust::is_secure};

/// Follows the authorization URL with a `GET` and returns the parameters of
/// the redirect it answers with (without following it): for authorization
/// servers that approve without a user — test servers, the MCP conformance
/// suite's, an enterprise server that trusts the network — not for a real
/// consent page. The URL must be https (or plain http on a loopback host).
#[derive(Debug, Clone)]
pub struct FollowRedirect {
    client: reqwest::Client,
}

impl FollowRedirect {
    /// A follower with its own HTTP client (no redirects, 30 s timeout).
    pub fn new() -> Result<Self, Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|source| Error::Client { source })?;
        Ok(Self { client })
    }
}

/// The `code`, `state` and `iss` of a redirect URL.
pub fn redirect_parameters(url: &str) -> Result<AuthorizationRedirect, Error> {
    let parsed = Url::parse(url).map_err(|_| Error::NotHttpUrl {
        url: redact_url(url),
    })?;
    let (mut code, mut state, mut iss) = (None, None, None);
    for (name, value) in parsed.query_pairs() {
        match name.as_ref() {
            "code" => code = Some(value.into_owned()),
            "state" => state = Some(value.into_owned()),
            "iss" => iss = Some(value.into_owned()),
            _ => {}
        }
    }
    match (code, state) {
        (Some(code), Some(state)) => Ok(AuthorizationRedirect::new(code, state, iss)),
        _ => Err(Error::NoAuthorizationCode {
            url: redact_url(url),
        }),
    }
}

#[mcp_group_core::async_trait]
impl Authorizer for FollowRedirect {
    async fn authorize(
        &self,
        _session: &SessionKey,
        url: &str,
    ) -> Result<AuthorizationRedirect, BoxError> {
        let parsed = Url::parse(url).map_err(|_| Error::NotHttpUrl {
            url: redact_url(url),
        })?;
        if !is_secure(&parsed) {
            return Err(Box::new(Error::OAuthInsecureUrl {
                what: "authorization endpoint",
                url: redact_url(url),
            }));
        }
        let response =
            self.client
                .get(parsed)
                .send()
                .await
                .map_err(|source| Error::OAuthRequest {
                    url: redact_url(url),
                    source,
                })?;
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .filter(|_| response.status().is_redirection() || response.status() == StatusCode::OK);
        let Some(location) = location else {
            return Err(Box::new(Error::NoAuthorizationCode {
                url: redact_url(url),
            }));
        };
        Ok(redirect_parameters(location)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_parameters_are_code_state_and_iss() {
        let r =
            redirect_parameters("http://localhost:3000/cb?code=a%20b&state=s&iss=https%3A%2F%2Fas")
                .unwrap();
        assert_eq!((r.code.as_str(), r.state.as_str()), ("a b", "s"));
        assert_eq!(r.iss.as_deref(), Some("https://as"));
        assert!(
            redirect_parameters("http://localhost:3000/cb?error=access_denied&state=s").is_err()
        );
    }
}
