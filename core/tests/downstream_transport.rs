//! A transport written the way a downstream crate would write one: against
//! `mcp-group-core` alone, opening the test kit's in-memory pipe to an rmcp
//! server and attaching a cleanup to each connection.
#![allow(clippy::unwrap_used)]

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};
use std::time::Duration;

use mcp_group_core::{
    Cleanup, Connection, DynTransport, Error, ServerDescription, SessionId, SessionKey, Transport,
    async_trait,
};
use mcp_group_test_kit::{EchoServer, connect_in_memory};

/// Counts cleanups so the test can see `close` run them.
struct CountCleanup(Arc<AtomicUsize>);

#[async_trait]
impl Cleanup for CountCleanup {
    async fn cleanup(self: Box<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// An in-memory transport: each `connect` starts a fresh server task on a
/// duplex pipe.
struct InMemory {
    cleanups: Arc<AtomicUsize>,
}

#[async_trait]
impl Transport for InMemory {
    async fn connect(&self, _session: &SessionKey) -> Result<Connection, Error> {
        let connection = connect_in_memory(EchoServer::new(), "in-memory").await?;
        Ok(connection.with_cleanup(CountCleanup(self.cleanups.clone())))
    }

    fn description(&self) -> ServerDescription {
        ServerDescription {
            transport: "in-memory",
            endpoint: "in-memory".into(),
        }
    }
}

#[tokio::test]
async fn a_downstream_transport_lists_and_calls_tools() {
    let cleanups = Arc::new(AtomicUsize::new(0));
    let transport: DynTransport = Arc::new(InMemory {
        cleanups: cleanups.clone(),
    });
    let connection = transport
        .connect(&SessionId::new("s").into())
        .await
        .unwrap();
    let tools = connection.list_tools(Duration::from_secs(5)).await.unwrap();
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0].name, "echo");
    assert_eq!(tools[0].description.as_deref(), Some("Echo the message"));

    let output = connection
        .call_tool("echo", EchoServer::arguments("Ada"), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(!output.is_error());
    assert_eq!(output.to_text(), "Echo: Ada");

    connection.ping(Duration::from_secs(5)).await.unwrap();
    // The in-memory rmcp server speaks both eras; negotiation picks the
    // newer.
    assert_eq!(
        connection.server_info().unwrap().protocol_version.as_str(),
        "2026-07-28"
    );
    assert_eq!(connection.era(), Some(mcp_group_core::Era::Modern));

    assert!(!connection.is_closed());
    connection.close().await;
    assert!(connection.is_closed());
    assert_eq!(
        cleanups.load(Ordering::SeqCst),
        1,
        "close runs the cleanup once"
    );
    connection.close().await;
    assert_eq!(cleanups.load(Ordering::SeqCst), 1, "close is idempotent");
}

#[tokio::test]
async fn closed_resolves_when_the_server_goes_away() {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        // A modern-era server settles its lifecycle only at the first
        // request, so `serve` may still be running when the stop comes;
        // either way, dropping it ends the server's side of the pipe.
        let serving = async {
            let running = rmcp::ServiceExt::serve(EchoServer::new(), server).await;
            if let Ok(running) = running {
                let _ = running.waiting().await;
            }
        };
        tokio::select! {
            () = serving => {}
            _ = stopped => {}
        }
    });
    let (read, write) = tokio::io::split(client);
    let connection = Connection::establish((read, write), "in-memory")
        .await
        .unwrap();
    assert!(!connection.is_closed());
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), connection.closed())
        .await
        .expect("closed() resolves without a call on the connection");
    assert!(connection.is_closed());
    // Once ended, it stays resolved.
    connection.closed().await;
}

#[tokio::test]
async fn an_unknown_tool_on_the_wire_is_a_protocol_error() {
    let transport = InMemory {
        cleanups: Arc::default(),
    };
    let connection = transport
        .connect(&SessionId::new("s").into())
        .await
        .unwrap();
    let err = connection
        .call_tool("missing", Default::default(), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    connection.close().await;
}

#[tokio::test]
async fn calls_on_a_closed_connection_say_the_server_is_gone() {
    let transport = InMemory {
        cleanups: Arc::default(),
    };
    let connection = transport
        .connect(&SessionId::new("s").into())
        .await
        .unwrap();
    connection.close().await;
    let err = connection.ping(Duration::from_secs(5)).await.unwrap_err();
    assert!(err.is_connection_lost(), "{err:?}");
}

#[test]
fn public_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Connection>();
    assert_send_sync::<DynTransport>();
    assert_send_sync::<Error>();
    assert_send_sync::<SessionId>();
    assert_send_sync::<mcp_group_core::ToolOutput>();
}
