//! NeMo Agent Toolkit's MCP auth providers, every field of each:
//! `mcp_service_account` becomes OAuth client credentials with a fixed token
//! URL (plus a static service-token header); `mcp_oauth2`, which signs end
//! users in, is read and refused.

use std::{collections::BTreeMap, fmt};

use mcp_group_core::{ClientCredentials, is_secret_name};
use serde::{Deserialize, Deserializer};
use serde_yaml_ng::{Mapping, Value};

use super::{PROVIDER_TYPES, env::expand_values, from_value, key_name, section_error, type_of};
use crate::{ConfigError, HttpServer};

/// Resolves `server.auth_provider` against the `authentication` section.
pub(super) fn apply_provider(
    root: &mut Mapping,
    name: &str,
    server: &mut HttpServer,
) -> Result<(), ConfigError> {
    let mut providers = match root.remove("authentication") {
        Some(Value::Mapping(providers)) => providers,
        _ => Mapping::new(),
    };
    let available: Vec<String> = providers.iter().map(|(k, _)| key_name(k)).collect();
    let Some(mut block) = providers.remove(name) else {
        return Err(ConfigError::AuthProviderNotFound {
            name: name.to_owned(),
            available,
        });
    };
    let section = format!("authentication.{name}");
    expand_values(&mut block)?;
    match type_of(&block) {
        Some("mcp_service_account") => {
            let account: ServiceAccount = from_value(block, &section)?;
            account.apply(&section, server)
        }
        Some("mcp_oauth2") => {
            let provider: OAuth2Provider = from_value(block, &section)?;
            provider.check(&section)?;
            Err(ConfigError::EndUserAuthorization {
                provider: name.to_owned(),
                provider_type: "mcp_oauth2".to_owned(),
            })
        }
        found => Err(ConfigError::UnknownType {
            field: format!("{section}._type"),
            found: found.map(str::to_owned),
            expected: PROVIDER_TYPES,
        }),
    }
}

/// A secret string: `Debug` shows `<redacted>`, and a value of the wrong type
/// is refused without quoting it.
#[derive(Clone, PartialEq, Eq)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom("a secret must be a string (quote it)"))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
                Err(E::custom("a secret must be a string (quote it)"))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
                Err(E::custom("a secret must be a string (quote it)"))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom("a secret must be a string (quote it)"))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Scopes as a list, or (for service accounts) one space-separated string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scopes {
    List(Vec<String>),
    Text(String),
}

impl Scopes {
    fn into_list(self) -> Vec<String> {
        match self {
            Scopes::List(list) => list,
            Scopes::Text(text) => text.split_whitespace().map(str::to_owned).collect(),
        }
    }
}

/// NeMo Agent Toolkit's `MCPServiceAccountProviderConfig`, every field.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceAccount {
    #[serde(rename = "_type", alias = "type")]
    provider_type: String,
    #[serde(default)]
    preflight_auth: bool,
    client_id: String,
    client_secret: Secret,
    token_url: String,
    scopes: Scopes,
    #[serde(default)]
    service_token: Option<ServiceToken>,
    #[serde(default)]
    token_cache_buffer_seconds: Option<i64>,
}

/// NeMo Agent Toolkit's `ServiceTokenConfig`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceToken {
    #[serde(default)]
    token: Option<Secret>,
    #[serde(default = "default_service_header")]
    header: String,
    #[serde(default)]
    function: Option<String>,
    #[serde(default)]
    kwargs: BTreeMap<String, Value>,
}

fn default_service_header() -> String {
    "X-Service-Account-Token".to_owned()
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("_type", &self.provider_type)
            .field("preflight_auth", &self.preflight_auth)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("token_url", &self.token_url)
            .field("service_token", &self.service_token)
            .field(
                "token_cache_buffer_seconds",
                &self.token_cache_buffer_seconds,
            )
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceToken")
            .field("token", &self.token)
            .field("header", &self.header)
            .field("function", &self.function)
            .field("kwargs", &self.kwargs.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ServiceAccount {
    /// Client credentials with a fixed token URL, plus the static service
    /// token as a header. `preflight_auth` needs nothing: the token is
    /// fetched when each session's connection opens, before any tool call.
    fn apply(self, section: &str, server: &mut HttpServer) -> Result<(), ConfigError> {
        if self.token_cache_buffer_seconds.is_some() {
            return Err(ConfigError::Unsupported {
                field: format!("{section}.token_cache_buffer_seconds"),
                reason: "mcp-group renews a client-credentials token 30 s before it expires; \
                         that margin is not configurable"
                    .to_owned(),
            });
        }
        if server.oauth_client_credentials.is_some() {
            return Err(ConfigError::Invalid {
                field: "server.auth_provider",
                reason: "`server.oauth_client_credentials` is set too; give one of them".to_owned(),
            });
        }
        if let Some(service) = self.service_token {
            let token = match (service.token, service.function) {
                (Some(_), Some(_)) => {
                    return Err(section_error(
                        section,
                        "service_token: give `token` or `function`, not both",
                    ));
                }
                (None, None) => {
                    return Err(section_error(
                        section,
                        "service_token: either `token` or `function` must be given",
                    ));
                }
                (None, Some(_)) => {
                    return Err(ConfigError::Unsupported {
                        field: format!("{section}.service_token.function"),
                        reason: "a Python function that computes the token per request cannot \
                                 run here; give a static `token`"
                            .to_owned(),
                    });
                }
                (Some(token), None) => token,
            };
            // `kwargs` only feed `function`; with a static token NeMo Agent
            // Toolkit ignores them as well.
            let header = service.header;
            if !is_secret_name(&header) {
                return Err(ConfigError::Unsupported {
                    field: format!("{section}.service_token.header"),
                    reason: format!(
                        "`{header}` is not a header name whose value mcp-group redacts \
                         (authorization, cookie, or a name containing token, secret, key, auth \
                         or password), so the token could show in logs"
                    ),
                });
            }
            if server
                .custom_headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case(&header))
            {
                return Err(ConfigError::Invalid {
                    field: "server.custom_headers",
                    reason: format!(
                        "sets `{header}`, which the auth provider's service token sets"
                    ),
                });
            }
            server.custom_headers.insert(header, token.0);
        }
        let scopes = self.scopes.into_list();
        server.oauth_client_credentials = Some(ClientCredentials {
            client_id: self.client_id,
            client_secret: self.client_secret.0,
            private_key_pem: None,
            scope: (!scopes.is_empty()).then(|| scopes.join(" ")),
            token_url: Some(self.token_url),
            ..ClientCredentials::default()
        });
        Ok(())
    }
}

/// NeMo Agent Toolkit's `MCPOAuth2ProviderConfig`, every field: read so that
/// a misspelt or missing one is reported as it would be there, then refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OAuth2Provider {
    #[serde(rename = "_type", alias = "type")]
    provider_type: String,
    server_url: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<Secret>,
    #[serde(default = "yes")]
    enable_dynamic_registration: bool,
    #[serde(default)]
    client_name: Option<String>,
    redirect_uri: String,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default = "yes")]
    use_pkce: bool,
    #[serde(default)]
    default_user_id: Option<String>,
    #[serde(default = "yes")]
    allow_default_user_id_for_tool_calls: bool,
    #[serde(default)]
    oauth_client_ttl: Option<f64>,
    #[serde(default)]
    token_storage_object_store: Option<String>,
    #[serde(default)]
    preflight_auth: bool,
}

fn yes() -> bool {
    true
}

impl fmt::Debug for OAuth2Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2Provider")
            .field("_type", &self.provider_type)
            .field("server_url", &self.server_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field(
                "enable_dynamic_registration",
                &self.enable_dynamic_registration,
            )
            .field("client_name", &self.client_name)
            .field("redirect_uri", &self.redirect_uri)
            .field(
                "token_endpoint_auth_method",
                &self.token_endpoint_auth_method,
            )
            .field("scopes", &self.scopes)
            .field("use_pkce", &self.use_pkce)
            .field("default_user_id", &self.default_user_id)
            .field(
                "allow_default_user_id_for_tool_calls",
                &self.allow_default_user_id_for_tool_calls,
            )
            .field("oauth_client_ttl", &self.oauth_client_ttl)
            .field(
                "token_storage_object_store",
                &self.token_storage_object_store,
            )
            .field("preflight_auth", &self.preflight_auth)
            .finish()
    }
}

impl OAuth2Provider {
    /// NeMo Agent Toolkit's own checks of the class, so a file it refuses is
    /// refused with its reason before ours.
    fn check(&self, section: &str) -> Result<(), ConfigError> {
        if self.preflight_auth {
            return Err(section_error(
                section,
                "preflight_auth: `mcp_oauth2` authorizes on the server's 401; it must be false",
            ));
        }
        if self.client_id.is_none() && !self.enable_dynamic_registration {
            return Err(section_error(
                section,
                "give `client_id` (manual registration) or leave `enable_dynamic_registration` on",
            ));
        }
        if self.oauth_client_ttl.is_some_and(|ttl| ttl < 0.0) {
            return Err(section_error(
                section,
                "oauth_client_ttl: must be at least 0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_secrets_never_show_in_debug() {
        let account: ServiceAccount = serde_yaml_ng::from_str(
            "_type: mcp_service_account\nclient_id: c\nclient_secret: s3cret\ntoken_url: http://t\nscopes: a b\nservice_token: {token: t0ken}\n",
        )
        .unwrap();
        let shown = format!("{account:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("t0ken"),
            "{shown}"
        );
        let error = serde_yaml_ng::from_str::<ServiceAccount>(
            "_type: x\nclient_id: c\nclient_secret: 918273645\ntoken_url: t\nscopes: []\n",
        )
        .err()
        .unwrap();
        assert!(!error.to_string().contains("918273645"), "{error}");
    }
}
