//! The server a command talks to: its config from `--config` (our file, or
//! a NeMo Agent Toolkit workflow with `--group`), `--stdio` or `--url`, and
//! the function group connected to it.

use std::{sync::Arc, time::Duration};

use mcp_group::{
    AuthConfig, ConfigError, FunctionGroup, McpClientConfig, ServerConfig, TransportKind,
    build_transport_with_token_store, core::AuthorizationMode,
};

use crate::{BoxError, ServerArgs, auth::NeedsLogin, token_file::FileTokenStore};

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
/// timeout. A streamable HTTP server the local user signed in to (`auth
/// login`), or one with `[server.auth]`, gets the tokens of the token file,
/// refreshed there as they expire.
pub(crate) async fn connect(
    server: &ServerArgs,
    timeout: Option<Duration>,
) -> Result<FunctionGroup, BoxError> {
    let mut config = config_from_args(server)?;
    if let Some(timeout) = timeout {
        config.tool_call_timeout = timeout;
    }
    let Some(url) = signed_in(&mut config)? else {
        return Ok(FunctionGroup::connect(config).await?);
    };
    let store = FileTokenStore::open_default()?;
    let options = config.client_options()?.with_authorizer(
        Arc::new(NeedsLogin { url }),
        AuthorizationMode::Wait {
            timeout: config.auth_flow_timeout,
        },
    );
    let transport = build_transport_with_token_store(&config, options, Arc::new(store))?;
    Ok(FunctionGroup::with_transport(transport, config).await?)
}

/// The URL of a streamable HTTP server whose end-user tokens come from the
/// token file: one with `[server.auth]`, or one with stored credentials and
/// no other authorization (client credentials, an `Authorization` header),
/// which then gets a `[server.auth]` of its own.
fn signed_in(config: &mut McpClientConfig) -> Result<Option<String>, BoxError> {
    let ServerConfig::StreamableHttp(server) = &mut config.server else {
        return Ok(None);
    };
    if server.auth.is_some() {
        return Ok(Some(server.url.clone()));
    }
    let other_authorization = server.oauth_client_credentials.is_some()
        || server
            .custom_headers
            .keys()
            .any(|name| name.eq_ignore_ascii_case("authorization"));
    if other_authorization {
        return Ok(None);
    }
    // No config directory: nobody signed in here.
    let Ok(store) = FileTokenStore::open_default() else {
        return Ok(None);
    };
    let stored = store
        .entries()?
        .iter()
        .any(|entry| entry.resource == server.url);
    if !stored {
        return Ok(None);
    }
    let mut auth = AuthConfig::default();
    // Never visited: refreshing and reusing stored tokens needs no redirect.
    auth.redirect_url = "http://127.0.0.1/callback".to_owned();
    server.auth = Some(Box::new(auth));
    Ok(Some(server.url.clone()))
}
