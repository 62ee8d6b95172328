//! The legacy MCP HTTP+SSE (protocol 2024-11-05) transport of [mcp-group].
//!
//! The configuration type, [`HttpConfig`], is shared with the streamable HTTP
//! transport. Opening
//! connections is not implemented yet: [`Transport::connect`] returns
//! [`Error::NotImplemented`], never panics.
//!
//! ```
//! use mcp_group_transport_sse::{HttpConfig, SseTransport};
//!
//! let config = HttpConfig::new("http://127.0.0.1:3001/mcp").unwrap();
//! let transport = SseTransport::new(config);
//! assert_eq!(transport.config().url, "http://127.0.0.1:3001/mcp");
//! ```
//!
//! [mcp-group]: https://docs.rs/mcp-group

use mcp_group_core::{Connection, Error, ServerDescription, SessionId, Transport};
pub use mcp_group_transport_http::{HttpConfig, UrlError};

/// The legacy MCP HTTP+SSE (protocol 2024-11-05) transport.
#[derive(Debug, Clone)]
pub struct SseTransport {
    config: HttpConfig,
}

impl SseTransport {
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
impl Transport for SseTransport {
    async fn connect(&self, _session: &SessionId) -> Result<Connection, Error> {
        Err(Error::NotImplemented { transport: "sse" })
    }

    fn description(&self) -> ServerDescription {
        ServerDescription {
            transport: "sse",
            endpoint: self.config.url.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connect_says_not_implemented_instead_of_panicking() {
        let transport = SseTransport::new(HttpConfig::new("http://127.0.0.1:1/sse").unwrap());
        let err = transport.connect(&SessionId::new("s")).await.unwrap_err();
        assert!(
            matches!(err, Error::NotImplemented { transport: "sse" }),
            "{err:?}"
        );
    }
}
