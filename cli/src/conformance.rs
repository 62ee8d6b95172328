//! `conformance` (hidden): the client the MCP conformance suite drives
//! (`cargo xtask conformance`). It connects to the scenario's URL over
//! streamable HTTP (with the client credentials a scenario hands out),
//! answers elicitations with their defaults and calls every tool with
//! arguments built from its schema — what an agent using the group would do.

use std::{process::ExitCode, time::Duration};

use mcp_group::{FunctionGroup, McpClientConfig, ServerConfig};

use crate::BoxError;

/// The conformance suite's client: what an agent using the group would do.
pub(crate) async fn run(url: &str, timeout: Option<Duration>) -> Result<ExitCode, BoxError> {
    let scenario = std::env::var("MCP_CONFORMANCE_SCENARIO").unwrap_or_default();
    tracing::info!(%scenario, %url, "conformance client");
    let mut config = McpClientConfig::new(ServerConfig::streamable_http(url));
    config.tool_call_timeout = timeout.unwrap_or(Duration::from_secs(20));
    // The suite names the revision whose wire version the scenario runs
    // at; without it the client negotiates.
    config.protocol_version = std::env::var("MCP_CONFORMANCE_PROTOCOL_VERSION").ok();
    // Scenarios that hand out client credentials put them in the context.
    let context: serde_json::Value = std::env::var("MCP_CONFORMANCE_CONTEXT")
        .ok()
        .and_then(|c| serde_json::from_str(&c).ok())
        .unwrap_or_default();
    if let ServerConfig::StreamableHttp(server) = &mut config.server {
        configure_auth(server, &scenario, &context);
    }
    let options = config
        .client_options()?
        .with_elicitation(std::sync::Arc::new(mcp_group::core::AcceptDefaults))
        .with_authorizer(
            std::sync::Arc::new(mcp_group::http::FollowRedirect::new()?),
            mcp_group::core::AuthorizationMode::default(),
        );
    let group = FunctionGroup::connect_with(config, options).await?;
    let mut failed = false;
    for (name, arguments) in planned_calls(&group, &scenario, &context) {
        match group.call(None, &name, arguments).await {
            Ok(output) => println!(
                "{}: {}",
                crate::report::printable(&name),
                crate::report::printable(&output.to_text())
            ),
            Err(error) => {
                failed = true;
                println!(
                    "{}: error: {}",
                    crate::report::printable(&name),
                    crate::report::printable(&error.to_string())
                );
            }
        }
    }
    group.shutdown().await;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The tool calls a scenario asks for: the context's `toolCalls` when it
/// names them; for `json-schema-2020-12-preservation`, the focal tool's
/// input schema handed back verbatim to the echo tool (what the scenario
/// asks of a client); otherwise every tool once, with arguments built from
/// its schema.
fn planned_calls(
    group: &FunctionGroup,
    scenario: &str,
    context: &serde_json::Value,
) -> Vec<(String, serde_json::Value)> {
    if let Some(calls) = context["toolCalls"].as_array() {
        return calls
            .iter()
            .filter_map(|call| {
                let name = call["name"].as_str()?;
                let arguments = call.get("arguments").cloned().unwrap_or_default();
                Some((name.to_owned(), arguments))
            })
            .collect();
    }
    let functions = group.functions();
    if scenario == "json-schema-2020-12-preservation" {
        let focal = functions
            .iter()
            .find(|tool| tool.name() == "json_schema_2020_12_tool");
        if let Some(focal) = focal {
            let schema = serde_json::Value::Object((*focal.descriptor().input_schema).clone());
            return vec![(
                "json_schema_echo".to_owned(),
                serde_json::json!({ "schema": schema }),
            )];
        }
    }
    functions
        .iter()
        .map(|tool| {
            let arguments = example_arguments(&tool.descriptor().input_schema);
            (tool.name().to_owned(), arguments)
        })
        .collect()
}

/// The suite's client identity: client credentials for the
/// `auth/client-credentials-*` scenarios, a workload JWT (JWT-bearer grant)
/// for `auth/wif-jwt-bearer`, an enterprise identity token (ID-JAG) for
/// `auth/enterprise-managed-authorization`, else the authorization-code flow
/// (the suite's authorization server approves on its own, so following the
/// authorization URL is the user's consent) with the client the scenario
/// pre-registered, or the suite's Client ID Metadata Document URL.
fn configure_auth(server: &mut mcp_group::HttpServer, scenario: &str, context: &serde_json::Value) {
    let id = context["client_id"].as_str();
    let secret = context["client_secret"].as_str().map(str::to_owned);
    let text = |name: &str| context[name].as_str().map(str::to_owned);
    if scenario == "auth/wif-jwt-bearer" {
        // A workload with a platform-issued JWT, a public client.
        if let (Some(id), Some(jwt)) = (id, text("valid_jwt")) {
            server.oauth_client_credentials = Some(mcp_group::ClientCredentials {
                client_id: id.to_owned(),
                assertion: Some(jwt),
                ..mcp_group::ClientCredentials::default()
            });
        }
        return;
    }
    // 0.1.x calls it `auth/cross-app-access-complete-flow`.
    if scenario == "auth/enterprise-managed-authorization"
        || scenario == "auth/cross-app-access-complete-flow"
    {
        let idp = (
            text("idp_issuer"),
            text("idp_token_endpoint"),
            text("idp_client_id"),
            text("idp_id_token"),
        );
        if let (Some(id), (Some(issuer), Some(token_endpoint), Some(client_id), Some(id_token))) =
            (id, idp)
        {
            server.oauth_client_credentials = Some(mcp_group::ClientCredentials {
                client_id: id.to_owned(),
                client_secret: secret.unwrap_or_default(),
                enterprise: Some(Box::new(mcp_group::core::EnterpriseIdentity {
                    issuer,
                    token_endpoint,
                    client_id,
                    client_secret: None,
                    id_token,
                })),
                ..mcp_group::ClientCredentials::default()
            });
        }
        return;
    }
    if scenario.starts_with("auth/client-credentials") {
        if let Some(id) = id {
            server.oauth_client_credentials = Some(mcp_group::ClientCredentials {
                client_id: id.to_owned(),
                client_secret: secret.unwrap_or_default(),
                private_key_pem: context["private_key_pem"].as_str().map(str::to_owned),
                ..mcp_group::ClientCredentials::default()
            });
        }
        return;
    }
    let mut auth = mcp_group::AuthConfig::default();
    auth.redirect_url = "http://localhost:3000/callback".to_owned();
    auth.client_metadata_url =
        Some("https://conformance-test.local/client-metadata.json".to_owned());
    auth.client_name = Some("mcp-group conformance".to_owned());
    if let Some(id) = id {
        auth.client_id = Some(id.to_owned());
        auth.client_secret = secret;
    }
    server.auth = Some(Box::new(auth));
}

/// Arguments for a tool built from its input schema, as an agent fills in
/// a form: each required property, plus each with a `default`; the value is
/// the `default`, else the `const` or first `enum` value, else a plain value
/// of its type.
fn example_arguments(schema: &serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
    use serde_json::{Value, json};
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut arguments = serde_json::Map::new();
    if let Some(Value::Object(properties)) = schema.get("properties") {
        for (name, property) in properties {
            if let Some(default) = property.get("default") {
                arguments.insert(name.clone(), default.clone());
                continue;
            }
            if !required.contains(&name.as_str()) {
                continue;
            }
            let chosen = property.get("const").cloned().or_else(|| {
                property
                    .get("enum")
                    .and_then(Value::as_array)
                    .and_then(|values| values.first().cloned())
            });
            let value = match (chosen, property.get("type").and_then(Value::as_str)) {
                (Some(value), _) => value,
                (None, Some("number" | "integer")) => json!(1),
                (None, Some("string")) => json!("test"),
                (None, Some("boolean")) => json!(true),
                (None, Some("array")) => json!([]),
                (None, Some("object")) => json!({}),
                _ => continue,
            };
            arguments.insert(name.clone(), value);
        }
    }
    Value::Object(arguments)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::example_arguments;

    #[test]
    fn example_arguments_fill_required_and_defaulted_fields_with_allowed_values() {
        let schema = json!({
            "type": "object",
            "properties": {
                "contact": {"type": "string", "enum": ["phone", "email"]},
                "kind": {"const": "person"},
                "count": {"type": "integer"},
                "verbose": {"type": "boolean"},
                "level": {"type": "string", "default": "info"},
            },
            "required": ["contact", "kind", "count"],
        });
        let serde_json::Value::Object(schema) = schema else {
            unreachable!()
        };
        assert_eq!(
            example_arguments(&schema),
            json!({"contact": "phone", "kind": "person", "count": 1, "level": "info"})
        );
    }
}
