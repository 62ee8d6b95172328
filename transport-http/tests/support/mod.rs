//! A scripted HTTP/1.1 server for the hostile-server tests: it listens on a
//! free loopback port, records every request and answers each with what the
//! test's handler returns — a complete response, an endless body, or
//! nothing at all. The SSE transport's tests include this file too.
#![allow(dead_code, unreachable_pub, missing_docs)]
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// One request the server received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`null` if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the server answers.
pub enum Reply {
    /// A complete response, then the connection closes.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// A `200` with `content_type`, then `prefix`, then `filler` repeated
    /// until `total` bytes are written (then the connection closes) or, with
    /// no `total`, until the client goes away.
    Stream {
        content_type: &'static str,
        prefix: Vec<u8>,
        filler: Vec<u8>,
        total: Option<usize>,
    },
    /// Accept the request and never answer.
    Hang,
}

impl Reply {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: Value) -> Self {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    /// `status` with a plain-text body.
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.into(),
        }
    }

    /// Adds a header to a complete response.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let Reply::Full { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }

    /// An event stream that sends `events` and then stays open.
    pub fn events(events: &str) -> Self {
        Reply::Stream {
            content_type: "text/event-stream",
            prefix: events.as_bytes().to_vec(),
            filler: Vec::new(),
            total: None,
        }
    }
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// A scripted server; it stops when the test's runtime ends.
pub struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    /// Starts a server whose handler `make` builds from the server's own
    /// base URL (`http://127.0.0.1:PORT`), so its answers can point at it.
    pub async fn start<F, H>(make: F) -> Server
    where
        F: FnOnce(String) -> H,
        H: Fn(&Request) -> Reply + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handler: Handler = Arc::new(make(format!("http://127.0.0.1:{port}")));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, handler.clone(), log.clone()));
            }
        });
        Server { port, requests }
    }

    /// A server that records requests and answers each `404`.
    pub async fn recorder() -> Server {
        Server::start(|_| |_: &Request| Reply::text(404, "")).await
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests received for `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

async fn serve(mut stream: TcpStream, handler: Handler, log: Arc<Mutex<Vec<Request>>>) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    log.lock().unwrap().push(request.clone());
    match handler(&request) {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} Scripted\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body).await;
            let _ = stream.shutdown().await;
        }
        Reply::Stream {
            content_type,
            prefix,
            filler,
            total,
        } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n"
            );
            if stream.write_all(head.as_bytes()).await.is_err()
                || stream.write_all(&prefix).await.is_err()
            {
                return;
            }
            let mut written = prefix.len();
            while !filler.is_empty() && total.is_none_or(|t| written < t) {
                if stream.write_all(&filler).await.is_err() {
                    return;
                }
                written += filler.len();
            }
            if total.is_some() {
                let _ = stream.shutdown().await;
            } else {
                std::future::pending::<()>().await;
            }
        }
        Reply::Hang => std::future::pending::<()>().await,
    }
}

async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buffer.len() > 1 << 20 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; length - body.len()];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

/// The answer of a minimal MCP server over streamable HTTP (JSON
/// responses): `initialize` succeeds, notifications are accepted, `tools/list`
/// is empty, `DELETE` ends the session; `None` for anything else.
pub fn mcp_answer(request: &Request) -> Option<Reply> {
    if request.method == "DELETE" {
        return Some(Reply::text(200, ""));
    }
    if request.method != "POST" {
        return Some(Reply::text(405, ""));
    }
    let message = request.json();
    let Some(id) = message.get("id").cloned() else {
        return Some(Reply::text(202, ""));
    };
    let result = match message["method"].as_str()? {
        "initialize" => json!({
            "protocolVersion": message["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "scripted", "version": "0"},
        }),
        "tools/list" => json!({"tools": []}),
        "ping" => json!({}),
        _ => return None,
    };
    Some(
        Reply::json(200, json!({"jsonrpc": "2.0", "id": id, "result": result}))
            .header("mcp-session-id", "scripted-session"),
    )
}

/// The peak resident set size of this process so far (`VmHWM`), in KiB
/// (Linux; 0 elsewhere): memory freed before a test looks is still counted.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// The query parameter `name` of a request target (`/path?query`).
pub fn query(target: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(&format!("http://x{target}"))
        .ok()?
        .query_pairs()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

/// The field `name` of a urlencoded form body.
pub fn form_field(body: &str, name: &str) -> Option<String> {
    query(&format!("/?{body}"), name)
}

/// The sign-in side of a scripted OAuth-protected MCP server at `base`:
/// the resource's metadata (for `/mcp`), its authorization server's
/// metadata (listing `grant_types`, if given), dynamic registration, and
/// `/authorize`, which approves whoever `login_hint` names with the code
/// `code-USER` and `iss`. `None` for any other request (the token endpoint
/// and `/mcp` are the test's).
pub fn sign_in_answer(
    base: &str,
    request: &Request,
    grant_types: Option<&[&str]>,
) -> Option<Reply> {
    let path = request.path.split('?').next().unwrap_or_default();
    let reply = match (request.method.as_str(), path) {
        ("GET", "/.well-known/oauth-protected-resource/mcp") => Reply::json(
            200,
            json!({"resource": format!("{base}/mcp"), "authorization_servers": [base]}),
        ),
        ("GET", "/.well-known/oauth-authorization-server") => {
            let mut metadata = json!({
                "issuer": base,
                "authorization_endpoint": format!("{base}/authorize"),
                "token_endpoint": format!("{base}/token"),
                "registration_endpoint": format!("{base}/register"),
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "authorization_response_iss_parameter_supported": true,
            });
            if let Some(grant_types) = grant_types {
                metadata["grant_types_supported"] = json!(grant_types);
            }
            Reply::json(200, metadata)
        }
        ("POST", "/register") => Reply::json(
            201,
            json!({
                "client_id": "registered-client",
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
                [
                    ("code", format!("code-{user}").as_str()),
                    ("state", &state),
                    ("iss", base),
                ],
            )
            .unwrap();
            Reply::text(302, "").header("location", location.as_str())
        }
        _ => return None,
    };
    Some(reply)
}
