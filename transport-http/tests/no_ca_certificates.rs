//! A machine without CA certificates (a bare container): building the HTTP
//! client is no panic, a plain-http server is still reachable, and an https
//! one is a typed error. The test runs itself again in a child process whose
//! certificate paths are empty, so that no other test sees that environment.
#![allow(clippy::unwrap_used)]

mod support;

use mcp_group_core::{SessionId, Transport};
use mcp_group_transport_http::{Error, HttpConfig, StreamableHttpTransport};
use support::{Reply, Request, Server, mcp_answer};

/// Set in the child process.
const CHILD: &str = "MCP_GROUP_TEST_NO_CA_CERTIFICATES";
const NAME: &str = "without_ca_certificates_plain_http_works_and_https_is_a_typed_error";

#[tokio::test]
async fn without_ca_certificates_plain_http_works_and_https_is_a_typed_error() {
    if std::env::var_os(CHILD).is_none() {
        let empty = std::env::temp_dir().join(format!("mcp-group-no-ca-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture"])
            .env(CHILD, "1")
            .env("SSL_CERT_FILE", empty.join("none.pem"))
            .env("SSL_CERT_DIR", &empty)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&empty);
        assert!(
            output.status.success() && String::from_utf8_lossy(&output.stdout).contains("1 passed"),
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        return;
    }

    let server = Server::start(|_| {
        |request: &Request| mcp_answer(request).unwrap_or_else(|| Reply::text(400, ""))
    })
    .await;
    let transport =
        StreamableHttpTransport::new(HttpConfig::new(server.url("/mcp")).unwrap()).unwrap();
    transport
        .connect(&SessionId::new("s").into())
        .await
        .unwrap();

    let err = StreamableHttpTransport::new(HttpConfig::new("https://mcp.example.com/mcp").unwrap())
        .unwrap_err();
    assert!(matches!(err, Error::Client { .. }), "{err:?}");
}
