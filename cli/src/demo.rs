//! `demo`: the main job on the bundled demo server. Several sessions call
//! `add` and `whoami` concurrently; the demo shows which server process (one
//! per session) served each call, reaps the idle sessions and prints a
//! summary. It exits non-zero unless every session had its own connection.

use std::{
    collections::{BTreeMap, HashSet},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use mcp_group::{FunctionGroup, McpClientConfig, ServerConfig, SessionId};
use serde_json::{Value, json};

use crate::{BoxError, signals};

/// Runs the demo with `sessions` sessions (at least two); SIGINT and
/// SIGTERM stop it (see `signals`).
pub(crate) async fn run(sessions: usize, timeout: Option<Duration>) -> Result<ExitCode, BoxError> {
    let exe = std::env::current_exe()?;
    let mut config = McpClientConfig::new(ServerConfig::stdio(
        exe.to_string_lossy().into_owned(),
        ["demo-server"],
    ));
    if let Some(timeout) = timeout {
        config.tool_call_timeout = timeout;
    }
    println!(
        "Starting the bundled demo MCP server over stdio: {} demo-server",
        exe.display()
    );
    let connect = async { Ok(FunctionGroup::connect(config).await?) };
    signals::run_with_group(connect, |group| demo(group, sessions)).await
}

/// The demo on a connected group (`run` shuts it down afterwards).
async fn demo(group: Arc<FunctionGroup>, sessions: usize) -> Result<ExitCode, BoxError> {
    println!("Negotiated {}", crate::report::era_line(group.era()));
    println!("Tools exposed by the group:");
    for f in group.functions() {
        println!("  {:<8} {}", f.name(), f.description().unwrap_or(""));
    }

    let names: Vec<String> = ["alice", "bob", "carol", "dave", "erin", "frank"]
        .iter()
        .cycle()
        .take(sessions.max(2))
        .enumerate()
        .map(|(i, n)| {
            if i < 6 {
                n.to_string()
            } else {
                format!("{n}{i}")
            }
        })
        .collect();
    println!(
        "\nCalling from {} sessions concurrently (3 calls each):",
        names.len()
    );
    let mut tasks = tokio::task::JoinSet::new();
    for name in &names {
        for call in 1..=3u32 {
            let group = group.clone();
            let name = name.clone();
            tasks.spawn(async move {
                let session = SessionId::new(&name);
                let sum = group
                    .call(Some(&session), "add", json!({"a": call, "b": 100}))
                    .await
                    .map(|o| o.to_text());
                let who = group.call(Some(&session), "whoami", Value::Null).await;
                (name, call, sum, who.map(|o| o.to_text()))
            });
        }
    }
    let mut rows = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        rows.push(joined?);
    }
    rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut pids_by_session: BTreeMap<String, HashSet<u64>> = BTreeMap::new();
    for (name, call, sum, who) in rows {
        let sum = sum?;
        let who: Value = serde_json::from_str(&who?)?;
        let pid = who["pid"].as_u64().unwrap_or(0);
        println!(
            "  session {name:<6} call {call}: add({call}, 100) = {sum:<4} served by server pid {pid} (whoami call #{} on that connection)",
            who["calls"]
        );
        pids_by_session.entry(name).or_default().insert(pid);
    }
    let all_pids: HashSet<u64> = pids_by_session.values().flatten().copied().collect();
    let each_session_one_connection = pids_by_session.values().all(|p| p.len() == 1);

    let open = group.session_count();
    let reaped = group.cleanup_sessions(Some(Duration::ZERO)).await;
    let stats = group.stats();
    println!("\nSummary:");
    println!("  sessions served:            {}", pids_by_session.len());
    println!("  distinct server processes:  {}", all_pids.len());
    println!(
        "  one connection per session: {}",
        if each_session_one_connection {
            "yes"
        } else {
            "NO"
        }
    );
    println!(
        "  connections opened:         {} (incl. the default session that listed the tools)",
        stats.created
    );
    println!("  calls served by reuse:      {}", stats.reused);
    println!(
        "  idle sessions reaped:       {reaped} of {open}; {} left",
        group.session_count()
    );
    if all_pids.len() >= 2 && all_pids.len() == pids_by_session.len() && each_session_one_connection
    {
        println!("OK: every session had its own MCP client.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("FAILED: sessions did not get distinct connections.");
        Ok(ExitCode::FAILURE)
    }
}
