//! Config loading and validation: NeMo Agent Toolkit's field names and
//! defaults, contradictions refused by the types, the rest by `validate`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mcp_group::{ConfigError, McpClientConfig, ServerConfig, SessionLimitPolicy, TransportKind};

fn invalid_field(result: Result<McpClientConfig, ConfigError>) -> &'static str {
    match result {
        Err(ConfigError::Invalid { field, .. }) => field,
        other => panic!("expected an invalid-field error, got {other:?}"),
    }
}

/// The parser's message for a TOML config that does not parse.
fn toml_error(result: Result<McpClientConfig, ConfigError>) -> String {
    match result {
        Err(ConfigError::Toml { source }) => source.to_string(),
        other => panic!("expected a TOML parse error, got {other:?}"),
    }
}

const STDIO: &str = r#"
[server]
transport = "stdio"
command = "node"
args = ["server.js"]
"#;

#[test]
fn defaults_match_nemo_agent_toolkit() {
    let config = McpClientConfig::from_toml_str(STDIO).unwrap();
    assert_eq!(config.tool_call_timeout, Duration::from_secs(60));
    assert!(config.reconnect_enabled);
    assert_eq!(config.reconnect_max_attempts, 2);
    assert_eq!(config.reconnect_initial_backoff, Duration::from_millis(500));
    assert_eq!(config.reconnect_max_backoff, Duration::from_secs(50));
    assert_eq!(config.max_sessions, 100);
    assert_eq!(config.session_idle_timeout, Duration::from_secs(3600));
    assert!(config.tool_overrides.is_empty());
    assert_eq!(config.server.kind(), TransportKind::Stdio);
    assert_eq!(config.session_limit_policy, SessionLimitPolicy::Reject);
}

#[test]
fn the_session_limit_policy_is_configurable() {
    let config = McpClientConfig::from_toml_str(&format!(
        "session_limit_policy = \"wait\"\nsession_limit_wait = \"250ms\"\n{STDIO}"
    ))
    .unwrap();
    assert_eq!(config.session_limit_policy, SessionLimitPolicy::Wait);
    assert_eq!(config.session_limit_wait, Duration::from_millis(250));
    let lru = McpClientConfig::from_toml_str(&format!(
        "session_limit_policy = \"evict-lru-idle\"\n{STDIO}"
    ))
    .unwrap();
    assert_eq!(lru.session_limit_policy, SessionLimitPolicy::EvictLruIdle);
    assert!(
        McpClientConfig::from_toml_str(&format!("session_limit_policy = \"lifo\"\n{STDIO}"))
            .is_err()
    );
}

#[test]
fn the_documented_toml_example_loads() {
    let config = McpClientConfig::from_toml_str(
        r#"
        tool_call_timeout = "60s"
        reconnect_enabled = true
        reconnect_max_attempts = 2
        reconnect_initial_backoff = "500ms"
        reconnect_max_backoff = "50s"
        max_sessions = 100
        session_idle_timeout = "1h"
        [server]
        transport = "stdio"
        command = "node"
        args = ["server.js"]
        [tool_overrides.calculator_add]
        alias = "add_numbers"
        description = "Add two numbers"
        "#,
    )
    .unwrap();
    let o = &config.tool_overrides["calculator_add"];
    assert_eq!(o.alias.as_deref(), Some("add_numbers"));
    assert_eq!(o.description.as_deref(), Some("Add two numbers"));
}

#[test]
fn durations_accept_humantime_strings_and_plain_seconds() {
    let config = McpClientConfig::from_toml_str(&format!(
        "tool_call_timeout = 1.5\nsession_idle_timeout = \"2m 30s\"\nreconnect_initial_backoff = 0\n{STDIO}"
    ))
    .unwrap();
    assert_eq!(config.tool_call_timeout, Duration::from_millis(1500));
    assert_eq!(config.session_idle_timeout, Duration::from_secs(150));
    assert_eq!(config.reconnect_initial_backoff, Duration::ZERO);
    let bad = McpClientConfig::from_toml_str(&format!("tool_call_timeout = \"soon\"\n{STDIO}"));
    assert!(matches!(bad, Err(ConfigError::Toml { .. })), "{bad:?}");
}

#[test]
fn yaml_and_json_load_the_same_config() {
    let yaml = McpClientConfig::from_yaml_str(
        "tool_call_timeout: 5s\nserver:\n  transport: streamable-http\n  url: http://127.0.0.1:3001/mcp\n  custom_headers:\n    X-Team: a\n",
    )
    .unwrap();
    let json = McpClientConfig::from_json_str(
        r#"{"tool_call_timeout": 5, "server": {"transport": "streamable-http", "url": "http://127.0.0.1:3001/mcp", "custom_headers": {"X-Team": "a"}}}"#,
    )
    .unwrap();
    assert_eq!(yaml, json);
    assert_eq!(yaml.server.kind(), TransportKind::StreamableHttp);
}

#[test]
fn files_load_by_extension() {
    let dir = std::env::temp_dir().join(format!("mcp-group-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("c.toml");
    std::fs::write(&toml, STDIO).unwrap();
    assert!(matches!(
        McpClientConfig::from_path(&toml).unwrap().server,
        ServerConfig::Stdio(server) if server.command == "node"
    ));
    let yml = dir.join("c.yml");
    std::fs::write(
        &yml,
        "server:\n  transport: sse\n  url: http://127.0.0.1:1/sse\n",
    )
    .unwrap();
    assert_eq!(
        McpClientConfig::from_path(&yml).unwrap().server.kind(),
        TransportKind::Sse
    );
    let txt = dir.join("c.txt");
    std::fs::write(&txt, STDIO).unwrap();
    assert!(matches!(
        McpClientConfig::from_path(&txt),
        Err(ConfigError::UnknownFormat { .. })
    ));
    assert!(matches!(
        McpClientConfig::from_path(dir.join("missing.toml")),
        Err(ConfigError::Read { .. })
    ));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unknown_keys_are_errors() {
    let top = toml_error(McpClientConfig::from_toml_str(&format!(
        "max_sesions = 3\n{STDIO}"
    )));
    assert!(top.contains("max_sesions"), "{top}");
    let server = toml_error(McpClientConfig::from_toml_str(
        "[server]\ntransport = \"stdio\"\ncommand = \"x\"\ncomand = \"y\"\n",
    ));
    assert!(server.contains("comand"), "{server}");
    let transport = toml_error(McpClientConfig::from_toml_str(
        "[server]\ntransport = \"websocket\"\ncommand = \"x\"\n",
    ));
    assert!(transport.contains("websocket"), "{transport}");
}

#[test]
fn url_with_stdio_is_rejected() {
    let message = toml_error(McpClientConfig::from_toml_str(
        "[server]\ntransport = \"stdio\"\ncommand = \"x\"\nurl = \"http://h/\"\n",
    ));
    assert!(message.contains("unknown field `url`"), "{message}");
}

#[test]
fn stdio_without_command_is_rejected() {
    let message = toml_error(McpClientConfig::from_toml_str(
        "[server]\ntransport = \"stdio\"\nargs = [\"a\"]\n",
    ));
    assert!(message.contains("missing field `command`"), "{message}");
    let r = McpClientConfig::from_toml_str("[server]\ntransport = \"stdio\"\ncommand = \"  \"\n");
    assert_eq!(invalid_field(r), "server.command");
}

#[test]
fn stdio_fields_with_http_are_rejected() {
    for (field, line) in [
        ("command", "command = \"node\""),
        ("args", "args = []"),
        ("env", "env = { A = \"b\" }"),
        ("cwd", "cwd = \"/tmp\""),
    ] {
        for transport in ["streamable-http", "sse"] {
            let message = toml_error(McpClientConfig::from_toml_str(&format!(
                "[server]\ntransport = \"{transport}\"\nurl = \"http://h/mcp\"\n{line}\n"
            )));
            assert!(
                message.contains(&format!("unknown field `{field}`")),
                "{transport} with {line}: {message}"
            );
        }
    }
}

#[test]
fn http_without_url_or_with_a_bad_url_is_rejected() {
    let message = toml_error(McpClientConfig::from_toml_str(
        "[server]\ntransport = \"streamable-http\"\n",
    ));
    assert!(message.contains("missing field `url`"), "{message}");
    let r = McpClientConfig::from_toml_str("[server]\ntransport = \"sse\"\nurl = \"ws://h/\"\n");
    assert_eq!(invalid_field(r), "server.url");
}

#[test]
fn max_backoff_below_initial_backoff_is_rejected() {
    let r = McpClientConfig::from_toml_str(&format!(
        "reconnect_initial_backoff = \"2s\"\nreconnect_max_backoff = \"1s\"\n{STDIO}"
    ));
    assert_eq!(invalid_field(r), "reconnect_max_backoff");
}

#[test]
fn zero_max_sessions_is_rejected() {
    let r = McpClientConfig::from_toml_str(&format!("max_sessions = 0\n{STDIO}"));
    assert_eq!(invalid_field(r), "max_sessions");
}

/// Config edge: an idle timeout of 0 closed every session after each call
/// (every call reconnected).
#[test]
fn a_zero_session_idle_timeout_is_rejected() {
    let r = McpClientConfig::from_toml_str(&format!("session_idle_timeout = 0\n{STDIO}"));
    assert_eq!(invalid_field(r), "session_idle_timeout");
}

/// Config edge: a `session_limit_wait` too long to add to an `Instant`
/// panicked at the first acquisition that had to wait.
#[test]
fn a_session_limit_wait_too_long_for_a_deadline_is_rejected() {
    let r = McpClientConfig::from_toml_str(&format!(
        "session_limit_policy = \"wait\"\nsession_limit_wait = 1e19\n{STDIO}"
    ));
    assert_eq!(invalid_field(r), "session_limit_wait");
    let mut config = McpClientConfig::new(ServerConfig::stdio("node", ["server.js"]));
    config.session_limit_wait = Duration::MAX;
    assert!(matches!(
        config.validate(),
        Err(ConfigError::Invalid {
            field: "session_limit_wait",
            ..
        })
    ));
}

#[test]
fn errors_name_the_field_in_their_message() {
    let err = McpClientConfig::from_toml_str(
        "[server]\ntransport = \"streamable-http\"\nurl = \"ftp://h/\"\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config field `server.url`: `ftp://h/` is not an http:// or https:// URL"
    );
}

#[test]
fn filters_and_prefix_load_and_bad_ones_are_rejected() {
    let config = McpClientConfig::from_toml_str(&format!(
        "include = [\"search_*\"]\nexclude = [\"*_debug\"]\nname_prefix = \"gh_\"\n{STDIO}"
    ))
    .unwrap();
    assert_eq!(config.include, ["search_*"]);
    assert_eq!(config.exclude, ["*_debug"]);
    assert_eq!(config.name_prefix.as_deref(), Some("gh_"));
    let bad_glob = McpClientConfig::from_toml_str(&format!("include = [\"[oops\"]\n{STDIO}"));
    assert!(
        matches!(bad_glob, Err(ConfigError::Patterns { .. })),
        "{bad_glob:?}"
    );
    let bad_prefix = McpClientConfig::from_toml_str(&format!("name_prefix = \"a b\"\n{STDIO}"));
    assert!(
        matches!(bad_prefix, Err(ConfigError::NamePrefix { .. })),
        "{bad_prefix:?}"
    );
}

#[test]
fn the_offered_protocol_version_is_configurable_and_checked() {
    let config = McpClientConfig::from_toml_str(STDIO).unwrap();
    assert_eq!(config.client_options().unwrap().protocol_version(), "auto");
    let config =
        McpClientConfig::from_toml_str(&format!("protocol_version = \"2025-06-18\"\n{STDIO}"))
            .unwrap();
    assert_eq!(
        config.client_options().unwrap().protocol_version(),
        "2025-06-18"
    );
    let r = McpClientConfig::from_toml_str(&format!("protocol_version = \"2099-01-01\"\n{STDIO}"));
    assert!(
        matches!(&r, Err(ConfigError::ProtocolVersion { source }) if source.to_string().contains("2099-01-01")),
        "{r:?}"
    );
}

#[test]
fn oauth_client_credentials_load_for_http_only_and_stay_secret_in_debug() {
    let config = McpClientConfig::from_toml_str(
        r#"
[server]
transport = "streamable-http"
url = "https://mcp.example.com/mcp"
[server.oauth_client_credentials]
client_id = "agent"
client_secret = "hunter2"
private_key_pem = "-----BEGIN PRIVATE KEY-----"
"#,
    )
    .unwrap();
    let ServerConfig::StreamableHttp(server) = &config.server else {
        panic!("expected streamable-http, got {:?}", config.server);
    };
    let oauth = server.oauth_client_credentials.clone().unwrap();
    assert_eq!(oauth.client_id, "agent");
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("BEGIN"),
        "{debug}"
    );
    let message = toml_error(McpClientConfig::from_toml_str(&format!(
        "{STDIO}[server.oauth_client_credentials]\nclient_id = \"a\"\n"
    )));
    assert!(
        message.contains("unknown field `oauth_client_credentials`"),
        "{message}"
    );
}

/// Everything a parse error shows: its chain and its `Debug`.
fn shown(error: &ConfigError) -> String {
    let mut text = format!("{error:?}");
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(cause) = source {
        text.push('\n');
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[test]
fn a_parse_error_never_shows_a_secret_from_the_file() {
    let secret = "sk-live-0123456789";
    let unknown_key = format!(
        "[server]\ntransport = \"streamable-http\"\nurl = \"https://h/mcp\"\nAuthorization = \"Bearer {secret}\"\n"
    );
    let mistyped = format!("max_sessions = \"{secret}\"\n{STDIO}");
    let broken =
        format!("[server]\ntransport = \"stdio\"\ncommand = \"x\"\nenv = {{ TOKEN = \"{secret}\n");
    for text in [unknown_key, mistyped, broken] {
        let error = McpClientConfig::from_toml_str(&text).unwrap_err();
        let shown = shown(&error);
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains("line"), "the location is kept: {shown}");
    }
    let yaml = McpClientConfig::from_yaml_str(&format!(
        "max_sessions: \"{secret}\"\nserver:\n  transport: stdio\n  command: x\n"
    ))
    .unwrap_err();
    assert!(!shown(&yaml).contains(secret), "{}", shown(&yaml));
    let json = McpClientConfig::from_json_str(&format!(
        r#"{{"max_sessions": "{secret}", "server": {{"transport": "stdio", "command": "x"}}}}"#
    ))
    .unwrap_err();
    assert!(!shown(&json).contains(secret), "{}", shown(&json));
    // A number in the wrong place may be a secret too (serde quotes it in
    // backticks, as it quotes key names).
    let numeric = McpClientConfig::from_toml_str(
        "[server]\ntransport = \"streamable-http\"\nurl = \"https://h/mcp\"\ncustom_headers = { Authorization = 918273645 }\n",
    )
    .unwrap_err();
    assert!(
        !shown(&numeric).contains("918273645"),
        "{}",
        shown(&numeric)
    );
    // The key that is wrong is still named.
    let unknown = McpClientConfig::from_toml_str(&format!("max_sesions = 3\n{STDIO}")).unwrap_err();
    assert!(
        shown(&unknown).contains("max_sesions"),
        "{}",
        shown(&unknown)
    );
}

#[test]
fn the_oauth_issuer_and_token_endpoint_can_be_pinned() {
    let config = McpClientConfig::from_toml_str(
        r#"
[server]
transport = "streamable-http"
url = "https://mcp.example.com/mcp"
[server.oauth_client_credentials]
client_id = "agent"
client_secret = "hunter2"
issuer = "https://login.example.com"
token_endpoint = "https://login.example.com/oauth2/token"
"#,
    )
    .unwrap();
    let ServerConfig::StreamableHttp(server) = &config.server else {
        panic!("expected streamable-http, got {:?}", config.server);
    };
    let oauth = server.oauth_client_credentials.as_ref().unwrap();
    assert_eq!(oauth.issuer.as_deref(), Some("https://login.example.com"));
    assert_eq!(
        oauth.token_endpoint.as_deref(),
        Some("https://login.example.com/oauth2/token")
    );
}

#[test]
fn durations_beyond_a_century_are_rejected_naming_the_field() {
    for field in [
        "tool_call_timeout",
        "reconnect_initial_backoff",
        "reconnect_max_backoff",
        "session_idle_timeout",
    ] {
        // 1e18 s parses as a Duration, and overflows an Instant.
        let r = McpClientConfig::from_toml_str(&format!("{field} = 1e18\n{STDIO}"));
        assert_eq!(invalid_field(r), field);
    }
}

#[test]
fn oauth_with_an_authorization_header_is_rejected_naming_the_field() {
    let r = McpClientConfig::from_toml_str(
        r#"
[server]
transport = "streamable-http"
url = "https://mcp.example.com/mcp"
custom_headers = { authorization = "Bearer static" }
[server.oauth_client_credentials]
client_id = "agent"
client_secret = "hunter2"
"#,
    );
    assert_eq!(invalid_field(r), "server.custom_headers");
}

#[test]
fn allow_insecure_http_loads_for_http_and_sse() {
    for transport in ["streamable-http", "sse"] {
        let config = McpClientConfig::from_toml_str(&format!(
            "[server]\ntransport = \"{transport}\"\nurl = \"http://mcp.internal/mcp\"\nallow_insecure_http = true\n"
        ))
        .unwrap();
        let allowed = match &config.server {
            ServerConfig::StreamableHttp(server) => server.allow_insecure_http,
            ServerConfig::Sse(server) => server.allow_insecure_http,
            other => panic!("{other:?}"),
        };
        assert!(allowed, "{transport}");
    }
}

#[cfg(all(feature = "http", feature = "sse"))]
#[test]
fn a_credential_over_plain_http_to_a_remote_host_needs_allow_insecure_http() {
    for transport in ["streamable-http", "sse"] {
        let toml = |allow: bool| {
            format!(
                "[server]\ntransport = \"{transport}\"\nurl = \"http://mcp.internal/mcp\"\n\
                 allow_insecure_http = {allow}\ncustom_headers = {{ Authorization = \"Bearer s3cret\" }}\n"
            )
        };
        let refused = McpClientConfig::from_toml_str(&toml(false)).unwrap();
        let err = mcp_group::build_transport(&refused).err().unwrap();
        let mcp_group::Error::Mcp(mcp_group::core::Error::Start { source, .. }) = &err else {
            panic!("{err:?}");
        };
        assert!(
            matches!(
                source.downcast_ref::<mcp_group::http::Error>(),
                Some(mcp_group::http::Error::InsecureCredentials { .. })
            ),
            "{err:?}"
        );
        let allowed = McpClientConfig::from_toml_str(&toml(true)).unwrap();
        assert!(mcp_group::build_transport(&allowed).is_ok(), "{transport}");
    }
}

const HTTP_AUTH: &str = r#"
[server]
transport = "streamable-http"
url = "https://mcp.example.com/mcp"

[server.auth]
redirect_url = "http://127.0.0.1:8765/callback"
client_id = "agent"
client_secret = "s3cret-value"
scopes = ["files:read", "files:write"]
issuer = "https://login.example.com"
mode = "fail"
"#;

#[test]
fn server_auth_loads_and_its_secret_is_redacted() {
    let config = McpClientConfig::from_toml_str(HTTP_AUTH).unwrap();
    let ServerConfig::StreamableHttp(server) = &config.server else {
        panic!("expected streamable-http");
    };
    let auth = server.auth.as_ref().unwrap();
    assert_eq!(auth.mode, mcp_group::AuthMode::Fail);
    assert_eq!(auth.scopes, ["files:read", "files:write"]);
    let user = auth.user_authorization();
    assert_eq!(user.client_id.as_deref(), Some("agent"));
    assert_eq!(user.issuer.as_deref(), Some("https://login.example.com"));
    let shown = format!("{config:?} {user:?}");
    assert!(!shown.contains("s3cret-value"), "{shown}");
}

#[test]
fn server_auth_errors_name_the_field() {
    let bad = |from: &str, to: &str| McpClientConfig::from_toml_str(&HTTP_AUTH.replace(from, to));
    assert_eq!(
        invalid_field(bad(
            "redirect_url = \"http://127.0.0.1:8765/callback\"",
            "redirect_url = \"callback\""
        )),
        "server.auth.redirect_url"
    );
    // The code would come back in the clear over the network.
    assert_eq!(
        invalid_field(bad(
            "redirect_url = \"http://127.0.0.1:8765/callback\"",
            "redirect_url = \"http://example.com/callback\""
        )),
        "server.auth.redirect_url"
    );
    assert_eq!(
        invalid_field(bad(
            "redirect_url = \"http://127.0.0.1:8765/callback\"",
            "redirect_url = \"http://127.0.0.1.example.com/callback\""
        )),
        "server.auth.redirect_url"
    );
    assert_eq!(
        invalid_field(bad("client_id = \"agent\"\n", "")),
        "server.auth.client_secret"
    );
    assert_eq!(
        invalid_field(bad(
            "mode = \"fail\"",
            "client_metadata_url = \"http://plain.example.com/client.json\""
        )),
        "server.auth.client_metadata_url"
    );
    assert_eq!(
        invalid_field(bad("\"files:write\"", "\"two words\"")),
        "server.auth.scopes"
    );
    assert_eq!(
        invalid_field(bad(
            "issuer = \"https://login.example.com\"",
            "issuer = \"login.example.com\""
        )),
        "server.auth.issuer"
    );
    let message = toml_error(McpClientConfig::from_toml_str(
        &HTTP_AUTH.replace("mode = \"fail\"", "mode = \"later\""),
    ));
    assert!(message.contains("later"), "{message}");
}
