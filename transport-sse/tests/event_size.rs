//! An event stream that never ends its event: alone in its test binary, so
//! that the memory it measures is this test's.
#![allow(clippy::unwrap_used)]

#[path = "../../transport-http/tests/support/mod.rs"]
mod support;

use mcp_group_core::{Error as CoreError, SessionId, Transport};
use mcp_group_transport_sse::{Error, HttpConfig, SseTransport};
use support::{Reply, Server, peak_rss_kib};

#[tokio::test]
async fn a_150_mib_event_without_terminator_is_a_typed_error_with_bounded_memory() {
    let server = Server::start(|_| {
        |_: &support::Request| Reply::Stream {
            content_type: "text/event-stream",
            prefix: b"event: endpoint\ndata: ".to_vec(),
            filler: vec![b'x'; 64 << 10],
            total: Some(150 << 20),
        }
    })
    .await;
    let transport = SseTransport::new(HttpConfig::new(server.url("/sse")).unwrap()).unwrap();
    let before = peak_rss_kib();

    let err = transport
        .connect(&SessionId::new("s").into())
        .await
        .unwrap_err();

    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
    let source = match &err {
        CoreError::Connect { source, .. } | CoreError::Handshake { source, .. } => {
            source.downcast_ref::<Error>()
        }
        _ => None,
    };
    assert!(
        matches!(source, Some(Error::EventTooLarge { limit }) if *limit == 16 << 20),
        "{err:?}"
    );
    assert!(
        grown_mib < 64,
        "peak memory stays bounded: grew {grown_mib} MiB"
    );
}
