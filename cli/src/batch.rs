//! `batch`: JSON lines `{"session","tool","args"}` from stdin, run
//! concurrently across sessions and in order within one; one JSON line per
//! result on stdout, exit code 2 if any line failed.

use std::{collections::BTreeMap, io::BufRead, io::Write, process::ExitCode, sync::Arc};

use mcp_group::{FunctionGroup, SessionId};
use serde_json::{Value, json};

use crate::{BoxError, ServerArgs, connect::connect, report};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchLine {
    #[serde(default)]
    session: Option<String>,
    tool: String,
    #[serde(default)]
    args: Value,
}

/// Connects, runs stdin's lines, shuts the group down.
pub(crate) async fn run(
    server: &ServerArgs,
    timeout: Option<std::time::Duration>,
) -> Result<ExitCode, BoxError> {
    let group = Arc::new(connect(server, timeout).await?);
    let code = batch(group.clone()).await?;
    group.shutdown().await;
    Ok(code)
}

async fn batch(group: Arc<FunctionGroup>) -> Result<ExitCode, BoxError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    // Read stdin on a blocking thread; dispatch each line to its session's queue.
    let reader = {
        let group = group.clone();
        let tx = tx.clone();
        tokio::task::spawn_blocking(move || -> Result<(), std::io::Error> {
            let handle = tokio::runtime::Handle::current();
            let mut queues: BTreeMap<String, tokio::sync::mpsc::UnboundedSender<BatchLine>> =
                BTreeMap::new();
            // Bytes, not `lines()`: a line that is not UTF-8 is one failed
            // line, not the end of the run.
            for (number, line) in std::io::stdin().lock().split(b'\n').enumerate() {
                let line = line?;
                let line = match String::from_utf8(line) {
                    Ok(line) => line,
                    Err(_) => {
                        let _ = tx.send(report::batch_bad_line(number + 1, "not UTF-8"));
                        continue;
                    }
                };
                if line.trim().is_empty() {
                    continue;
                }
                let request: BatchLine = match serde_json::from_str(&line) {
                    Ok(request) => request,
                    Err(e) => {
                        let _ = tx.send(report::batch_bad_line(number + 1, e));
                        continue;
                    }
                };
                let session = request
                    .session
                    .clone()
                    .unwrap_or_else(|| SessionId::DEFAULT.to_owned());
                let queue = queues.entry(session.clone()).or_insert_with(|| {
                    let (qtx, mut qrx) = tokio::sync::mpsc::unbounded_channel::<BatchLine>();
                    let group = group.clone();
                    let tx = tx.clone();
                    handle.spawn(async move {
                        let id = SessionId::from(session.clone());
                        while let Some(request) = qrx.recv().await {
                            let result = group.call(Some(&id), &request.tool, request.args).await;
                            let _ = tx.send(report::batch_result(&session, &request.tool, result));
                        }
                    });
                    qtx
                });
                let _ = queue.send(request);
            }
            Ok(())
        })
    };
    drop(tx);
    let mut failed = 0usize;
    let mut out = std::io::stdout();
    while let Some(line) = rx.recv().await {
        if line["ok"] != json!(true) {
            failed += 1;
        }
        writeln!(out, "{line}")?;
    }
    reader.await.map_err(|e| e.to_string())??;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
