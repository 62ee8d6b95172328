//! A short session churn soak (the long one is `cargo xtask soak`): sessions
//! created, reaped and refused through a small registry, over stdio and
//! streamable HTTP against the bundled demo server. Nothing is lost, nothing
//! is left: no orphan process, no registry entry, no file descriptor.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use mcp_group::{ServerConfig, SessionLimitPolicy};
use mcp_group_test_kit::process::fd_targets;
use support::soak::{Plan, run};

fn check(report: &support::soak::Report, sessions: usize) {
    let summary = report.summary();
    assert_eq!(report.calls_failed, 0, "{summary}");
    assert_eq!(
        report.calls_ok,
        2 * sessions,
        "every session got both calls served, after being refused or not: {summary}"
    );
    assert_eq!(report.orphans, 0, "{summary}");
    assert_eq!(report.leaked_entries, 0, "{summary}");
    assert_eq!(
        report.fds_after,
        report.fds_before,
        "{summary}\n{:#?}",
        fd_targets()
    );
}

// One test, the transports in turn: file descriptors are counted for the
// whole process, so nothing else may run beside it (this file has no other).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_over_stdio_then_http_leaves_nothing_behind() {
    let sessions = 200;
    let report = run(Plan {
        server: support::demo_server(),
        sessions,
        callers: 16,
        max_sessions: 20,
        idle_timeout: Duration::from_millis(200),
        process_per_session: true,
        policy: SessionLimitPolicy::Reject,
    })
    .await;
    check(&report, sessions);
    assert!(
        report.server_pids > 20,
        "sessions churned: {}",
        report.summary()
    );

    let server = support::demo_http_server();
    let sessions = 500;
    let report = run(Plan {
        server: ServerConfig::streamable_http(server.url("/mcp")),
        sessions,
        callers: 32,
        max_sessions: 40,
        idle_timeout: Duration::from_millis(200),
        process_per_session: false,
        policy: SessionLimitPolicy::Reject,
    })
    .await;
    check(&report, sessions);
    assert!(
        report.created > 40,
        "sessions churned: {}",
        report.summary()
    );

    // The other two policies, over HTTP: nothing is refused, and still
    // nothing is lost or left. Evicting needs an idle session to evict, so
    // fewer callers than sessions allowed; waiting is tried with more
    // callers than sessions, so that callers do wait.
    for (policy, callers) in [
        (SessionLimitPolicy::EvictLruIdle, 16),
        (SessionLimitPolicy::Wait, 32),
    ] {
        let sessions = 300;
        let report = run(Plan {
            server: ServerConfig::streamable_http(server.url("/mcp")),
            sessions,
            callers,
            max_sessions: 20,
            idle_timeout: Duration::from_millis(200),
            process_per_session: false,
            policy,
        })
        .await;
        check(&report, sessions);
        assert_eq!(report.calls_limited, 0, "{policy:?}: {}", report.summary());
        assert!(
            report.max_live_sessions <= 20 + 1,
            "{policy:?} keeps the limit: {}",
            report.summary()
        );
    }
}
