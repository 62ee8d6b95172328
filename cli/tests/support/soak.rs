//! The session churn soak, shared by `tests/soak.rs` (a short run in CI) and
//! `benches/e2e.rs --soak` (`cargo xtask soak`, the long run with a summary).
//!
//! Callers take fresh session ids one after another and make two calls in
//! each (`echo`, then `whoami`, which names the serving process); the group
//! has a small `max_sessions` and a short idle timeout, so sessions are
//! created, reaped and refused all along. Afterwards every session is
//! cleaned up and the group shut down, and the report says what was left.

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use mcp_group::{
    Error, FunctionGroup, McpClientConfig, ServerConfig, SessionId, SessionLimitPolicy,
};
use mcp_group_test_kit::{
    eventually,
    process::{PATIENCE, open_fds, process_running, rss_kib},
};
use serde_json::json;

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub server: ServerConfig,
    pub sessions: usize,
    pub callers: usize,
    pub max_sessions: usize,
    pub idle_timeout: Duration,
    /// Each session has its own server process (stdio), which must be gone
    /// after shutdown.
    pub process_per_session: bool,
    /// What a full registry does with a new session.
    pub policy: SessionLimitPolicy,
}

/// What happened, and what was left behind.
#[derive(Debug, Default)]
pub struct Report {
    pub calls_ok: usize,
    pub calls_limited: usize,
    /// Any other error, with the first one's text.
    pub calls_failed: usize,
    pub first_failure: Option<String>,
    pub created: u64,
    pub max_live_sessions: usize,
    /// Server processes seen (stdio: one per session).
    pub server_pids: usize,
    /// Of those, still running after shutdown.
    pub orphans: usize,
    /// Registry entries left after the final cleanup.
    pub leaked_entries: usize,
    pub fds_before: usize,
    pub fds_after: usize,
    pub rss_kib_before: u64,
    pub rss_kib_peak_seen: u64,
    pub rss_kib_after: u64,
    pub elapsed: Duration,
}

impl Report {
    /// One line per figure.
    pub fn summary(&self) -> String {
        format!(
            "calls ok {ok}, refused (SessionLimitReached) {limited}, failed otherwise {failed}{first}\n\
             sessions created {created}, most live at once {live}\n\
             server processes {pids}, orphans after shutdown {orphans}, leaked entries {leaked}\n\
             open fds {fb} -> {fa}; RSS {rb} KiB -> peak {rp} KiB -> {ra} KiB\n\
             took {secs:.1} s",
            ok = self.calls_ok,
            limited = self.calls_limited,
            failed = self.calls_failed,
            first = self
                .first_failure
                .as_ref()
                .map(|f| format!(" (first: {f})"))
                .unwrap_or_default(),
            created = self.created,
            live = self.max_live_sessions,
            pids = self.server_pids,
            orphans = self.orphans,
            leaked = self.leaked_entries,
            fb = self.fds_before,
            fa = self.fds_after,
            rb = self.rss_kib_before,
            rp = self.rss_kib_peak_seen,
            ra = self.rss_kib_after,
            secs = self.elapsed.as_secs_f64(),
        )
    }
}

/// A demo server process still running (not a zombie, not a reused pid).
fn demo_server_alive(pid: u32) -> bool {
    process_running(pid, "demo-server")
}

pub async fn run(plan: Plan) -> Report {
    let started = Instant::now();
    let mut config = McpClientConfig::new(plan.server.clone());
    config.max_sessions = plan.max_sessions;
    config.session_idle_timeout = plan.idle_timeout;
    config.tool_call_timeout = Duration::from_secs(30);
    config.session_limit_policy = plan.policy;
    config.session_limit_wait = Duration::from_secs(10);
    let fds_before = open_fds();
    let rss_kib_before = rss_kib();
    let group = Arc::new(FunctionGroup::connect(config).await.expect("connect"));

    let next = Arc::new(AtomicUsize::new(0));
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..plan.callers {
        let (group, next, total) = (group.clone(), next.clone(), plan.sessions);
        callers.spawn(async move {
            let mut report = Report::default();
            let mut pids = BTreeSet::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let session = SessionId::new(format!("soak-{i}"));
                // A refused session is counted and tried again a little
                // later, when idle sessions have expired (pacing, not a
                // race: any interleaving is correct).
                let mut echo;
                let mut attempts = 0;
                loop {
                    echo = group
                        .call(Some(&session), "echo", json!({"message": i.to_string()}))
                        .await;
                    attempts += 1;
                    match &echo {
                        Err(Error::SessionLimitReached { .. }) if attempts < 1_000 => {
                            report.calls_limited += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        _ => break,
                    }
                }
                let whoami = match echo {
                    Ok(out) => {
                        assert_eq!(out.to_text(), format!("Echo: {i}"), "nothing lost or mixed");
                        report.calls_ok += 1;
                        group.call(Some(&session), "whoami", json!({})).await
                    }
                    Err(e) => Err(e),
                };
                match whoami {
                    Ok(out) => {
                        report.calls_ok += 1;
                        let v: serde_json::Value =
                            serde_json::from_str(&out.to_text()).expect("whoami is JSON");
                        if let Some(pid) = v["pid"].as_u64() {
                            pids.insert(pid as u32);
                        }
                    }
                    Err(Error::SessionLimitReached { .. }) => report.calls_limited += 1,
                    Err(e) => {
                        report.calls_failed += 1;
                        report.first_failure.get_or_insert_with(|| e.to_string());
                    }
                }
                report.max_live_sessions = report.max_live_sessions.max(group.session_count());
            }
            (report, pids)
        });
    }
    let mut report = Report::default();
    let mut pids = BTreeSet::new();
    let mut peak = rss_kib();
    while let Some(done) = callers.join_next().await {
        let (part, seen) = done.expect("caller");
        report.calls_ok += part.calls_ok;
        report.calls_limited += part.calls_limited;
        report.calls_failed += part.calls_failed;
        if report.first_failure.is_none() {
            report.first_failure = part.first_failure;
        }
        report.max_live_sessions = report.max_live_sessions.max(part.max_live_sessions);
        pids.extend(seen);
        peak = peak.max(rss_kib());
    }
    report.created = group.stats().created;
    group.cleanup_sessions(Some(Duration::ZERO)).await;
    // The default session stays: the group's tool-list watcher holds it.
    let default_held = group
        .peek_session(&SessionId::default_session())
        .is_some_and(|info| info.ref_count > 0);
    report.leaked_entries = group.session_count() - usize::from(default_held);
    group.shutdown().await;
    drop(group);
    // Killed servers leave the process table asynchronously (SIGKILL, then
    // the reaper task): bounded wait per pid.
    for &pid in pids.iter().filter(|_| plan.process_per_session) {
        eventually(PATIENCE, || !demo_server_alive(pid)).await;
    }
    report.server_pids = pids.len();
    if plan.process_per_session {
        report.orphans = pids.iter().filter(|&&pid| demo_server_alive(pid)).count();
    }
    // Connections of a dropped HTTP pool close in their own tasks, once they
    // see the pool gone: bounded wait for that, not a fixed sleep.
    eventually(Duration::from_secs(5), || open_fds() <= fds_before).await;
    report.fds_before = fds_before;
    report.fds_after = open_fds();
    report.rss_kib_before = rss_kib_before;
    report.rss_kib_peak_seen = peak;
    report.rss_kib_after = rss_kib();
    report.elapsed = started.elapsed();
    report
}
