//! `auth login`, `auth status` and `auth logout`: the local user's OAuth
//! sign-in to a server, kept in the token file (module `token_file`), which
//! the other commands then use (and refresh) for that server.
//!
//! `login` runs the authorization-code flow through the HTTP transport,
//! with an [`Authorizer`] that prints the authorization URL, opens a
//! browser when there is a display (`xdg-open`, `open` on macOS; never
//! required) and waits for the authorization server's redirect on a
//! loopback listener, `http://127.0.0.1:PORT/callback`. Nothing prints a
//! token: `status` shows issuer, resource, scopes and expiry.

use std::{
    process::ExitCode,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use mcp_group::{
    SessionId, SessionKey,
    core::{
        AuthorizationMode, AuthorizationRedirect, Authorizer, BoxError as CoreBoxError,
        ClientOptions, Transport, UserAuthorization,
    },
    http::{HttpConfig, StreamableHttpTransport, redirect_parameters},
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::{
    BoxError, report,
    token_file::{Entry, FileTokenStore},
};

/// How long `login` waits for the user by default.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest request head the loopback listener reads.
const MAX_CALLBACK_HEAD: usize = 8 * 1024;
/// How long one connection to the loopback listener may take to send its
/// request.
const CALLBACK_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What `auth login` was asked.
pub(crate) struct Login {
    pub(crate) url: String,
    pub(crate) principal: Option<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) no_browser: bool,
}

/// `auth login --url URL`: signs the local user in and stores the tokens.
pub(crate) async fn login(login: Login, timeout: Option<Duration>) -> Result<ExitCode, BoxError> {
    let store = FileTokenStore::open_default()?;
    let principal = login.principal.as_deref();
    // A new sign-in replaces what was stored for this user and server.
    store.remove(|e| e.principal.as_deref() == principal && e.resource == login.url)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let redirect_url = format!(
        "http://127.0.0.1:{}/callback",
        listener.local_addr()?.port()
    );
    let authorizer = Arc::new(Loopback {
        listener: tokio::sync::Mutex::new(listener),
        open_browser: !login.no_browser,
    });
    let mut user = UserAuthorization::new(redirect_url).with_scopes(login.scopes.iter().cloned());
    if let Some(id) = &login.client_id {
        user = user.with_client(id.clone(), None);
    }
    user.client_name = Some("mcp-group CLI".to_owned());
    let mode = AuthorizationMode::Wait {
        timeout: timeout.unwrap_or(LOGIN_TIMEOUT),
    };
    let transport = StreamableHttpTransport::new(HttpConfig::new(login.url.as_str())?)?
        .with_client_options(ClientOptions::new().with_authorizer(authorizer, mode))
        .with_user_authorization(user)
        .with_token_store(Arc::new(store.clone()));
    // The default session: the identity the CLI's other commands use (a
    // named session without a principal would be an identity of its own).
    let session = SessionKey::with_principal(principal, SessionId::default());
    let connection = transport.connect(&session).await?;
    connection.close().await;
    let stored: Vec<Entry> = store
        .entries()?
        .into_iter()
        .filter(|e| e.principal.as_deref() == principal && e.resource == login.url)
        .collect();
    if stored.is_empty() {
        println!(
            "{} did not ask for authorization; nothing stored",
            report::printable(&login.url)
        );
    } else {
        for entry in &stored {
            println!("signed in: {}", describe(entry));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `auth status [--json]`: one line (or JSON object) per stored credential.
pub(crate) fn status(json_output: bool) -> Result<ExitCode, BoxError> {
    let store = FileTokenStore::open_default()?;
    let entries = store.entries()?;
    if json_output {
        let list: Vec<Value> = entries.iter().map(summary).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if entries.is_empty() {
        println!("no stored credentials ({})", store.path().display());
    } else {
        for entry in &entries {
            println!("{}", describe(entry));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `auth logout [--url URL] [--principal NAME]`: forgets stored tokens.
pub(crate) fn logout(url: Option<&str>, principal: Option<&str>) -> Result<ExitCode, BoxError> {
    let store = FileTokenStore::open_default()?;
    let removed = store.remove(|e| {
        url.is_none_or(|url| e.resource == url)
            && principal.is_none_or(|p| e.principal.as_deref() == Some(p))
    })?;
    println!(
        "removed {removed} stored credential{}",
        if removed == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}

/// What `status` says of an entry: never a token.
fn summary(entry: &Entry) -> Value {
    let stored = serde_json::to_value(&entry.stored).unwrap_or_default();
    let token = &stored["token_response"];
    let expires_at = token["expires_in"]
        .as_u64()
        .zip(entry.stored.token_received_at)
        .map(|(expires_in, received)| received.saturating_add(expires_in));
    let scopes: Vec<String> = if entry.stored.granted_scopes.is_empty() {
        token["scope"]
            .as_str()
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    } else {
        entry.stored.granted_scopes.clone()
    };
    json!({
        "principal": entry.principal,
        "issuer": entry.issuer,
        "resource": entry.resource,
        "client_id": entry.stored.client_id,
        "scopes": scopes,
        "expires_at": expires_at.map(rfc3339),
        "expired": expires_at.map(|at| at <= now_epoch_secs()),
        "refreshable": !token["refresh_token"].is_null(),
        "has_token": !token.is_null(),
    })
}

fn describe(entry: &Entry) -> String {
    let s = summary(entry);
    let scopes = s["scopes"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let expiry = match (s["expires_at"].as_str(), s["expired"].as_bool()) {
        (Some(at), Some(true)) => format!("expired {at}"),
        (Some(at), _) => format!("expires {at}"),
        _ => "no expiry given".to_owned(),
    };
    let line = format!(
        "{}{} via {} scopes [{}] {}{}",
        entry
            .principal
            .as_deref()
            .map(|p| format!("{p} @ "))
            .unwrap_or_default(),
        entry.resource,
        entry.issuer,
        scopes,
        expiry,
        if s["refreshable"] == true {
            ", refreshable"
        } else {
            ""
        },
    );
    report::printable(&line).into_owned()
}

fn now_epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The latest expiry shown as a date (9999-12-31T23:59:59Z): a server's
/// `expires_in` can be any number, and no date past this one prints.
const LATEST_SHOWN_EPOCH_SECS: u64 = 253_402_300_799;

fn rfc3339(epoch_secs: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(epoch_secs.min(LATEST_SHOWN_EPOCH_SECS));
    let mut text = String::new();
    use std::fmt::Write as _;
    if write!(text, "{}", humantime::format_rfc3339_seconds(at)).is_err() {
        return "far future".to_owned();
    }
    text
}

/// The local user at a browser: prints the URL, opens a browser if it can,
/// and takes the redirect on the loopback listener.
struct Loopback {
    listener: tokio::sync::Mutex<TcpListener>,
    open_browser: bool,
}

#[mcp_group::core::async_trait]
impl Authorizer for Loopback {
    async fn authorize(
        &self,
        _session: &SessionKey,
        url: &str,
    ) -> Result<AuthorizationRedirect, CoreBoxError> {
        let state = query_value(url, "state");
        println!("Open this URL in a browser to sign in:\n{url}");
        if self.open_browser {
            open_browser(url);
        }
        let listener = self.listener.lock().await;
        loop {
            let (mut stream, _) = listener.accept().await?;
            let Ok(Some(target)) =
                tokio::time::timeout(CALLBACK_READ_TIMEOUT, request_target(&mut stream)).await
            else {
                continue;
            };
            let callback = format!("http://127.0.0.1{target}");
            if !target.starts_with("/callback?") {
                let _ = respond(&mut stream, 404, "Not found.").await;
                continue;
            }
            if let Some(error) = query_value(&callback, "error") {
                // Only the authorization server's redirect for this attempt
                // (it carries our state) may end the login: any page the
                // browser shows can request this loopback URL.
                if state.is_some() && query_value(&callback, "state") != state {
                    let _ = respond(&mut stream, 400, "Unexpected state.").await;
                    continue;
                }
                let _ = respond(&mut stream, 400, "Sign-in refused; see the terminal.").await;
                let detail = query_value(&callback, "error_description").unwrap_or_default();
                return Err(format!(
                    "the authorization server refused: {}",
                    report::printable(&format!("{error} {detail}"))
                )
                .into());
            }
            match redirect_parameters(&callback) {
                // Not the redirect of this attempt: someone else's request.
                Ok(redirect) if state.as_ref().is_some_and(|s| *s != redirect.state) => {
                    let _ = respond(&mut stream, 400, "Unexpected state.").await;
                }
                Ok(redirect) => {
                    let _ = respond(
                        &mut stream,
                        200,
                        "Signed in to mcp-group; you can close this tab.",
                    )
                    .await;
                    return Ok(redirect);
                }
                Err(_) => {
                    let _ = respond(&mut stream, 400, "No authorization code.").await;
                }
            }
        }
    }
}

/// The query parameter `name` of `url`.
fn query_value(url: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

/// The request target of an HTTP request's first line, reading at most
/// [`MAX_CALLBACK_HEAD`] bytes; `None` for anything else.
async fn request_target(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || head.len() + n > MAX_CALLBACK_HEAD {
            return None;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.lines().next()?.split(' ');
    (parts.next()? == "GET").then_some(())?;
    parts.next().map(str::to_owned)
}

async fn respond(
    stream: &mut tokio::net::TcpStream,
    status: u16,
    text: &str,
) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        if status == 200 { "OK" } else { "Error" },
        text.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Opens `url` in the desktop's browser, if there is a desktop; failures
/// are ignored (the URL is printed anyway).
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
    {
        "xdg-open"
    } else {
        return;
    };
    let spawned = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(error) = spawned {
        tracing::debug!(%error, opener, "could not open a browser");
    }
}

/// For every other command: an authorizer that cannot ask anyone, so a
/// server whose stored token no longer works says to sign in again.
pub(crate) struct NeedsLogin {
    pub(crate) url: String,
}

#[mcp_group::core::async_trait]
impl Authorizer for NeedsLogin {
    async fn authorize(
        &self,
        _session: &SessionKey,
        _url: &str,
    ) -> Result<AuthorizationRedirect, CoreBoxError> {
        Err(format!(
            "the stored sign-in no longer works: run `mcp-group auth login --url {}`",
            self.url
        )
        .into())
    }
}

#[cfg(test)]
mod expiry_tests {
    use super::rfc3339;

    #[test]
    fn any_expiry_a_server_gives_prints_without_panicking() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_000_000_000_000), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59Z");
    }
}
