//! The kit's own promises: scripted connects are answered in order and
//! checked, the in-memory servers answer, the waits end, logs are kept.
#![allow(clippy::unwrap_used)]

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    time::Duration,
};

use mcp_group_core::{Error, SessionId, SessionKey, Transport};
use mcp_group_test_kit::{
    Answer, Captured, EchoServer, InMemoryTransport, ScriptedTransport, eventually, wait_for,
};

fn sid(s: &str) -> SessionKey {
    SessionKey::new(SessionId::new(s))
}

/// The message of `assert_done`'s panic, or `None` if it passed.
fn done_failure(transport: &ScriptedTransport) -> Option<String> {
    let panic = catch_unwind(AssertUnwindSafe(|| transport.assert_done())).err()?;
    Some(panic.downcast_ref::<String>().cloned().unwrap_or_default())
}

#[tokio::test]
async fn scripted_connects_are_answered_in_order() {
    let transport = ScriptedTransport::new([Answer::refused(), Answer::Connect])
        .expect_for("b", Answer::after(async {}));
    let err = transport.connect(&sid("a")).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    let first = transport.connect(&sid("a")).await.unwrap();
    first.ping(Duration::from_secs(5)).await.unwrap();
    let second = transport.connect(&sid("b")).await.unwrap();
    assert_ne!(first.id(), second.id(), "a fresh server per connect");
    assert_eq!(transport.connects(), 3);
    assert_eq!(done_failure(&transport), None);
}

#[tokio::test]
async fn what_the_script_did_not_expect_or_never_saw_is_reported() {
    let transport = ScriptedTransport::new([]).expect_for("a", Answer::Connect);
    let err = transport.connect(&sid("b")).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    let failure = done_failure(&transport).expect("an unexpected connect");
    assert!(failure.contains("for session `b`"), "{failure}");

    let transport = ScriptedTransport::new([Answer::Connect, Answer::Never]);
    transport.connect(&sid("a")).await.unwrap();
    let failure = done_failure(&transport).expect("a connect that never came");
    assert!(failure.contains("Never"), "{failure}");
}

#[tokio::test]
async fn the_in_memory_echo_server_echoes_and_connects_are_counted() {
    let transport = InMemoryTransport::new(EchoServer::new());
    let connection = transport.connect(&sid("s")).await.unwrap();
    let out = connection
        .call_tool("echo", EchoServer::arguments("hi"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(out.to_text(), "Echo: hi");
    assert_eq!(transport.connects(), 1);
    connection.close().await;
}

#[tokio::test]
async fn waits_end_with_the_value_or_at_the_limit() {
    let mut polls = 0;
    let found = wait_for(Duration::from_secs(5), || {
        polls += 1;
        (polls == 3).then_some(polls)
    })
    .await;
    assert_eq!(found, Some(3));
    assert!(!eventually(Duration::from_millis(30), || false).await);
}

#[tokio::test(flavor = "current_thread")]
async fn captured_logs_keep_what_was_written() {
    let (captured, _default) = Captured::install(tracing::Level::INFO);
    tracing::info!("kept");
    tracing::debug!("above the level");
    let text = captured.text();
    assert!(
        text.contains("kept") && !text.contains("above the level"),
        "{text}"
    );
}
