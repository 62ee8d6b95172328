//! Reliability under faults, over stdio against the bundled demo server and
//! misbehaving one-liners: no duplicate execution, cancellation at any point,
//! multiplexing, a server killed mid-call, servers that never answer or answer
//! garbage, shutdown in flight.
#![allow(clippy::unwrap_used)]

mod support;

use std::{sync::Arc, time::Duration};

use mcp_group::core::Error as CoreError;
use mcp_group::{Error, FunctionGroup, SessionId};
use mcp_group_test_kit::{process::rss_kib, process_exists, wait_gone};
use serde_json::json;
use support::{config, demo_server, whoami};

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
    assert!(
        matches!(err, Error::Mcp(CoreError::Timeout { .. })),
        "{err:?}"
    );
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
                matches!(result, Err(Error::ToolError { .. })),
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
    assert!(matches!(err, Error::Shutdown), "{err:?}");
}

/// Waits (bounded) until `refs` leases of `session` are held.
async fn until_leased(group: &FunctionGroup, session: &SessionId, refs: u64) {
    for _ in 0..2_000 {
        if group
            .peek_session(session)
            .is_some_and(|info| info.ref_count == refs)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{session} never reached {refs} leases");
}

fn kill(pid: u32) {
    // SAFETY: sending a signal has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill {pid}");
}

#[tokio::test]
async fn a_server_killed_mid_call_fails_the_calls_at_once_and_one_reconnect_serves_them_all() {
    let mut config = config(demo_server());
    config.tool_call_timeout = Duration::from_secs(60);
    let group = Arc::new(FunctionGroup::connect(config).await.unwrap());
    let s = SessionId::new("s");
    let (pid, _) = whoami(&group.call(Some(&s), "whoami", json!({})).await.unwrap());
    let created = group.stats().created;

    let calls: Vec<_> = (0..4)
        .map(|_| {
            let (group, s) = (group.clone(), s.clone());
            tokio::spawn(async move { group.call(Some(&s), "sleep", json!({"ms": 60_000})).await })
        })
        .collect();
    until_leased(&group, &s, 4).await;
    kill(pid);
    for call in calls {
        // Far sooner than the 60 s call timeout: the closed pipe ends them.
        let result = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("the call ends when its server dies")
            .unwrap();
        let err = result.unwrap_err();
        assert!(err.is_connection_lost(), "{err:?}");
    }
    assert!(wait_gone(pid).await, "the killed server is reaped");

    // Concurrent callers after the failure share one new connection.
    let again: Vec<_> = (0..4)
        .map(|_| {
            let (group, s) = (group.clone(), s.clone());
            tokio::spawn(async move { group.call(Some(&s), "whoami", json!({})).await })
        })
        .collect();
    let mut pids = Vec::new();
    for call in again {
        pids.push(whoami(&call.await.unwrap().unwrap()).0);
    }
    assert!(pids.iter().all(|p| *p == pids[0] && *p != pid), "{pids:?}");
    assert_eq!(group.stats().created, created + 1, "one reconnect for all");
    group.shutdown().await;
}

#[tokio::test]
async fn the_tool_list_watcher_sees_its_base_connection_die() {
    let mut config = config(demo_server());
    config.max_sessions = 2;
    let group = FunctionGroup::connect(config).await.unwrap();
    let mut changes = group.subscribe();
    let (base, _) = whoami(&group.call(None, "whoami", json!({})).await.unwrap());
    let created = group.stats().created;
    kill(base);
    // No call needed: the watcher notices the death, reconnects the default
    // session and lists the tools again.
    let changed = tokio::time::timeout(Duration::from_secs(20), changes.recv())
        .await
        .expect("the tools are re-listed after the base connection died")
        .unwrap();
    assert_eq!(changed.functions.len(), group.functions().len());
    assert_eq!(group.stats().created, created + 1, "a new base connection");
    assert_eq!(
        group.session_count(),
        1,
        "the dead default session is gone, its replacement counts once"
    );
    assert!(
        mcp_group_test_kit::wait_gone(base).await,
        "the dead server is reaped"
    );
    let (replacement, calls) = whoami(&group.call(None, "whoami", json!({})).await.unwrap());
    assert_ne!(replacement, base);
    assert_eq!(calls, 1, "a fresh server");
    // With max_sessions = 2, the replacement and one more session fit.
    let other = SessionId::new("other");
    group.call(Some(&other), "whoami", json!({})).await.unwrap();
    group.shutdown().await;
}

#[tokio::test]
async fn cancelling_a_call_at_every_await_point_leaves_the_ref_count_true() {
    use std::{
        future::Future,
        pin::pin,
        task::{Context, Wake, Waker},
    };

    /// Wakes the test when the call can make progress.
    struct Progress(tokio::sync::Notify);
    impl Wake for Progress {
        fn wake(self: Arc<Self>) {
            self.0.notify_one();
        }
    }

    let group = FunctionGroup::connect(config(demo_server())).await.unwrap();
    let s = SessionId::new("s");
    // Cancel after 0, 1, 2, … steps, a step being one poll after the call
    // was woken: before the session exists, while it is being created, while
    // the request is in flight, as the answer arrives. Counting wake-ups, not
    // time, makes the points the same on a slow machine.
    let mut completed = false;
    for polls in 0..500 {
        {
            let progress = Arc::new(Progress(tokio::sync::Notify::new()));
            let waker = Waker::from(progress.clone());
            let mut cx = Context::from_waker(&waker);
            let mut call = pin!(group.call(Some(&s), "echo", json!({"message": "x"})));
            for step in 0..polls {
                if step > 0 {
                    progress.0.notified().await;
                }
                if call.as_mut().poll(&mut cx).is_ready() {
                    completed = true;
                    break;
                }
            }
        } // dropped here, at whatever point it had reached
        if let Some(info) = group.peek_session(&s) {
            assert_eq!(info.ref_count, 0, "after cancelling at poll {polls}");
        }
        if completed {
            break;
        }
    }
    assert!(completed, "some run got far enough to finish");
    let out = group
        .call(Some(&s), "echo", json!({"message": "after"}))
        .await
        .unwrap();
    assert_eq!(out.to_text(), "Echo: after");
    assert_eq!(group.peek_session(&s).unwrap().ref_count, 0);
    group.shutdown().await;
}

/// A stdio "server" that is a shell or Python one-liner.
fn odd_server(program: &str, args: &[&str]) -> mcp_group::McpClientConfig {
    let mut config = config(mcp_group::ServerConfig::stdio(
        program,
        args.iter().copied(),
    ));
    config.tool_call_timeout = Duration::from_millis(1_500);
    config.reconnect_max_attempts = 1;
    config
}

async fn connect_fails(config: mcp_group::McpClientConfig) -> CoreError {
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(20), FunctionGroup::connect(config))
        .await
        .expect("no hang")
        .map(|_| ())
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "bounded by the timeout: {:?}",
        started.elapsed()
    );
    match err {
        mcp_group::Error::Mcp(err) => err,
        other => panic!("expected an MCP error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_server_that_never_answers_initialize_is_a_timeout() {
    let err = connect_fails(odd_server("sleep", &["60"])).await;
    assert!(matches!(err, CoreError::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn garbage_on_stdout_is_a_typed_error_not_a_hang() {
    let err = connect_fails(odd_server(
        "sh",
        &[
            "-c",
            "echo 'this is not JSON-RPC'; echo '{\"jsonrpc\":\"1.0\"}'; sleep 60",
        ],
    ))
    .await;
    assert!(
        matches!(err, CoreError::Timeout { .. } | CoreError::Handshake { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_ten_mib_line_is_a_typed_error_with_bounded_memory() {
    let before = rss_kib();
    let err = connect_fails(odd_server(
        "python3",
        &[
            "-c",
            "import sys, time; sys.stdout.write('x' * (10 << 20) + '\\n'); sys.stdout.flush(); time.sleep(60)",
        ],
    ))
    .await;
    assert!(
        matches!(err, CoreError::Timeout { .. } | CoreError::Handshake { .. }),
        "{err:?}"
    );
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    assert!(grown_mib < 64, "memory stays bounded: grew {grown_mib} MiB");
}
