//! The server a command talks to: its config from `--config` (our file, or
//! a NeMo Agent Toolkit workflow with `--group`), `--stdio` or `--url`, and
//! the function group connected to it.

use std::time::Duration;

use mcp_group::{ConfigError, FunctionGroup, McpClientConfig, ServerConfig, TransportKind};

use crate::{BoxError, ServerArgs};

fn config_from_args(server: &ServerArgs) -> Result<McpClientConfig, BoxError> {
    if let Some(path) = &server.config {
        let group = server.workflow.group.as_deref();
        if group.is_none() && !McpClientConfig::is_workflow_file(path) {
            return Ok(McpClientConfig::from_path(path)?);
        }
        return McpClientConfig::from_workflow(path, group).map_err(|e| match e {
            ConfigError::GroupRequired { .. } => format!("{e}: pass --group NAME").into(),
            e => e.into(),
        });
    }
    if let Some(line) = &server.stdio {
        let words = shell_words::split(line).map_err(|e| format!("--stdio: {e}"))?;
        let (command, args) = words
            .split_first()
            .ok_or("--stdio: the command line is empty")?;
        return Ok(McpClientConfig::new(ServerConfig::stdio(
            command.clone(),
            args.to_vec(),
        )));
    }
    if let Some(url) = &server.url {
        let kind: TransportKind = server.remote.transport.parse()?;
        return Ok(McpClientConfig::new(ServerConfig::remote(
            kind,
            url.clone(),
        )?));
    }
    Err("give the server with --config, --stdio or --url".into())
}

/// Connects to the server, with `--timeout` (if given) as the tool-call
/// timeout.
pub(crate) async fn connect(
    server: &ServerArgs,
    timeout: Option<Duration>,
) -> Result<FunctionGroup, BoxError> {
    let mut config = config_from_args(server)?;
    if let Some(timeout) = timeout {
        config.tool_call_timeout = timeout;
    }
    Ok(FunctionGroup::connect(config).await?)
}
