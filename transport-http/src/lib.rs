//! The MCP streamable HTTP transport of [mcp-group].
//!
//! This crate holds the transport's configuration — the server URL and the
//! custom headers every request carries — and its validation. Opening
//! connections is not implemented yet: [`Transport::connect`] returns
//! [`Error::NotImplemented`], never panics.
//!
//! ```
//! use mcp_group_transport_http::{HttpConfig, StreamableHttpTransport};
//!
//! let config = HttpConfig::new("http://127.0.0.1:3001/mcp").unwrap();
//! let transport = StreamableHttpTransport::new(config);
//! assert_eq!(transport.config().url, "http://127.0.0.1:3001/mcp");
//! ```
//!
//! [mcp-group]: https://docs.rs/mcp-group

use std::collections::BTreeMap;

use mcp_group_core::{Connection, Error, ServerDescription, SessionId, Transport};

/// Where the server is and what every request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpConfig {
    /// The server URL (`http://` or `https://`).
    pub url: String,
    /// Headers sent with every request.
    pub custom_headers: BTreeMap<String, String>,
}

/// The URL is not one this transport can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The URL does not start with `http://` or `https://`.
    #[error("`{url}` is not an http:// or https:// URL")]
    NotHttp {
        /// The URL given.
        url: String,
    },
    /// Nothing follows the scheme.
    #[error("`{url}` has no host")]
    NoHost {
        /// The URL given.
        url: String,
    },
}

impl HttpConfig {
    /// A configuration for `url`, checked to be an absolute HTTP(S) URL.
    pub fn new(url: impl Into<String>) -> Result<Self, UrlError> {
        let url = url.into();
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| UrlError::NotHttp { url: url.clone() })?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(UrlError::NoHost { url });
        }
        Ok(Self {
            url,
            custom_headers: BTreeMap::new(),
        })
    }

    /// Adds a header sent with every request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.custom_headers.insert(name.into(), value.into());
        self
    }
}

/// The MCP streamable HTTP transport.
#[derive(Debug, Clone)]
pub struct StreamableHttpTransport {
    config: HttpConfig,
}

impl StreamableHttpTransport {
    /// A transport for `config`.
    pub fn new(config: HttpConfig) -> Self {
        Self { config }
    }

    /// The configuration.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }
}

#[mcp_group_core::async_trait]
impl Transport for StreamableHttpTransport {
    async fn connect(&self, _session: &SessionId) -> Result<Connection, Error> {
        Err(Error::NotImplemented {
            transport: "streamable-http",
        })
    }

    fn description(&self) -> ServerDescription {
        ServerDescription {
            transport: "streamable-http",
            endpoint: self.config.url.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_http_and_https_urls() {
        assert!(HttpConfig::new("http://127.0.0.1:3001/mcp").is_ok());
        assert!(HttpConfig::new("https://example.com").is_ok());
    }

    #[test]
    fn rejects_other_schemes_and_missing_hosts() {
        assert_eq!(
            HttpConfig::new("ftp://x"),
            Err(UrlError::NotHttp {
                url: "ftp://x".into()
            })
        );
        assert_eq!(
            HttpConfig::new("http:///path"),
            Err(UrlError::NoHost {
                url: "http:///path".into()
            })
        );
    }

    #[tokio::test]
    async fn connect_says_not_implemented_instead_of_panicking() {
        let transport =
            StreamableHttpTransport::new(HttpConfig::new("http://127.0.0.1:1/").unwrap());
        let err = transport.connect(&SessionId::new("s")).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::NotImplemented {
                    transport: "streamable-http"
                }
            ),
            "{err:?}"
        );
    }
}
