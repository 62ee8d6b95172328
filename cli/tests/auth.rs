//! `mcp-group auth login | status | logout` against an OAuth-protected MCP
//! server and authorization server scripted here; the test plays the
//! browser (it follows the URL `login` prints to the loopback redirect).
//! The other commands then use the stored tokens and refresh them.
#![allow(clippy::unwrap_used)]

#[path = "../../transport-http/tests/support/mod.rs"]
mod scripted;

use std::{
    collections::HashMap,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
};

use scripted::{Reply, Request, Server};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_mcp-group");

#[derive(Default)]
struct Books {
    /// Live access tokens → their user.
    access: HashMap<String, String>,
    /// Live refresh tokens → their user.
    refresh: HashMap<String, String>,
    refreshes: usize,
    issued: usize,
}

impl Books {
    fn issue(&mut self, user: &str) -> Value {
        self.issued += 1;
        let access = format!("secret-at-{user}-{}", self.issued);
        let refresh = format!("secret-rt-{user}-{}", self.issued);
        self.access.insert(access.clone(), user.to_owned());
        self.refresh.insert(refresh.clone(), user.to_owned());
        json!({
            "access_token": access, "refresh_token": refresh,
            "token_type": "Bearer", "expires_in": 3600, "scope": "mcp:tools",
        })
    }
}

fn query(target: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(&format!("http://x{target}"))
        .ok()?
        .query_pairs()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

fn rpc(id: &Value, result: Value) -> Reply {
    Reply::json(200, json!({"jsonrpc": "2.0", "id": id, "result": result}))
        .header("mcp-session-id", "scripted")
}

/// A 2025-11-25 MCP server at `/mcp` with one tool, `whoami` (the user
/// whose token carried the call), and its authorization server.
async fn protected_server(books: Arc<Mutex<Books>>) -> Server {
    Server::start(move |base| {
        move |request: &Request| {
            let path = request.path.split('?').next().unwrap_or_default();
            match (request.method.as_str(), path) {
                ("GET", "/.well-known/oauth-protected-resource/mcp") => Reply::json(
                    200,
                    json!({"resource": format!("{base}/mcp"), "authorization_servers": [base], "scopes_supported": ["mcp:tools"]}),
                ),
                ("GET", "/.well-known/oauth-authorization-server") => Reply::json(
                    200,
                    json!({
                        "issuer": base,
                        "authorization_endpoint": format!("{base}/authorize"),
                        "token_endpoint": format!("{base}/token"),
                        "registration_endpoint": format!("{base}/register"),
                        "response_types_supported": ["code"],
                        "code_challenge_methods_supported": ["S256"],
                        "authorization_response_iss_parameter_supported": true,
                    }),
                ),
                ("POST", "/register") => Reply::json(
                    201,
                    json!({
                        "client_id": "cli-client",
                        "redirect_uris": request.json()["redirect_uris"],
                        "token_endpoint_auth_method": "none",
                    }),
                ),
                ("GET", "/authorize") => {
                    let user = query(&request.path, "login_hint").unwrap_or_default();
                    let state = query(&request.path, "state").unwrap_or_default();
                    let redirect = query(&request.path, "redirect_uri").unwrap_or_default();
                    let location = reqwest::Url::parse_with_params(
                        &redirect,
                        [("code", format!("code-{user}").as_str()), ("state", &state), ("iss", &base)],
                    )
                    .unwrap();
                    Reply::text(302, "").header("location", location.as_str())
                }
                ("POST", "/token") => {
                    let body = format!("/?{}", request.text());
                    let mut books = books.lock().unwrap();
                    let refused = Reply::json(400, json!({"error": "invalid_grant"}));
                    match query(&body, "grant_type").as_deref() {
                        Some("authorization_code") => {
                            match query(&body, "code").unwrap_or_default().strip_prefix("code-") {
                                Some(user) => Reply::json(200, books.issue(user)),
                                None => refused,
                            }
                        }
                        Some("refresh_token") => {
                            books.refreshes += 1;
                            let token = query(&body, "refresh_token").unwrap_or_default();
                            match books.refresh.remove(&token) {
                                Some(user) => Reply::json(200, books.issue(&user)),
                                None => refused,
                            }
                        }
                        _ => refused,
                    }
                }
                (_, "/mcp") => {
                    let user = request
                        .header("authorization")
                        .and_then(|h| h.strip_prefix("Bearer "))
                        .and_then(|token| books.lock().unwrap().access.get(token).cloned());
                    let Some(user) = user else {
                        let challenge = format!(
                            r#"Bearer resource_metadata="{base}/.well-known/oauth-protected-resource/mcp", scope="mcp:tools""#
                        );
                        return Reply::text(401, "").header("www-authenticate", &challenge);
                    };
                    if request.method == "DELETE" {
                        return Reply::text(200, "");
                    }
                    let message = request.json();
                    let id = &message["id"];
                    if id.is_null() {
                        return Reply::text(202, "");
                    }
                    match message["method"].as_str().unwrap_or_default() {
                        "initialize" => rpc(id, json!({
                            "protocolVersion": message["params"]["protocolVersion"],
                            "capabilities": {"tools": {}},
                            "serverInfo": {"name": "scripted", "version": "0"},
                        })),
                        "tools/list" => rpc(id, json!({"tools": [
                            {"name": "whoami", "inputSchema": {"type": "object"}}
                        ]})),
                        "tools/call" => rpc(id, json!({"content": [{"type": "text", "text": user}]})),
                        // A 2025-11-25 server: no `server/discover`.
                        _ => Reply::json(200, json!({"jsonrpc": "2.0", "id": id,
                            "error": {"code": -32601, "message": "Method not found"}})),
                    }
                }
                _ => Reply::text(404, ""),
            }
        }
    })
    .await
}

fn config_home(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("mcp-group-cli-auth-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn command(home: &Path, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(BIN);
    command
        .args(args)
        .env("XDG_CONFIG_HOME", home)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .kill_on_drop(true);
    command
}

/// Runs `mcp-group ARGS`; its stdout, after asserting success.
async fn run(home: &Path, args: &[&str]) -> String {
    let output = command(home, args).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "mcp-group {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `auth login`, with the test as the browser of user `user`.
async fn login(home: &Path, url: &str, user: &str) -> String {
    let mut child = command(home, &["auth", "login", "--url", url, "--no-browser"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let authorization_url = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("login prints the URL");
        printed.push_str(&line);
        printed.push('\n');
        if line.starts_with("http") {
            break line;
        }
    };
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let consent = browser
        .get(format!("{authorization_url}&login_hint={user}"))
        .send()
        .await
        .unwrap();
    let callback = consent.headers()["location"].to_str().unwrap().to_owned();
    assert!(callback.starts_with("http://127.0.0.1:"), "{callback}");
    // Any page in the browser can request the loopback URL: a refusal
    // without this attempt's state does not end the login.
    let base = callback.split('?').next().unwrap();
    let forged = browser
        .get(format!("{base}?error=access_denied&state=forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);
    let landed = browser.get(&callback).send().await.unwrap();
    assert_eq!(landed.status(), 200);
    let status = child.wait().await.unwrap();
    while let Some(line) = lines.next_line().await.unwrap() {
        printed.push_str(&line);
        printed.push('\n');
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(status.success(), "{printed}\n{stderr}");
    printed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_stores_a_0600_token_that_other_commands_use_and_refresh() {
    let books = Arc::new(Mutex::new(Books::default()));
    let server = protected_server(books.clone()).await;
    let url = server.url("/mcp");
    let home = config_home("login");

    let printed = login(&home, &url, "local").await;
    assert!(printed.contains("signed in:"), "{printed}");
    assert!(
        !printed.contains("secret-"),
        "login printed a token: {printed}"
    );
    let file = home.join("mcp-group").join("credentials.json");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the token file is the user's alone");

    // status: issuer, resource, scopes, expiry; never a token.
    let status = run(&home, &["auth", "status", "--json"]).await;
    assert!(
        !status.contains("secret-"),
        "status printed a token: {status}"
    );
    let status: Value = serde_json::from_str(&status).unwrap();
    let entry = &status[0];
    assert_eq!(entry["resource"], url.as_str());
    assert_eq!(entry["issuer"], server.url("").as_str());
    assert_eq!(entry["scopes"], json!(["mcp:tools"]));
    assert_eq!(entry["expired"], false);
    assert_eq!(entry["refreshable"], true);
    let text = run(&home, &["auth", "status"]).await;
    assert!(text.contains(&url) && !text.contains("secret-"), "{text}");

    // Other commands use the stored token...
    let answer = run(&home, &["tools", "call", "whoami", "--url", &url]).await;
    assert_eq!(answer.trim(), "local");
    assert_eq!(books.lock().unwrap().refreshes, 0);
    // ...and refresh it when it has expired, in the file.
    let mut stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let received = &mut stored["credentials"][0]["stored"]["token_received_at"];
    *received = json!(received.as_u64().unwrap() - 7_200);
    std::fs::write(&file, serde_json::to_vec(&stored).unwrap()).unwrap();
    let answer = run(&home, &["tools", "call", "whoami", "--url", &url]).await;
    assert_eq!(answer.trim(), "local");
    assert_eq!(books.lock().unwrap().refreshes, 1);
    let status: Value =
        serde_json::from_str(&run(&home, &["auth", "status", "--json"]).await).unwrap();
    assert_eq!(
        status[0]["expired"], false,
        "the refreshed token was stored"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "still the user's alone after a rewrite"
    );

    // logout forgets it; the server then refuses the command.
    let out = run(&home, &["auth", "logout", "--url", &url]).await;
    assert!(out.contains("removed 1"), "{out}");
    let out = run(&home, &["auth", "status"]).await;
    assert!(out.contains("no stored credentials"), "{out}");
    let refused = command(&home, &["tools", "call", "whoami", "--url", &url])
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    std::fs::remove_dir_all(home).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_others_can_read_is_refused() {
    let books = Arc::new(Mutex::new(Books::default()));
    let server = protected_server(books.clone()).await;
    let url = server.url("/mcp");
    let home = config_home("mode");
    login(&home, &url, "local").await;
    let file = home.join("mcp-group").join("credentials.json");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = command(&home, &["auth", "status"]).output().await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("chmod 600"), "{stderr}");
    std::fs::remove_dir_all(home).unwrap();
}
