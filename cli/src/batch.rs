//! `batch`: JSON lines `{"session","principal","tool","args"}` from stdin
//! (`session` and `principal` optional), run concurrently across sessions
//! and in order within one; one JSON line per result on stdout, exit code 2
//! if any line failed. A session is its id under its principal: the same id
//! with another principal (or none) is another session.

use std::{collections::BTreeMap, io::BufRead, io::Write, process::ExitCode, sync::Arc};

use mcp_group::{FunctionGroup, SessionId, SessionKey};
use serde_json::{Value, json};
use tokio::{sync::mpsc, task::JoinSet};

use crate::{BoxError, ServerArgs, connect::connect, report, signals};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchLine {
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    principal: Option<String>,
    tool: String,
    #[serde(default)]
    args: Value,
}

/// Connects, runs stdin's lines, shuts the group down; SIGINT and SIGTERM
/// stop it (see `signals`).
pub(crate) async fn run(
    server: &ServerArgs,
    timeout: Option<std::time::Duration>,
) -> Result<ExitCode, BoxError> {
    signals::run_with_group(connect(server, timeout), batch).await
}

/// Runs every line of stdin, each session's in order on a task of its own,
/// and prints the results as they come. Dropped, it cancels every call.
async fn batch(group: Arc<FunctionGroup>) -> Result<ExitCode, BoxError> {
    // stdin is read on a thread of its own that holds nothing but the
    // channel: a blocking read cannot be cancelled, and must not keep the
    // group (or the runtime's shutdown) waiting.
    // Lines are read as bytes, not with `lines()`: a line that is not UTF-8
    // is one failed line (`Err(bytes)`), not the end of the run.
    let (lines_tx, mut lines) =
        mpsc::unbounded_channel::<std::io::Result<Result<String, Vec<u8>>>>();
    std::thread::Builder::new()
        .name("batch-stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().split(b'\n') {
                let failed = line.is_err();
                let line = line.map(|bytes| String::from_utf8(bytes).map_err(|e| e.into_bytes()));
                if lines_tx.send(line).is_err() || failed {
                    break;
                }
            }
        })?;
    // The sessions' tasks send their results here; the sender kept here
    // goes when stdin ends, and the channel closes after the last task.
    let (results_tx, mut results) = mpsc::unbounded_channel::<Value>();
    let mut results_tx = Some(results_tx);
    let mut sessions = JoinSet::new();
    let mut queues: BTreeMap<SessionKey, mpsc::UnboundedSender<BatchLine>> = BTreeMap::new();
    let mut out = std::io::stdout();
    let mut failed = 0usize;
    let mut number = 0usize;
    let mut read_error = None;
    let mut reading = true;
    loop {
        tokio::select! {
            line = lines.recv(), if reading => {
                let line = match line {
                    Some(Ok(Ok(line))) => line,
                    Some(Ok(Err(_not_utf8))) => {
                        number += 1;
                        failed += 1;
                        writeln!(out, "{}", report::batch_bad_line(number, "not UTF-8"))?;
                        continue;
                    }
                    end => {
                        if let Some(Err(e)) = end {
                            read_error = Some(e);
                        }
                        // No more lines: each session's task ends after its
                        // queue, and with the last one the results channel.
                        reading = false;
                        queues.clear();
                        results_tx = None;
                        continue;
                    }
                };
                number += 1;
                if line.trim().is_empty() {
                    continue;
                }
                let request: BatchLine = match serde_json::from_str(&line) {
                    Ok(request) => request,
                    Err(e) => {
                        failed += 1;
                        writeln!(out, "{}", report::batch_bad_line(number, e))?;
                        continue;
                    }
                };
                // A line without a session runs in the default session; a
                // line's id never names it.
                let session = match request.session.as_deref().map(SessionId::try_new).transpose() {
                    Ok(session) => session.unwrap_or_default(),
                    Err(e) => {
                        failed += 1;
                        writeln!(out, "{}", report::batch_bad_line(number, e))?;
                        continue;
                    }
                };
                let key = SessionKey::with_principal(request.principal.as_deref(), session);
                let Some(results_tx) = &results_tx else {
                    continue;
                };
                let queue = queues.entry(key.clone()).or_insert_with(|| {
                    let (queue, mut requests) = mpsc::unbounded_channel::<BatchLine>();
                    let group = group.clone();
                    let results = results_tx.clone();
                    sessions.spawn(async move {
                        while let Some(request) = requests.recv().await {
                            let result = group
                                .call_as(Some(key.session()), key.principal(), &request.tool, request.args)
                                .await;
                            let _ = results.send(report::batch_result(&key, &request.tool, result));
                        }
                    });
                    queue
                });
                let _ = queue.send(request);
            }
            Some(result) = results.recv() => {
                if result["ok"] != json!(true) {
                    failed += 1;
                }
                writeln!(out, "{result}")?;
            }
            else => break,
        }
    }
    if let Some(e) = read_error {
        return Err(e.into());
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
