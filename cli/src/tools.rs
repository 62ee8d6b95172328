//! `tools list`, `tools call` and `ping`: one connection, one request, the
//! result on stdout. SIGINT and SIGTERM stop them (see `signals`).

use std::{process::ExitCode, time::Duration};

use mcp_group::SessionId;
use serde_json::Value;

use crate::{BoxError, ServerArgs, connect::connect, progress, report, signals};

/// `tools list [--detail] [--json]`.
pub(crate) async fn list(
    server: &ServerArgs,
    detail: bool,
    json: bool,
    timeout: Option<Duration>,
) -> Result<ExitCode, BoxError> {
    signals::run_with_group(connect(server, timeout), |group| async move {
        report::tools(&group.functions(), group.era(), detail, json)?;
        Ok(ExitCode::SUCCESS)
    })
    .await
}

/// `tools call TOOL [--args JSON] [--session ID]`: the result's text.
pub(crate) async fn call(
    server: &ServerArgs,
    tool: &str,
    args: &str,
    session: Option<String>,
    timeout: Option<Duration>,
) -> Result<ExitCode, BoxError> {
    let arguments: Value =
        serde_json::from_str(args).map_err(|e| format!("--args is not valid JSON: {e}"))?;
    let session = session.map(SessionId::try_new).transpose()?;
    signals::run_with_group(connect(server, timeout), |group| async move {
        let call = group.call(session.as_ref(), tool, arguments);
        let (output, _) = progress::with_progress(call, tool, progress::target()).await;
        let output = output?;
        println!("{}", report::printable(&output.to_text()));
        Ok(ExitCode::SUCCESS)
    })
    .await
}

/// `ping`: the round-trip time of an MCP ping.
pub(crate) async fn ping(
    server: &ServerArgs,
    timeout: Option<Duration>,
) -> Result<ExitCode, BoxError> {
    signals::run_with_group(connect(server, timeout), |group| async move {
        let rtt = group.ping(None).await?;
        println!("{}", report::pong(group.server(), group.era(), rtt));
        Ok(ExitCode::SUCCESS)
    })
    .await
}
