//! Reliability under faults, over stdio against the bundled demo server:
//! no duplicate execution, cancellation, multiplexing, shutdown in flight.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used)]

mod support;

use std::{sync::Arc, time::Duration};

use mcp_group::{FunctionGroup, McpError, SessionId};
use serde_json::json;
use support::{config, demo_server, process_exists, whoami};

#[tokio::test]
async fn a_timed_out_call_is_never_replayed() {
    let mut config = config(demo_server());
    config.tool_call_timeout = Duration::from_millis(300);
    let group = FunctionGroup::connect(config).await.unwrap();
    let s = SessionId::new("s");
    let err = group
        .call(Some(&s), "tally", json!({"ms": 5_000}))
        .await
        .unwrap_err();
    assert!(matches!(err, McpError::Timeout { .. }), "{err:?}");
    let count = group
        .call(Some(&s), "tallied", json!({}))
        .await
        .unwrap()
        .to_text();
    assert_eq!(count, "1", "the non-idempotent tool ran exactly once");
    group.shutdown().await;
}

#[tokio::test]
async fn a_cancelled_call_releases_its_lease_and_the_session_stays_usable() {
    let group = Arc::new(FunctionGroup::connect(config(demo_server())).await.unwrap());
    let s = SessionId::new("s");
    let (pid, _) = whoami(&group.call(Some(&s), "whoami", json!({})).await.unwrap());
    let call = {
        let group = group.clone();
        let s = s.clone();
        tokio::spawn(async move { group.call(Some(&s), "sleep", json!({"ms": 60_000})).await })
    };
    // Wait (bounded) until the call holds the session's lease.
    let mut running = false;
    for _ in 0..1_000 {
        if group
            .peek_session(&s)
            .is_some_and(|info| info.ref_count == 1)
        {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(running, "the call holds the session");
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    assert_eq!(
        group.peek_session(&s).unwrap().ref_count,
        0,
        "the lease was released"
    );
    let (pid_after, calls) = whoami(&group.call(Some(&s), "whoami", json!({})).await.unwrap());
    assert_eq!(
        (pid_after, calls),
        (pid, 2),
        "same connection, still usable"
    );
    group.shutdown().await;
}

#[tokio::test]
async fn concurrent_calls_share_one_connection_and_a_failure_poisons_none() {
    let group = Arc::new(FunctionGroup::connect(config(demo_server())).await.unwrap());
    let s = SessionId::new("busy");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let group = group.clone();
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            if i % 5 == 0 {
                group
                    .call(Some(&s), "fail", json!({"message": "boom"}))
                    .await
                    .map(|o| o.to_text())
            } else {
                group
                    .call(Some(&s), "echo", json!({"message": i.to_string()}))
                    .await
                    .map(|o| o.to_text())
            }
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        if i % 5 == 0 {
            assert!(
                matches!(result, Err(McpError::ToolError { .. })),
                "{i}: {result:?}"
            );
        } else {
            assert_eq!(result.unwrap(), format!("Echo: {i}"));
        }
    }
    assert_eq!(
        group.stats().created,
        2,
        "the default session and one connection for all 20 calls"
    );
    group.shutdown().await;
}

#[tokio::test]
async fn shutdown_with_calls_in_flight_leaves_no_process_behind() {
    let group = Arc::new(FunctionGroup::connect(config(demo_server())).await.unwrap());
    let mut pids = Vec::new();
    let mut in_flight = Vec::new();
    for name in ["a", "b", "c"] {
        let s = SessionId::new(name);
        pids.push(whoami(&group.call(Some(&s), "whoami", json!({})).await.unwrap()).0);
        let group = group.clone();
        in_flight.push(tokio::spawn(async move {
            group.call(Some(&s), "sleep", json!({"ms": 60_000})).await
        }));
    }
    let default_pid = whoami(&group.call(None, "whoami", json!({})).await.unwrap()).0;
    group.shutdown().await;
    for call in in_flight {
        // Each in-flight call ends, with an error, once its connection closes.
        let result = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .unwrap()
            .unwrap();
        assert!(result.is_err(), "{result:?}");
    }
    for pid in pids.into_iter().chain([default_pid]) {
        assert!(!process_exists(pid), "server {pid} is gone after shutdown");
    }
    let err = group
        .call(None, "echo", json!({"message": "late"}))
        .await
        .unwrap_err();
    assert!(matches!(err, McpError::Shutdown), "{err:?}");
}
