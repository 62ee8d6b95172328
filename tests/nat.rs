//! NeMo Agent Toolkit's files, read as they are: function-group blocks,
//! whole workflows with several groups and unrelated sections, and the MCP
//! auth providers — written from the fields of `nvidia-nat-mcp` 1.9.0's
//! `MCPClientConfig`, `MCPOAuth2ProviderConfig` and
//! `MCPServiceAccountProviderConfig` — run against real servers where no
//! sign-in is needed.
#![cfg(all(feature = "stdio", feature = "http"))]
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use mcp_group::{
    ClientCredentials, ConfigError, FunctionGroup, FunctionGroupType, McpClientConfig,
    ServerConfig, SessionId,
};
use mcp_group_test_kit::fixtures::{fixtures_dir, workspace_root};
use serde_json::json;
use support::python_http_server;

/// A fresh folder for one test's files.
fn folder(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("nat-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `text` with every line indented by `n` spaces.
fn indent(text: &str, n: usize) -> String {
    text.lines()
        .map(|line| format!("{}{line}\n", " ".repeat(n)))
        .collect()
}

/// The Python stdio fixture's `server:` block.
fn stdio_server() -> String {
    let python = fixtures_dir().join("venv/bin/python");
    assert!(
        python.exists(),
        "run `cargo xtask fixtures` (or `cargo xtask test`)"
    );
    let script = workspace_root().join("tests/fixtures/py_server.py");
    format!(
        "server:\n  transport: stdio\n  command: {:?}\n  args: [{:?}]\n  env:\n    PYTHONUNBUFFERED: \"1\"\n",
        python.to_str().unwrap(),
        script.to_str().unwrap()
    )
}

/// Every field of NeMo Agent Toolkit's `MCPClientConfig` (and its bases),
/// for the stdio fixture.
fn stdio_block() -> String {
    format!(
        "_type: mcp_client\n{}\
         tool_call_timeout: 30\n\
         auth_flow_timeout: 300\n\
         reconnect_enabled: true\n\
         reconnect_max_attempts: 2\n\
         reconnect_initial_backoff: 0.5\n\
         reconnect_max_backoff: 50.0\n\
         tool_overrides:\n  greet:\n    alias: say_hello\n    description: Greets someone.\n  multiply:\n    description: null\n\
         include: [say_hello, multiply]\n\
         exclude: []\n\
         middleware: []\n\
         session_aware_tools: true\n\
         max_sessions: 10\n\
         session_idle_timeout: 3600\n",
        stdio_server()
    )
}

/// Unrelated sections of a real workflow, which must be left alone.
const UNRELATED: &str = r#"
general:
  use_uvloop: true
  telemetry:
    logging:
      console:
        _type: console
        level: WARN
llms:
  nim_llm:
    _type: nim
    model_name: meta/llama-3.1-70b-instruct
    temperature: 0.0
    api_key: ${NAT_TEST_UNSET_NVIDIA_KEY:?set your NVIDIA key}
embedders:
  nv-embedqa:
    _type: nim
    model_name: nvidia/nv-embedqa-e5-v5
functions:
  current_datetime:
    _type: current_datetime
workflow:
  _type: react_agent
  tool_names: [math, web]
  llm_name: nim_llm
  verbose: true
eval:
  general:
    output_dir: ./.tmp/eval
"#;

async fn assert_math_calls(config: McpClientConfig) {
    let group = FunctionGroup::connect(config).await.unwrap();
    let names: Vec<String> = group
        .functions()
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    assert_eq!(names, ["multiply", "say_hello"]);
    let alice = SessionId::new("alice");
    let hello = group
        .call(Some(&alice), "say_hello", json!({"name": "NAT"}))
        .await
        .unwrap();
    assert_eq!(hello.to_text(), "Hello, NAT!");
    let product = group
        .call(Some(&alice), "multiply", json!({"a": 6, "b": 7}))
        .await
        .unwrap();
    assert_eq!(product.to_text(), "42");
    group.shutdown().await;
}

#[tokio::test]
async fn a_stdio_function_group_block_loads_on_its_own_and_runs_a_call() {
    let dir = folder("stdio-block");
    let path = write(&dir, "mcp.yml", &stdio_block());
    let config = McpClientConfig::from_path(&path).unwrap();
    assert_eq!(config.group_type, Some(FunctionGroupType::McpClient));
    assert!(config.session_aware_tools);
    assert_eq!(config.auth_flow_timeout, Duration::from_secs(300));
    assert_eq!(config.max_sessions, 10);
    assert_math_calls(config).await;
}

#[tokio::test]
async fn a_stdio_function_group_in_a_workflow_runs_a_call() {
    let dir = folder("stdio-workflow");
    let text = format!(
        "function_groups:\n  math:\n{}{UNRELATED}",
        indent(&stdio_block(), 4)
    );
    let path = write(&dir, "workflow.yml", &text);
    assert!(McpClientConfig::is_workflow_file(&path));
    // The only MCP function group: no name needed.
    let config = McpClientConfig::from_workflow(&path, None).unwrap();
    assert_eq!(
        config,
        McpClientConfig::from_workflow(&path, Some("math")).unwrap()
    );
    assert_math_calls(config).await;
}

#[tokio::test]
async fn a_workflow_with_two_groups_and_unrelated_sections_runs_either() {
    let dir = folder("two-groups");
    let server = python_http_server();
    let text = format!(
        "function_groups:\n  math:\n{}  web:\n    _type: per_user_mcp_client\n    server:\n      url: {}\n    tool_call_timeout: PT45S\n  calculator:\n    _type: calculator\n{UNRELATED}",
        indent(&stdio_block(), 4),
        server.url("/mcp"),
    );
    let path = write(&dir, "workflow.yml", &text);

    assert_math_calls(McpClientConfig::from_workflow(&path, Some("math")).unwrap()).await;

    // `transport` defaults to streamable-http, as in NeMo Agent Toolkit.
    let web = McpClientConfig::from_workflow(&path, Some("web")).unwrap();
    assert_eq!(web.group_type, Some(FunctionGroupType::PerUserMcpClient));
    assert_eq!(web.tool_call_timeout, Duration::from_secs(45));
    assert_eq!(
        web.server,
        ServerConfig::streamable_http(server.url("/mcp"))
    );
    let group = FunctionGroup::connect(web).await.unwrap();
    let bob = SessionId::new("bob");
    let hello = group
        .call(Some(&bob), "greet", json!({"name": "web"}))
        .await
        .unwrap();
    assert_eq!(hello.to_text(), "Hello, web!");
    group.shutdown().await;

    match McpClientConfig::from_workflow(&path, None) {
        Err(error @ ConfigError::GroupRequired { .. }) => {
            let ConfigError::GroupRequired { available } = &error else {
                unreachable!()
            };
            assert_eq!(available, &["math", "web"]);
            assert!(error.to_string().contains("`math`, `web`"), "{error}");
        }
        other => panic!("expected GroupRequired, got {other:?}"),
    }
    match McpClientConfig::from_workflow(&path, Some("nope")) {
        Err(ConfigError::GroupNotFound { name, available }) => {
            assert_eq!(name.as_deref(), Some("nope"));
            assert_eq!(available, ["math", "web"]);
        }
        other => panic!("expected GroupNotFound, got {other:?}"),
    }
    match McpClientConfig::from_workflow(&path, Some("calculator")) {
        Err(error @ ConfigError::UnknownType { .. }) => {
            let shown = error.to_string();
            assert!(
                shown.contains("function_groups.calculator._type")
                    && shown.contains("`calculator`"),
                "{shown}"
            );
        }
        other => panic!("expected UnknownType, got {other:?}"),
    }
}

#[tokio::test]
async fn session_aware_tools_false_shares_one_client_across_sessions() {
    let dir = folder("session-aware");
    let server = python_http_server();
    let workflow = |aware: bool| {
        write(
            &dir,
            &format!("aware-{aware}.yml"),
            &format!(
                "function_groups:\n  web:\n    _type: mcp_client\n    session_aware_tools: {aware}\n    server:\n      transport: streamable-http\n      url: {}\n",
                server.url("/mcp")
            ),
        )
    };
    for aware in [true, false] {
        let mut config = McpClientConfig::from_workflow(workflow(aware), None).unwrap();
        // Protocol sessions (`Mcp-Session-Id`) are the 2025 era's; the
        // test tells clients apart by them.
        config.protocol_version = Some("2025-11-25".into());
        let group = FunctionGroup::connect(config).await.unwrap();
        let mut ids = Vec::new();
        for name in ["alice", "bob"] {
            let id = group
                .call(Some(&SessionId::new(name)), "session_id", json!({}))
                .await
                .unwrap()
                .to_text();
            ids.push(id);
        }
        let default = group
            .call(None, "session_id", json!({}))
            .await
            .unwrap()
            .to_text();
        if aware {
            assert!(ids[0] != ids[1] && ids[0] != default, "{ids:?} {default}");
        } else {
            assert_eq!(ids, [default.clone(), default], "one shared client");
            assert_eq!(group.session_count(), 1);
        }
        group.shutdown().await;
    }
}

/// A token endpoint on a free port: answers every POST with `token`, and
/// keeps each request (head and body) it got.
struct TokenEndpoint {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl TokenEndpoint {
    fn start(token: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/oauth/token", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        // Serves until the test process ends (the listener is never closed).
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                seen.lock()
                    .unwrap()
                    .push(format!("{head}\r\n{}", String::from_utf8_lossy(&body)));
                let answer = format!(
                    r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":3600}}"#
                );
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        Self { url, requests }
    }
}

#[tokio::test]
async fn streamable_http_with_mcp_service_account_authorizes_every_session() {
    let dir = folder("service-account");
    let server = python_http_server();
    let tokens = TokenEndpoint::start("tok-nat");
    // Every field of `MCPServiceAccountProviderConfig` but
    // `token_cache_buffer_seconds` and `service_token.function`, refused below.
    let text = format!(
        r#"
function_groups:
  docs:
    _type: mcp_client
    server:
      transport: streamable-http
      url: {url}
      auth_provider: docs_account
      custom_headers:
        X-Team: search
authentication:
  docs_account:
    _type: mcp_service_account
    preflight_auth: true
    client_id: agent
    client_secret: ${{NAT_TEST_UNSET_SECRET:-svc-s3cret}}
    token_url: {token_url}
    scopes: docs.read docs.search
    service_token:
      token: "${{NAT_TEST_UNSET_SERVICE_TOKEN:-svc-t0ken}}"
      header: X-Service-Account-Token
      kwargs: {{}}
  unused_oauth:
    _type: mcp_oauth2
    server_url: http://elsewhere.invalid/mcp
    redirect_uri: http://localhost:8000/auth/redirect
{UNRELATED}"#,
        url = server.url("/mcp"),
        token_url = tokens.url,
    );
    let path = write(&dir, "workflow.yml", &text);
    let config = McpClientConfig::from_workflow(&path, Some("docs")).unwrap();
    let ServerConfig::StreamableHttp(http) = &config.server else {
        panic!("streamable HTTP: {config:?}");
    };
    assert_eq!(
        http.oauth_client_credentials,
        Some(ClientCredentials {
            client_id: "agent".into(),
            client_secret: "svc-s3cret".into(),
            private_key_pem: None,
            scope: Some("docs.read docs.search".into()),
            token_url: Some(tokens.url.clone()),
            ..ClientCredentials::default()
        })
    );
    assert_eq!(http.auth_provider, None, "resolved");
    assert_eq!(http.custom_headers["X-Service-Account-Token"], "svc-t0ken");
    assert_eq!(http.custom_headers["X-Team"], "search");
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("svc-s3cret") && !shown.contains("svc-t0ken"),
        "{shown}"
    );

    let group = FunctionGroup::connect(config).await.unwrap();
    for name in ["alice", "bob"] {
        let session = SessionId::new(name);
        let bearer = group
            .call(Some(&session), "auth_header", json!({}))
            .await
            .unwrap();
        assert_eq!(bearer.to_text(), "Bearer tok-nat");
        let service = group
            .call(
                Some(&session),
                "header",
                json!({"name": "x-service-account-token"}),
            )
            .await
            .unwrap();
        assert_eq!(service.to_text(), "svc-t0ken");
    }
    group.shutdown().await;
    let requests = tokens.requests.lock().unwrap().clone();
    assert!(!requests.is_empty());
    for request in &requests {
        let lower = request.to_ascii_lowercase();
        assert!(request.starts_with("POST /oauth/token "), "{request}");
        // HTTP Basic of `agent:svc-s3cret`, as NeMo Agent Toolkit sends it.
        assert!(
            lower.contains("authorization: basic ywdlbnq6c3zjlxmzy3jlda=="),
            "{request}"
        );
        assert!(
            request.ends_with("\r\ngrant_type=client_credentials&scope=docs.read+docs.search"),
            "{request}"
        );
    }
}

#[test]
fn streamable_http_with_mcp_oauth2_is_refused_naming_the_provider() {
    let dir = folder("oauth2");
    // Every field of `MCPOAuth2ProviderConfig`.
    let provider = r#"
    _type: mcp_oauth2
    server_url: http://127.0.0.1:9/mcp
    client_id: agent-client
    client_secret: ${NAT_TEST_UNSET_OAUTH_SECRET:-oauth-s3cret}
    enable_dynamic_registration: false
    client_name: NAT MCP Client
    redirect_uri: http://localhost:8000/auth/redirect
    token_endpoint_auth_method: client_secret_post
    scopes: [read, write]
    use_pkce: true
    default_user_id: alice
    allow_default_user_id_for_tool_calls: false
    oauth_client_ttl: 270.0
    token_storage_object_store: null
    preflight_auth: false
"#;
    let workflow = |provider: &str| {
        format!(
            "function_groups:\n  jira:\n    _type: mcp_client\n    server:\n      transport: streamable-http\n      url: http://127.0.0.1:9/mcp\n      auth_provider: jira_oauth\nauthentication:\n  jira_oauth:{provider}{UNRELATED}"
        )
    };
    let path = write(&dir, "workflow.yml", &workflow(provider));
    let error = McpClientConfig::from_workflow(&path, None).unwrap_err();
    let shown = format!("{error} / {error:?}");
    match &error {
        ConfigError::EndUserAuthorization {
            provider,
            provider_type,
        } => {
            assert_eq!(provider, "jira_oauth");
            assert_eq!(provider_type, "mcp_oauth2");
        }
        other => panic!("expected EndUserAuthorization, got {other:?}"),
    }
    assert!(
        shown.contains("jira_oauth") && shown.contains("end-user authorization"),
        "{shown}"
    );
    assert!(!shown.contains("oauth-s3cret"), "{shown}");

    // Its fields are checked as NeMo Agent Toolkit checks them, first.
    let misspelt = write(
        &dir,
        "misspelt.yml",
        &workflow(&provider.replace("redirect_uri", "redirect_url")),
    );
    let error = McpClientConfig::from_workflow(&misspelt, None).unwrap_err();
    let shown = error_chain(&error);
    assert!(
        matches!(&error, ConfigError::Section { section, .. } if section == "authentication.jira_oauth")
            && shown.contains("redirect_url"),
        "{shown}"
    );
    assert!(!shown.contains("oauth-s3cret"), "{shown}");
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut shown = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        shown.push_str(": ");
        shown.push_str(&cause.to_string());
        source = cause.source();
    }
    shown
}

/// A workflow with one HTTP group `g` (plus `group_extra` keys) whose
/// provider `a` has the given body.
fn workflow_with(dir: &Path, name: &str, group_extra: &str, provider: &str) -> PathBuf {
    write(
        dir,
        name,
        &format!(
            "function_groups:\n  g:\n    _type: mcp_client\n    server:\n      transport: streamable-http\n      url: http://127.0.0.1:9/mcp\n      auth_provider: a\n{group_extra}authentication:\n  a:\n{provider}"
        ),
    )
}

const SERVICE_ACCOUNT: &str = "    _type: mcp_service_account\n    client_id: c\n    client_secret: s3cret-value\n    token_url: http://127.0.0.1:9/token\n    scopes: [x]\n";

#[test]
fn unknown_types_and_unknown_fields_are_errors_naming_them() {
    let dir = folder("unknown");
    // A block of its own: serde names the variant.
    let block = write(
        &dir,
        "block.yml",
        &stdio_block().replace("_type: mcp_client", "_type: mcp_clinet"),
    );
    let shown = error_chain(&McpClientConfig::from_path(&block).unwrap_err());
    assert!(
        shown.contains("mcp_clinet") && shown.contains("mcp_client"),
        "{shown}"
    );
    let block = write(
        &dir,
        "block2.yml",
        &format!("{}sesion_aware_tools: false\n", stdio_block()),
    );
    let shown = error_chain(&McpClientConfig::from_path(&block).unwrap_err());
    assert!(
        shown.contains("unknown field `sesion_aware_tools`"),
        "{shown}"
    );

    // In a workflow.
    let path = workflow_with(
        &dir,
        "field.yml",
        "    sesion_aware_tools: false\n",
        SERVICE_ACCOUNT,
    );
    let error = McpClientConfig::from_workflow(&path, None).unwrap_err();
    let shown = error_chain(&error);
    assert!(
        matches!(&error, ConfigError::Section { section, .. } if section == "function_groups.g")
            && shown.contains("unknown field `sesion_aware_tools`"),
        "{shown}"
    );
    let path = workflow_with(
        &dir,
        "provider-type.yml",
        "",
        "    _type: api_key\n    raw_key: k\n",
    );
    match McpClientConfig::from_workflow(&path, None) {
        Err(ConfigError::UnknownType { field, found, .. }) => {
            assert_eq!(field, "authentication.a._type");
            assert_eq!(found.as_deref(), Some("api_key"));
        }
        other => panic!("expected UnknownType, got {other:?}"),
    }
    let path = workflow_with(
        &dir,
        "provider-field.yml",
        "",
        &format!("{SERVICE_ACCOUNT}    token_uri: http://127.0.0.1:9/token\n"),
    );
    let error = McpClientConfig::from_workflow(&path, None).unwrap_err();
    let shown = error_chain(&error);
    assert!(
        matches!(&error, ConfigError::Section { section, .. } if section == "authentication.a")
            && shown.contains("unknown field `token_uri`"),
        "{shown}"
    );
    assert!(!shown.contains("s3cret-value"), "{shown}");
    let path = write(
        &dir,
        "missing-provider.yml",
        "function_groups:\n  g:\n    _type: mcp_client\n    server:\n      url: http://127.0.0.1:9/mcp\n      auth_provider: nowhere\nauthentication:\n  a: {_type: mcp_oauth2}\n",
    );
    match McpClientConfig::from_workflow(&path, None) {
        Err(ConfigError::AuthProviderNotFound { name, available }) => {
            assert_eq!(name, "nowhere");
            assert_eq!(available, ["a"]);
        }
        other => panic!("expected AuthProviderNotFound, got {other:?}"),
    }
    let path = write(
        &dir,
        "no-group.yml",
        &format!("function_groups: {{}}\n{UNRELATED}"),
    );
    assert!(matches!(
        McpClientConfig::from_workflow(&path, None),
        Err(ConfigError::GroupNotFound { name: None, .. })
    ));
}

#[test]
fn fields_that_cannot_be_honoured_are_errors_naming_them_and_why() {
    let dir = folder("unsupported");
    let unsupported = |result: Result<McpClientConfig, ConfigError>| match result {
        Err(ConfigError::Unsupported { field, reason }) => (field, reason),
        other => panic!("expected Unsupported, got {other:?}"),
    };
    let (field, reason) = unsupported(McpClientConfig::from_yaml_str(
        &stdio_block().replace("middleware: []", "middleware: [cache]"),
    ));
    assert_eq!(field, "middleware");
    assert!(reason.contains("Python"), "{reason}");

    // A service account with `extra` keys.
    let account = |file: &str, extra: &str| {
        let path = workflow_with(&dir, file, "", &format!("{SERVICE_ACCOUNT}{extra}"));
        unsupported(McpClientConfig::from_workflow(path, None))
    };
    let (field, reason) = account(
        "function.yml",
        "    service_token:\n      function: my_pkg.get_token\n",
    );
    assert_eq!(field, "authentication.a.service_token.function");
    assert!(reason.contains("Python"), "{reason}");
    let (field, reason) = account("buffer.yml", "    token_cache_buffer_seconds: 600\n");
    assert_eq!(field, "authentication.a.token_cache_buffer_seconds");
    assert!(reason.contains("30 s"), "{reason}");
    let (field, reason) = account(
        "header.yml",
        "    service_token:\n      token: t0ken-value\n      header: X-Tenant\n",
    );
    assert_eq!(field, "authentication.a.service_token.header");
    assert!(
        reason.contains("`X-Tenant`") && !reason.contains("t0ken-value"),
        "{reason}"
    );

    // A provider name with no `authentication` section to resolve it in.
    let standalone = "_type: mcp_client\nserver:\n  transport: streamable-http\n  url: http://127.0.0.1:9/mcp\n  auth_provider: a\n";
    match McpClientConfig::from_yaml_str(standalone) {
        Err(ConfigError::AuthProviderNotFound { name, available }) => {
            assert_eq!(name, "a");
            assert!(available.is_empty());
        }
        other => panic!("expected AuthProviderNotFound, got {other:?}"),
    }

    // A per-user group shares no client.
    match McpClientConfig::from_yaml_str(
        &stdio_block()
            .replace("_type: mcp_client", "_type: per_user_mcp_client")
            .replace("session_aware_tools: true", "session_aware_tools: false"),
    ) {
        Err(ConfigError::Invalid { field, .. }) => assert_eq!(field, "session_aware_tools"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn workflows_load_as_nemo_agent_toolkit_loads_them() {
    let dir = folder("loader");
    write(&dir, "greet.md", "Greets, from a file.");
    write(
        &dir,
        "base.yml",
        &format!("function_groups:\n  math:\n{}", indent(&stdio_block(), 4)),
    );
    let path = write(
        &dir,
        "workflow.yml",
        &format!(
            "base: base.yml\n\
             limits: &limits\n  max_sessions: 7\n\
             function_groups:\n  math:\n    <<: *limits\n    tool_call_timeout: ${{NAT_TEST_UNSET_TIMEOUT:-12}}\n    tool_overrides:\n      greet:\n        description: file://greet.md\n\
             {UNRELATED}"
        ),
    );
    assert!(McpClientConfig::is_workflow_file(&path));
    let config = McpClientConfig::from_workflow(&path, None).unwrap();
    assert_eq!(config.tool_call_timeout, Duration::from_secs(12));
    let greet = &config.tool_overrides["greet"];
    assert_eq!(greet.description.as_deref(), Some("Greets, from a file."));
    assert_eq!(
        greet.alias.as_deref(),
        Some("say_hello"),
        "merged from the base"
    );
    assert_eq!(config.max_sessions, 7, "a YAML merge key, over the base");

    // A reference that cannot expand fails where it is read, not elsewhere
    // (the `llms` section above has one).
    let path = write(
        &dir,
        "required.yml",
        &format!(
            "function_groups:\n  math:\n{}    name_prefix: ${{NAT_TEST_UNSET_PREFIX:?give a prefix}}\n",
            indent(&stdio_block(), 4)
        ),
    );
    match McpClientConfig::from_workflow(&path, None) {
        Err(ConfigError::Substitution { variable, reason }) => {
            assert_eq!(variable, "NAT_TEST_UNSET_PREFIX");
            assert_eq!(reason, "give a prefix");
        }
        other => panic!("expected Substitution, got {other:?}"),
    }

    let plain = write(&dir, "plain.yml", &stdio_block());
    assert!(!McpClientConfig::is_workflow_file(&plain));
}
