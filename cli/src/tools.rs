//! `tools list`, `tools call` and `ping`: one connection, one request, the
//! result on stdout.

use std::{process::ExitCode, time::Duration};

use mcp_group::SessionId;
use serde_json::Value;

use crate::{BoxError, ServerArgs, connect::connect, report};

/// `tools list [--detail] [--json]`.
pub(crate) async fn list(
    server: &ServerArgs,
    detail: bool,
    json: bool,
    timeout: Option<Duration>,
) -> Result<ExitCode, BoxError> {
    let group = connect(server, timeout).await?;
    report::tools(&group.functions(), detail, json)?;
    group.shutdown().await;
    Ok(ExitCode::SUCCESS)
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
    let group = connect(server, timeout).await?;
    let session = session.map(SessionId::from);
    let result = group.call(session.as_ref(), tool, arguments).await;
    group.shutdown().await;
    let output = result?;
    println!("{}", report::printable(&output.to_text()));
    Ok(ExitCode::SUCCESS)
}

/// `ping`: the round-trip time of an MCP ping.
pub(crate) async fn ping(
    server: &ServerArgs,
    timeout: Option<Duration>,
) -> Result<ExitCode, BoxError> {
    let group = connect(server, timeout).await?;
    let result = group.ping(None).await;
    group.shutdown().await;
    let rtt = result?;
    println!("{}", report::pong(group.server(), rtt));
    Ok(ExitCode::SUCCESS)
}
