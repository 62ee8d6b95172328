//! NeMo Agent Toolkit's configuration files, read as they are.
//!
//! NeMo Agent Toolkit (`nvidia-nat-mcp`) configures an MCP client as a
//! *function group* in a YAML workflow file:
//!
//! ```yaml
//! function_groups:
//!   docs:
//!     _type: mcp_client
//!     server:
//!       transport: streamable-http
//!       url: https://docs.example/mcp
//!       auth_provider: docs_account
//! authentication:
//!   docs_account:
//!     _type: mcp_service_account
//!     client_id: agent
//!     client_secret: ${DOCS_SECRET}
//!     token_url: https://login.example/oauth/token
//!     scopes: [docs.read]
//! llms: { … }
//! workflow: { … }
//! ```
//!
//! [`McpClientConfig::from_workflow`] reads such a file and returns the
//! configuration of one MCP function group (`_type: mcp_client` or
//! `per_user_mcp_client`). The file is loaded the way NeMo Agent Toolkit loads
//! it: `${VAR}`, `${VAR:-default}` (also `:=`, `:+` and `:?`) are replaced
//! by environment variables in the whole text before it is parsed (module
//! `env`), YAML merge keys apply, a top-level `base:` file is loaded first
//! and deep-merged under this one, and a `file://` string value in a section
//! read here is replaced by that file's text. `server.auth_provider` is
//! resolved against the `authentication` section: `mcp_service_account`
//! becomes [`crate::HttpServer::oauth_client_credentials`] with a fixed token
//! URL (plus its static service-token header); `mcp_oauth2`, which signs end
//! users in, is refused with [`ConfigError::EndUserAuthorization`]. Sections
//! this client has no use for (`llms`, `workflow`, `general`, …) are not
//! looked at.
//!
//! Every key of the group and of the provider must be one NeMo Agent
//! Toolkit's classes define (or one of ours): a misspelt key is an error, not
//! ignored. A value this client cannot honour is [`ConfigError::Unsupported`],
//! naming the field and why.
//!
//! The function-group keys (`_type`, `session_aware_tools`,
//! `auth_flow_timeout`, `middleware`, `server.auth_provider`) are fields of
//! [`McpClientConfig`] itself, so a group copied into a file of its own loads
//! with [`McpClientConfig::from_path`] too (with values taken literally: no
//! `${VAR}` expansion, and no `authentication` section to resolve a provider
//! in).

mod auth;
mod env;
mod load;

use std::{collections::HashSet, path::Path};

use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value};

use crate::{ConfigError, HttpServer, McpClientConfig, ParseError, ServerConfig};

/// NeMo Agent Toolkit's MCP function-group types (the `_type` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FunctionGroupType {
    /// `mcp_client`: one group shared by every session, each session with
    /// its own MCP client unless `session_aware_tools` is false.
    #[serde(rename = "mcp_client")]
    McpClient,
    /// `per_user_mcp_client`: every user gets their own MCP client. Here that
    /// is the per-session default with the user as the session: pass the
    /// user's id as the [`crate::SessionId`] (and as the principal, with
    /// [`crate::FunctionGroup::call_as`], so no other user reaches it).
    #[serde(rename = "per_user_mcp_client")]
    PerUserMcpClient,
}

impl FunctionGroupType {
    /// The `_type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionGroupType::McpClient => "mcp_client",
            FunctionGroupType::PerUserMcpClient => "per_user_mcp_client",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "mcp_client" => Some(FunctionGroupType::McpClient),
            "per_user_mcp_client" => Some(FunctionGroupType::PerUserMcpClient),
            _ => None,
        }
    }
}

const GROUP_TYPES: &str = "`mcp_client` or `per_user_mcp_client`";
pub(super) const PROVIDER_TYPES: &str = "`mcp_service_account` or `mcp_oauth2`";

impl McpClientConfig {
    /// Reads one MCP function group of a NeMo Agent Toolkit workflow file
    /// (see the [module docs](crate::nat)): `group` names it under
    /// `function_groups`; `None` is allowed when the file has exactly one
    /// MCP function group. The result is validated.
    ///
    /// ```no_run
    /// let config = mcp_group::McpClientConfig::from_workflow("workflow.yml", Some("docs"))?;
    /// # Ok::<(), mcp_group::ConfigError>(())
    /// ```
    pub fn from_workflow(path: impl AsRef<Path>, group: Option<&str>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let mut visited = HashSet::new();
        let mut root = load::load_tree(path, &mut visited)?;
        let (name, mut block) = take_group(&mut root, group)?;
        let section = format!("function_groups.{name}");
        env::expand_values(&mut block)?;
        normalize_group(&mut block);
        let mut config: McpClientConfig = from_value(block, &section)?;
        if let ServerConfig::StreamableHttp(server) = &mut config.server {
            if let Some(provider) = server.auth_provider.take() {
                auth::apply_provider(&mut root, &provider, server)?;
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Whether the file looks like a NeMo Agent Toolkit workflow (a YAML or
    /// JSON mapping with a top-level `function_groups` or `base` key) rather
    /// than one group's configuration.
    pub fn is_workflow_file(path: impl AsRef<Path>) -> bool {
        let path = path.as_ref();
        if path.extension().and_then(|e| e.to_str()) == Some("toml") {
            return false;
        }
        let Ok(text) = std::fs::read_to_string(path) else {
            return false;
        };
        match serde_yaml_ng::from_str::<Value>(&env::expand_text(&text)) {
            Ok(Value::Mapping(map)) => {
                map.contains_key("function_groups") || map.contains_key("base")
            }
            _ => false,
        }
    }
}

/// What [`McpClientConfig::validate`] checks of the NeMo Agent Toolkit fields.
pub(crate) fn validate(config: &McpClientConfig) -> Result<(), ConfigError> {
    if !config.middleware.is_empty() {
        return Err(ConfigError::Unsupported {
            field: "middleware".to_owned(),
            reason: "NeMo Agent Toolkit's function middleware are Python components of its \
                     workflow; mcp-group cannot run them"
                .to_owned(),
        });
    }
    if let ServerConfig::StreamableHttp(HttpServer {
        auth_provider: Some(name),
        ..
    }) = &config.server
    {
        // Resolved and cleared by `from_workflow`; left set, there is no
        // `authentication` section to find it in.
        return Err(ConfigError::AuthProviderNotFound {
            name: name.clone(),
            available: Vec::new(),
        });
    }
    if config.group_type == Some(FunctionGroupType::PerUserMcpClient) && !config.session_aware_tools
    {
        return Err(ConfigError::Invalid {
            field: "session_aware_tools",
            reason: "`per_user_mcp_client` gives every user their own client; `false` (one \
                     shared client) contradicts it"
                .to_owned(),
        });
    }
    Ok(())
}

/// NeMo Agent Toolkit's `include`/`exclude` name functions as exposed, so an
/// alias names its tool; ours match server tool names. For a group with a
/// `_type`, an entry that is some tool's alias is replaced by that tool's
/// server name.
pub(crate) fn filter_names(config: &McpClientConfig, names: &[String]) -> Vec<String> {
    if config.group_type.is_none() {
        return names.to_vec();
    }
    names
        .iter()
        .map(|name| {
            config
                .tool_overrides
                .iter()
                .find(|(_, o)| o.alias.as_deref() == Some(name.as_str()))
                .map_or_else(|| name.clone(), |(server_name, _)| server_name.clone())
        })
        .collect()
}

/// `` `a`, `b` `` or `none`.
pub(crate) fn names(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `` `x` `` or `missing`, for [`ConfigError::UnknownType`].
pub(crate) fn shown_type(found: Option<&str>) -> String {
    match found {
        Some(found) => format!("`{found}`"),
        None => "missing".to_owned(),
    }
}

/// The message of [`ConfigError::GroupNotFound`].
pub(crate) fn no_group(name: Option<&str>, available: &[String]) -> String {
    match name {
        Some(name) => format!(
            "the workflow has no function group `{name}` (its MCP function groups: {})",
            names(available)
        ),
        None => format!("the workflow has no MCP function group (`_type: {GROUP_TYPES}`)"),
    }
}

pub(super) fn type_of(entry: &Value) -> Option<&str> {
    entry
        .get("_type")
        .or_else(|| entry.get("type"))
        .and_then(Value::as_str)
}

pub(super) fn key_name(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
    }
}

/// Takes the chosen MCP function group out of the tree: its name and block.
fn take_group(root: &mut Mapping, wanted: Option<&str>) -> Result<(String, Value), ConfigError> {
    let mut groups = match root.remove("function_groups") {
        Some(Value::Mapping(groups)) => groups,
        _ => Mapping::new(),
    };
    let available: Vec<String> = groups
        .iter()
        .filter(|(_, entry)| type_of(entry).is_some_and(|t| FunctionGroupType::parse(t).is_some()))
        .map(|(name, _)| key_name(name))
        .collect();
    let name = match wanted {
        Some(name) => name.to_owned(),
        None => match available.as_slice() {
            [only] => only.clone(),
            [] => {
                return Err(ConfigError::GroupNotFound {
                    name: None,
                    available,
                });
            }
            _ => return Err(ConfigError::GroupRequired { available }),
        },
    };
    let Some(block) = groups.remove(name.as_str()) else {
        return Err(ConfigError::GroupNotFound {
            name: Some(name),
            available,
        });
    };
    match type_of(&block) {
        Some(t) if FunctionGroupType::parse(t).is_some() => Ok((name, block)),
        found => Err(ConfigError::UnknownType {
            field: format!("function_groups.{name}._type"),
            found: found.map(str::to_owned),
            expected: GROUP_TYPES,
        }),
    }
}

/// NeMo Agent Toolkit's defaults that our types do not spell the same way:
/// `server.transport` defaults to `streamable-http`, an optional field may
/// be `null`, and durations may be ISO 8601 (`PT30S`) or `HH:MM:SS`.
fn normalize_group(block: &mut Value) {
    let Value::Mapping(group) = block else {
        return;
    };
    if group.get("tool_overrides").is_some_and(Value::is_null) {
        group.remove("tool_overrides");
    }
    for key in [
        "tool_call_timeout",
        "auth_flow_timeout",
        "session_idle_timeout",
    ] {
        if let Some(Value::String(text)) = group.get(key) {
            if let Some(seconds) = python_duration(text) {
                group.insert(key.into(), seconds.into());
            }
        }
    }
    if let Some(Value::Mapping(server)) = group.get_mut("server") {
        for key in [
            "url",
            "command",
            "args",
            "env",
            "auth_provider",
            "custom_headers",
        ] {
            if server.get(key).is_some_and(Value::is_null) {
                server.remove(key);
            }
        }
        if !server.contains_key("transport") {
            server.insert("transport".into(), "streamable-http".into());
        }
    }
}

/// Seconds of a duration pydantic reads and humantime does not: ISO 8601
/// (`P1DT2H`, `PT0.5S`; a year is 365 days, a month 30) or
/// `[D day[s], ]H:MM:SS[.f]`.
fn python_duration(text: &str) -> Option<f64> {
    let text = text.trim();
    if let Some(iso) = text.strip_prefix('P') {
        let (date, time) = iso.split_once('T').unwrap_or((iso, ""));
        if date.is_empty() && time.is_empty() {
            return None;
        }
        let units = |part: &str, table: &[(char, f64)]| -> Option<f64> {
            let mut total = 0.0;
            let mut number = String::new();
            let mut next = 0;
            for c in part.chars() {
                if c.is_ascii_digit() || c == '.' {
                    number.push(c);
                    continue;
                }
                let at = table[next..].iter().position(|(u, _)| *u == c)? + next;
                total += number.parse::<f64>().ok()? * table[at].1;
                number.clear();
                next = at + 1;
            }
            number.is_empty().then_some(total)
        };
        let day = 86_400.0;
        let date = units(
            date,
            &[
                ('Y', 365.0 * day),
                ('M', 30.0 * day),
                ('W', 7.0 * day),
                ('D', day),
            ],
        )?;
        let time = units(time, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
        return Some(date + time);
    }
    let (days, clock) = match text.split_once(',') {
        Some((days, clock)) => (Some(days.trim()), clock.trim()),
        None => match text.split_once(' ') {
            Some((days, clock)) if clock.contains(':') => (Some(days), clock.trim()),
            _ => (None, text),
        },
    };
    let days = match days {
        Some(days) => days
            .trim_end_matches("days")
            .trim_end_matches("day")
            .trim_end_matches('d')
            .trim()
            .parse::<f64>()
            .ok()?,
        None => 0.0,
    };
    let mut parts = clock.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || m.len() != 2 || s.split('.').next()?.len() != 2 {
        return None;
    }
    let seconds =
        h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?;
    Some(days * 86_400.0 + seconds)
}

pub(super) fn from_value<T: serde::de::DeserializeOwned>(
    value: Value,
    section: &str,
) -> Result<T, ConfigError> {
    serde_yaml_ng::from_value(value).map_err(|error| ConfigError::Section {
        section: section.to_owned(),
        source: ParseError::yaml(&error),
    })
}

pub(super) fn section_error(section: &str, message: &str) -> ConfigError {
    ConfigError::Section {
        section: section.to_owned(),
        source: ParseError::new(None, None, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pydantic_durations_become_seconds() {
        assert_eq!(python_duration("PT30S"), Some(30.0));
        assert_eq!(python_duration("PT1M0.5S"), Some(60.5));
        assert_eq!(python_duration("P1DT1H"), Some(90_000.0));
        assert_eq!(python_duration("P1W"), Some(604_800.0));
        assert_eq!(python_duration("01:00:00"), Some(3600.0));
        assert_eq!(python_duration("1 day, 00:00:01"), Some(86_401.0));
        assert_eq!(python_duration("0:00:00.25"), Some(0.25));
        for not_one in ["30s", "1h", "P", "PT1S1M", "1:2:3", "30"] {
            assert_eq!(python_duration(not_one), None, "{not_one}");
        }
    }
}
