//! End-to-end benchmarks of the function group, run by `cargo xtask bench e2e
//! [--quick]` (a timed harness, not criterion: most figures here are about
//! many sessions and processes at once, not one hot function).
//!
//! - overhead per call: a tool call through the group (overrides, argument
//!   validation, registry, transport) against a bare rmcp client calling the
//!   same tool of the same bundled demo server, stdio and streamable HTTP,
//!   calls alternating between the two;
//! - throughput and latency across 1, 8, 64, 256 sessions (one caller each),
//!   with a cleanup pass every 10 ms, and the rate at which those sessions
//!   were created;
//! - `mcp-group batch` with 64 sessions × 20 `echo` calls against
//!   `@modelcontextprotocol/server-everything` in streamable HTTP mode;
//! - client-side RSS per idle HTTP session at 1,000 sessions, and the same
//!   against the demo server in each protocol era (`--era modern`, `--era
//!   legacy`), each in a fresh process of this bench;
//! - the first call of a new session against warm sessions' calls (64 of
//!   each at once), per era: a modern server's sessions start without a
//!   handshake once the group knows its discovery result;
//! - the overhead per call in the modern era over streamable HTTP, against
//!   a bare rmcp client that opened with `server/discover`.
//!
//! Writes the figures as JSON to the path after `--summary`. With `--soak
//! [--sessions N]` it runs the session churn soak instead.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use mcp_group::{FunctionGroup, McpClientConfig, ServerConfig, SessionId};
use mcp_group_test_kit::{
    ServerProcess, fixtures,
    process::{rss_kib, run_with_input},
};
use rmcp::{
    ServiceExt,
    model::{
        CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProtocolVersion,
    },
    service::{RoleClient, RunningService},
};
use serde_json::{Value, json};

#[path = "../tests/support/mod.rs"]
mod support;

use support::{
    BIN as DEMO, demo_http_server as demo_http, demo_http_server_era, demo_server as stdio_server,
    soak,
};

struct Settings {
    overhead_calls: usize,
    overhead_rounds: usize,
    window: Duration,
    sessions: &'static [usize],
    batch_runs: usize,
    memory_sessions: usize,
    first_call_rounds: usize,
}

impl Settings {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                overhead_calls: 400,
                overhead_rounds: 9,
                window: Duration::from_millis(700),
                sessions: &[1, 8, 64, 256],
                batch_runs: 3,
                memory_sessions: 1_000,
                first_call_rounds: 5,
            }
        } else {
            Self {
                overhead_calls: 1_000,
                overhead_rounds: 25,
                window: Duration::from_secs(3),
                sessions: &[1, 8, 64, 256],
                batch_runs: 7,
                memory_sessions: 1_000,
                first_call_rounds: 21,
            }
        }
    }
}

// ------------------------------------------------------------------ servers

/// server-everything in streamable HTTP mode, if the fixtures are installed.
fn server_everything_http() -> Option<ServerProcess> {
    let installed = fixtures::installed(&format!("{}/dist/index.js", fixtures::SERVER_EVERYTHING));
    installed.then(|| support::server_everything_http("streamableHttp"))
}

// ------------------------------------------------------------------ clients

fn group_config(server: ServerConfig, max_sessions: usize) -> McpClientConfig {
    let mut config = McpClientConfig::new(server);
    config.max_sessions = max_sessions;
    config.tool_call_timeout = Duration::from_secs(60);
    config
}

fn http_server(url: &str) -> ServerConfig {
    ServerConfig::streamable_http(url)
}

/// What the bare rmcp client says about itself: the same protocol version
/// as the group's, so both make the same exchange.
fn bare_info() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("bare-rmcp", "0"),
    )
    .with_protocol_version(ProtocolVersion::V_2025_11_25)
}

type Bare = RunningService<RoleClient, ClientConfig>;

async fn bare_stdio() -> (Bare, tokio::process::Child) {
    let mut child = tokio::process::Command::new(DEMO)
        .arg("demo-server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stdin = child.stdin.take().unwrap();
    (bare_info().serve((stdout, stdin)).await.unwrap(), child)
}

fn bare_http_transport(
    url: &str,
) -> rmcp::transport::StreamableHttpClientTransport<reqwest::Client> {
    use rmcp::transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    };
    StreamableHttpClientTransport::with_client(
        reqwest::Client::builder().build().unwrap(),
        StreamableHttpClientTransportConfig::with_uri(url),
    )
}

async fn bare_http(url: &str) -> Bare {
    bare_info().serve(bare_http_transport(url)).await.unwrap()
}

/// A bare rmcp client of the 2026-07-28 era: `server/discover`, then
/// requests carrying their own `_meta`, as the group's modern sessions.
async fn bare_http_modern(url: &str) -> Bare {
    use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
    // The capabilities the group's client declares (the tasks extension),
    // so that both send the same `_meta` and the server does the same work.
    let mut capabilities = ClientCapabilities::default();
    capabilities
        .extensions
        .get_or_insert_with(Default::default)
        .insert(
            rmcp::model::TASKS_EXTENSION_ID.to_owned(),
            rmcp::model::JsonObject::new(),
        );
    ClientConfig::new(capabilities, Implementation::new("bare-rmcp", "0"))
        .serve_with_lifecycle(
            bare_http_transport(url),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .unwrap()
}

fn echo_args() -> Value {
    json!({"message": "hello"})
}

async fn bare_echo(bare: &Bare) {
    let Value::Object(arguments) = echo_args() else {
        unreachable!()
    };
    let result = bare
        .call_tool(CallToolRequestParams::new("echo").with_arguments(arguments))
        .await
        .unwrap();
    assert_ne!(result.is_error, Some(true));
}

async fn group_echo(group: &FunctionGroup, session: &SessionId) {
    group
        .call(Some(session), "echo", echo_args())
        .await
        .unwrap();
}

// ------------------------------------------------------------------ statistics

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

// ------------------------------------------------------------------ overhead

struct Overhead {
    bare_median_us: f64,
    group_median_us: f64,
    bare_p99_us: f64,
    group_p99_us: f64,
    /// The median over rounds of (group median ÷ bare median).
    ratio: f64,
}

impl Overhead {
    fn ratio(&self) -> f64 {
        self.ratio
    }
}

/// Where the overhead is measured.
#[derive(Clone, Copy)]
enum Target<'a> {
    Stdio,
    /// Streamable HTTP; the bare client makes the `initialize` handshake.
    Http(&'a str),
    /// Streamable HTTP to a server of the 2026-07-28 era; the bare client
    /// opens with `server/discover`.
    HttpModern(&'a str),
}

/// Same tool, same server binary. Each round starts a fresh bare client and
/// a fresh group (over stdio: fresh server processes, so that where the OS
/// happens to place them falls on both alike over the rounds), then
/// alternates calls between the two. Reported: medians over every call, and
/// the median of the per-round ratios.
async fn overhead(settings: &Settings, target: Target<'_>) -> Overhead {
    let mut bare_times = Vec::new();
    let mut group_times = Vec::new();
    let mut ratios = Vec::new();
    for _ in 0..settings.overhead_rounds {
        let (bare, _child) = match target {
            Target::Http(url) => (bare_http(url).await, None),
            Target::HttpModern(url) => (bare_http_modern(url).await, None),
            Target::Stdio => {
                let (bare, child) = bare_stdio().await;
                (bare, Some(child))
            }
        };
        let server = match target {
            Target::Http(url) | Target::HttpModern(url) => http_server(url),
            Target::Stdio => stdio_server(),
        };
        let mut config = group_config(server, 16);
        if !matches!(target, Target::HttpModern(_)) {
            // The bare client makes the 2025-11-25 exchange (`initialize`);
            // so does the group, pinned to it, rather than negotiating the
            // modern era the demo server also speaks.
            config.protocol_version = Some("2025-11-25".to_owned());
        }
        let group = FunctionGroup::connect(config).await.unwrap();
        let session = SessionId::new("overhead");
        // Warm both up: connections open, caches filled.
        for _ in 0..50 {
            bare_echo(&bare).await;
            group_echo(&group, &session).await;
        }
        let mut bare_round = Vec::with_capacity(settings.overhead_calls);
        let mut group_round = Vec::with_capacity(settings.overhead_calls);
        // Alternate call by call, so that drift (frequency, the other
        // processes' scheduling) falls on both alike.
        for _ in 0..settings.overhead_calls {
            let start = Instant::now();
            bare_echo(&bare).await;
            bare_round.push(start.elapsed());
            let start = Instant::now();
            group_echo(&group, &session).await;
            group_round.push(start.elapsed());
        }
        group.shutdown().await;
        let _ = bare.cancel().await;
        bare_round.sort();
        group_round.sort();
        ratios.push(
            percentile(&group_round, 0.5).as_secs_f64()
                / percentile(&bare_round, 0.5).as_secs_f64(),
        );
        bare_times.extend(bare_round);
        group_times.extend(group_round);
    }
    bare_times.sort();
    group_times.sort();
    ratios.sort_by(f64::total_cmp);
    Overhead {
        bare_median_us: us(percentile(&bare_times, 0.5)),
        group_median_us: us(percentile(&group_times, 0.5)),
        bare_p99_us: us(percentile(&bare_times, 0.99)),
        group_p99_us: us(percentile(&group_times, 0.99)),
        ratio: ratios[ratios.len() / 2],
    }
}

// ------------------------------------------------------------------ throughput

struct Throughput {
    sessions: usize,
    created_per_s: f64,
    calls_per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

/// `sessions` callers, one session each: all first calls at once (the
/// creation rate), then sequential `echo` calls for `window`, with a cleanup
/// pass (a full scan that finds nothing idle) every 10 ms meanwhile.
async fn throughput(server: ServerConfig, sessions: usize, window: Duration) -> Throughput {
    let group = Arc::new(
        FunctionGroup::connect(group_config(server, sessions + 16))
            .await
            .unwrap(),
    );
    let ids: Vec<SessionId> = (0..sessions)
        .map(|i| SessionId::new(format!("caller-{i}")))
        .collect();

    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for id in &ids {
        let (group, id) = (group.clone(), id.clone());
        set.spawn(async move { group_echo(&group, &id).await });
    }
    while let Some(done) = set.join_next().await {
        done.unwrap();
    }
    let created_per_s = sessions as f64 / start.elapsed().as_secs_f64();

    let stop = Arc::new(AtomicBool::new(false));
    let cleaner = {
        let (group, stop) = (group.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                group
                    .cleanup_sessions(Some(Duration::from_secs(3600)))
                    .await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let deadline = Instant::now() + window;
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for id in &ids {
        let (group, id) = (group.clone(), id.clone());
        set.spawn(async move {
            let mut times = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                group_echo(&group, &id).await;
                times.push(t.elapsed());
            }
            times
        });
    }
    let mut times = Vec::new();
    while let Some(done) = set.join_next().await {
        times.extend(done.unwrap());
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    cleaner.await.unwrap();
    group.shutdown().await;
    times.sort();
    Throughput {
        sessions,
        created_per_s,
        calls_per_s: times.len() as f64 / elapsed.as_secs_f64(),
        p50_us: us(percentile(&times, 0.5)),
        p99_us: us(percentile(&times, 0.99)),
    }
}

// ------------------------------------------------------------------ first calls

/// Sessions per round of [`first_calls`].
const FIRST_CALL_SESSIONS: usize = 64;

struct FirstCalls {
    /// The median of the rounds' 64 new sessions' first calls, all at once.
    new_ms: f64,
    /// The median of the rounds' 64 calls on warm sessions, all at once.
    warm_ms: f64,
    /// The median over rounds of (new ÷ warm).
    ratio: f64,
}

/// `echo` on every one of `ids` at once; the wall time until all answered.
async fn all_at_once(group: &Arc<FunctionGroup>, ids: &[SessionId]) -> Duration {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for id in ids {
        let (group, id) = (group.clone(), id.clone());
        set.spawn(async move { group_echo(&group, &id).await });
    }
    while let Some(done) = set.join_next().await {
        done.unwrap();
    }
    start.elapsed()
}

/// What a session's first call costs against a call on a warm session:
/// each round, 64 sessions never seen before make their first call at
/// once, then the same 64 (now warm) call again at once. One group for all
/// rounds, so that what it learned of the server (its era, its tool list)
/// carries over as in a long-running process; one round first, not
/// counted, to open the HTTP connections and learn that.
async fn first_calls(url: &str, rounds: usize) -> FirstCalls {
    let group = Arc::new(
        FunctionGroup::connect(group_config(
            http_server(url),
            FIRST_CALL_SESSIONS * (rounds + 1) + 16,
        ))
        .await
        .unwrap(),
    );
    let mut new_times = Vec::new();
    let mut warm_times = Vec::new();
    let mut ratios = Vec::new();
    for round in 0..=rounds {
        let ids: Vec<SessionId> = (0..FIRST_CALL_SESSIONS)
            .map(|i| SessionId::new(format!("first-{round}-{i}")))
            .collect();
        let new = all_at_once(&group, &ids).await;
        let warm = all_at_once(&group, &ids).await;
        if round > 0 {
            ratios.push(new.as_secs_f64() / warm.as_secs_f64());
            new_times.push(new);
            warm_times.push(warm);
        }
    }
    assert_eq!(
        group.session_count(),
        FIRST_CALL_SESSIONS * (rounds + 1) + 1,
        "no session was reaped or evicted"
    );
    group.shutdown().await;
    new_times.sort();
    warm_times.sort();
    ratios.sort_by(f64::total_cmp);
    FirstCalls {
        new_ms: percentile(&new_times, 0.5).as_secs_f64() * 1e3,
        warm_ms: percentile(&warm_times, 0.5).as_secs_f64() * 1e3,
        ratio: ratios[ratios.len() / 2],
    }
}

// ------------------------------------------------------------------ batch

/// `mcp-group batch` (a fresh process each run) with 64 sessions × 20 echo
/// calls; the median wall time of `runs` runs, process start included.
fn batch(url: &str, runs: usize) -> f64 {
    let mut input = String::new();
    for call in 0..20 {
        for session in 0..64 {
            input.push_str(
                &json!({
                    "session": format!("s{session}"),
                    "tool": "echo",
                    "args": {"message": format!("call {call}")},
                })
                .to_string(),
            );
            input.push('\n');
        }
    }
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let output = run_with_input(
            Command::new(DEMO)
                .args(["batch", "--url", url, "--transport", "streamable-http"])
                .stderr(Stdio::null()),
            Some(&input),
        );
        times.push(start.elapsed());
        assert!(output.status.success(), "batch failed: {:?}", output.status);
        let ok = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| l.contains("\"ok\":true"))
            .count();
        assert_eq!(ok, 64 * 20, "every call succeeded");
    }
    times.sort();
    percentile(&times, 0.5).as_secs_f64() * 1e3
}

/// The same work as [`batch`] by bare rmcp clients in this process (no
/// process start, no group): what the server alone allows.
async fn bare_batch(url: &str) -> f64 {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let url = url.to_owned();
        set.spawn(async move {
            let bare = bare_http(&url).await;
            for _ in 0..20 {
                bare_echo(&bare).await;
            }
            let _ = bare.cancel().await;
        });
    }
    while let Some(done) = set.join_next().await {
        done.unwrap();
    }
    start.elapsed().as_secs_f64() * 1e3
}

// ------------------------------------------------------------------ memory

/// Client-side RSS growth per idle HTTP session (each opened by one call).
async fn memory_per_session(url: &str, sessions: usize) -> f64 {
    let group = Arc::new(
        FunctionGroup::connect(group_config(http_server(url), sessions + 32))
            .await
            .unwrap(),
    );
    // Warm the pool, the runtime and the allocator with a few sessions.
    for i in 0..16 {
        group_echo(&group, &SessionId::new(format!("warm-{i}"))).await;
    }
    let before = rss_kib();
    let limit = Arc::new(tokio::sync::Semaphore::new(64));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..sessions {
        let (group, limit) = (group.clone(), limit.clone());
        set.spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            group_echo(&group, &SessionId::new(format!("idle-{i}"))).await;
        });
    }
    while let Some(done) = set.join_next().await {
        done.unwrap();
    }
    let after = rss_kib();
    assert_eq!(group.session_count(), sessions + 16 + 1);
    group.shutdown().await;
    (after.saturating_sub(before)) as f64 / sessions as f64
}

/// [`memory_per_session`] against the demo server accepting only `era`,
/// in a fresh process of this bench (`--memory-only --era ERA`), so that
/// neither era's figure starts from memory the other freed.
fn memory_per_session_in_child(era: &str, sessions: usize) -> f64 {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--memory-only", "--era", era, "--sessions"])
        .arg(sessions.to_string())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(output.status.success(), "memory child failed: {output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| {
            line.strip_prefix("rss-kib-per-session: ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no figure from the memory child: {output:?}"))
}

// ------------------------------------------------------------------ main

/// `--soak [--sessions N]`: the session churn soak (`cargo xtask soak`),
/// over stdio then streamable HTTP, with its summary; fails if anything was
/// lost or left behind.
fn soak(rt: &tokio::runtime::Runtime, sessions: usize) -> bool {
    use mcp_group::SessionLimitPolicy;
    let mut clean = true;
    let runs = [
        ("stdio", SessionLimitPolicy::Reject),
        ("http", SessionLimitPolicy::Reject),
        ("stdio", SessionLimitPolicy::EvictLruIdle),
        ("http", SessionLimitPolicy::EvictLruIdle),
        ("stdio", SessionLimitPolicy::Wait),
        ("http", SessionLimitPolicy::Wait),
    ];
    for (transport, policy) in runs {
        let http = (transport == "http").then(demo_http);
        let plan = soak::Plan {
            server: match &http {
                Some(server) => http_server(&server.url("/mcp")),
                None => stdio_server(),
            },
            sessions,
            callers: 64,
            max_sessions: 100,
            idle_timeout: Duration::from_millis(200),
            process_per_session: http.is_none(),
            policy,
        };
        // Twice: the allocator keeps what the first pass freed, so RSS is
        // compared between the end of the first pass and of the second.
        let mut rss_after = Vec::new();
        for pass in 1..=2 {
            let report = rt.block_on(soak::run(plan.clone()));
            println!(
                "\nsoak over {transport}, {policy:?}, pass {pass}: {sessions} sessions, 64 callers, max_sessions 100\n{}",
                report.summary()
            );
            clean &= report.calls_failed == 0
                && report.calls_ok == 2 * sessions
                && report.orphans == 0
                && report.leaked_entries == 0
                && report.fds_after <= report.fds_before;
            rss_after.push(report.rss_kib_after);
        }
        let growth = rss_after[1] as f64 / rss_after[0] as f64 - 1.0;
        println!(
            "RSS after pass 1: {} KiB, after pass 2: {} KiB ({:+.1} %)",
            rss_after[0],
            rss_after[1],
            growth * 100.0
        );
        clean &= growth < 0.10;
    }
    clean
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--soak") {
        let sessions = args
            .iter()
            .position(|a| a == "--sessions")
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(10_000);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let clean = soak(&rt, sessions);
        println!("\nsoak: {}", if clean { "clean" } else { "NOT CLEAN" });
        std::process::exit(if clean { 0 } else { 1 });
    }
    if args.iter().any(|a| a == "--memory-only") && !args.iter().any(|a| a == "--summary") {
        // One era's memory figure ([`memory_per_session_in_child`]); also
        // for heap profilers (valgrind --tool=massif, heaptrack).
        let value_of = |flag: &str| {
            let i = args.iter().position(|a| a == flag)?;
            args.get(i + 1).cloned()
        };
        let era = value_of("--era").unwrap_or_else(|| "both".to_owned());
        let sessions = value_of("--sessions")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1_000);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = demo_http_server_era(&era);
        let kib = rt.block_on(memory_per_session(&server.url("/mcp"), sessions));
        println!("client RSS per idle HTTP session ({era} era, {sessions} sessions): {kib:.1} KiB");
        println!("rss-kib-per-session: {kib}");
        return;
    }
    let Some(i) = args.iter().position(|a| a == "--summary") else {
        // `cargo bench` without arguments (or with criterion's): nothing to
        // do here; `cargo xtask bench e2e` passes `--summary`.
        eprintln!("e2e: run through `cargo xtask bench e2e [--quick]`");
        return;
    };
    let path = PathBuf::from(&args[i + 1]);
    let settings = Settings::new(args.iter().any(|a| a == "--quick"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let mut out: BTreeMap<String, Value> = BTreeMap::new();

    let http = demo_http();
    let url = http.url("/mcp");
    // Memory first, before other phases leave freed memory in the allocator.
    if args.iter().any(|a| a == "--share-only") {
        // For profiling the modern overhead: a call through one session's
        // share of the shared client (core and transport, no facade)
        // against the bare client, median of per-round ratios.
        let modern = demo_http_server_era("modern");
        let url = modern.url("/mcp");
        rt.block_on(async {
            use mcp_group::core::Transport;
            let transport = mcp_group::http::StreamableHttpTransport::new(
                mcp_group::http::HttpConfig::new(url.clone()).unwrap(),
            )
            .unwrap();
            let _first = transport
                .connect(&SessionId::new("first").into())
                .await
                .unwrap();
            let share = transport
                .connect(&SessionId::new("s").into())
                .await
                .unwrap();
            assert!(share.is_share());
            let bare = bare_http_modern(&url).await;
            let Value::Object(args) = echo_args() else {
                unreachable!()
            };
            let mut ratios = Vec::new();
            for _ in 0..9 {
                let (mut b, mut g) = (Vec::new(), Vec::new());
                for _ in 0..50 {
                    bare_echo(&bare).await;
                    share
                        .call_tool("echo", args.clone(), Duration::from_secs(60))
                        .await
                        .unwrap();
                }
                for _ in 0..400 {
                    let t = Instant::now();
                    bare_echo(&bare).await;
                    b.push(t.elapsed());
                    let t = Instant::now();
                    share
                        .call_tool("echo", args.clone(), Duration::from_secs(60))
                        .await
                        .unwrap();
                    g.push(t.elapsed());
                }
                b.sort();
                g.sort();
                ratios.push(percentile(&g, 0.5).as_secs_f64() / percentile(&b, 0.5).as_secs_f64());
            }
            ratios.sort_by(f64::total_cmp);
            println!(
                "share-only: ratio {:.3} ({:?})",
                ratios[ratios.len() / 2],
                ratios
            );
        });
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--overhead-only") {
        // For profilers: one overhead phase alone (`stdio`, the default, or
        // `http-modern`).
        let phase = args.get(i + 1).map(String::as_str);
        let modern = (phase == Some("http-modern")).then(|| demo_http_server_era("modern"));
        let url = modern.as_ref().map(|server| server.url("/mcp"));
        let (name, target) = match &url {
            Some(url) => ("http-modern", Target::HttpModern(url)),
            None => ("stdio", Target::Stdio),
        };
        let o = rt.block_on(overhead(&settings, target));
        println!(
            "{name}: bare {:.1} µs, group {:.1} µs, ratio {:.3}",
            o.bare_median_us, o.group_median_us, o.ratio
        );
        return;
    }
    let kib = rt.block_on(memory_per_session(&url, settings.memory_sessions));
    out.insert("http_rss_per_idle_session_kib".into(), json!(kib));
    if args.iter().any(|a| a == "--memory-only") {
        // For heap profilers (valgrind --tool=massif, heaptrack).
        println!("client RSS per idle HTTP session: {kib:.1} KiB");
        return;
    }
    let mut era_kib = Vec::new();
    for era in ["modern", "legacy"] {
        let kib = memory_per_session_in_child(era, settings.memory_sessions);
        out.insert(format!("{era}_idle_session_kib"), json!(kib));
        era_kib.push((era, kib));
    }

    let stdio = rt.block_on(overhead(&settings, Target::Stdio));
    let over_http = rt.block_on(overhead(&settings, Target::Http(&url)));
    let modern = demo_http_server_era("modern");
    let modern_url = modern.url("/mcp");
    let over_modern = rt.block_on(overhead(&settings, Target::HttpModern(&modern_url)));
    println!("\nmcp-group e2e: overhead per call (echo on the bundled demo server; medians)");
    println!(
        "{:<11} | {:>10} {:>10} {:>7} {:>9} | {:>10} {:>10}",
        "", "bare µs", "group µs", "ratio", "extra µs", "bare p99", "group p99"
    );
    for (name, o) in [
        ("stdio", &stdio),
        ("http", &over_http),
        ("http_modern", &over_modern),
    ] {
        println!(
            "{:<11} | {:>10.1} {:>10.1} {:>7.3} {:>9.1} | {:>10.1} {:>10.1}",
            name,
            o.bare_median_us,
            o.group_median_us,
            o.ratio(),
            o.group_median_us - o.bare_median_us,
            o.bare_p99_us,
            o.group_p99_us
        );
        out.insert(format!("overhead_ratio_{name}"), json!(o.ratio()));
        out.insert(
            format!("overhead_extra_us_{name}"),
            json!(o.group_median_us - o.bare_median_us),
        );
        out.insert(format!("bare_median_us_{name}"), json!(o.bare_median_us));
        out.insert(format!("group_median_us_{name}"), json!(o.group_median_us));
    }

    let legacy = demo_http_server_era("legacy");
    println!(
        "\nfirst calls: {FIRST_CALL_SESSIONS} new sessions' first calls at once against \
         {FIRST_CALL_SESSIONS} calls on warm sessions, echo over HTTP (medians of {} rounds)",
        settings.first_call_rounds
    );
    println!(
        "{:<7} | {:>10} {:>10} {:>7}",
        "era", "new ms", "warm ms", "ratio"
    );
    for (era, server) in [("modern", &modern), ("legacy", &legacy)] {
        let f = rt.block_on(first_calls(&server.url("/mcp"), settings.first_call_rounds));
        println!(
            "{:<7} | {:>10.2} {:>10.2} {:>7.3}",
            era, f.new_ms, f.warm_ms, f.ratio
        );
        out.insert(format!("{era}_first_call_ratio"), json!(f.ratio));
        out.insert(format!("{era}_first_call_new_ms"), json!(f.new_ms));
        out.insert(format!("{era}_first_call_warm_ms"), json!(f.warm_ms));
    }
    drop((modern, legacy));

    println!(
        "\nthroughput: one caller per session, echo, {:?} window, a cleanup pass every 10 ms",
        settings.window
    );
    println!(
        "{:<6} {:>8} | {:>12} {:>10} {:>10} | {:>14}",
        "", "sessions", "calls/s", "p50 µs", "p99 µs", "created/s"
    );
    let mut series = Vec::new();
    for (name, make) in [("stdio", None), ("http", Some(url.clone()))] {
        let mut rows = Vec::new();
        for &sessions in settings.sessions {
            let server = match &make {
                Some(url) => http_server(url),
                None => stdio_server(),
            };
            let row = rt.block_on(throughput(server, sessions, settings.window));
            println!(
                "{:<6} {:>8} | {:>12.0} {:>10.1} {:>10.1} | {:>14.1}",
                name, row.sessions, row.calls_per_s, row.p50_us, row.p99_us, row.created_per_s
            );
            rows.push(json!({
                "sessions": row.sessions,
                "calls_per_s": row.calls_per_s,
                "p50_us": row.p50_us,
                "p99_us": row.p99_us,
                "created_per_s": row.created_per_s,
            }));
        }
        series.push((name, rows));
    }
    for (name, rows) in series {
        out.insert(format!("throughput_{name}"), Value::Array(rows));
    }
    let demo_ms = batch(&url, settings.batch_runs);
    println!(
        "\nmcp-group batch, 64 sessions × 20 echo, bundled demo server over HTTP: {demo_ms:.0} ms"
    );
    out.insert("batch_64x20_demo_http_ms".into(), json!(demo_ms));
    drop(http);

    match server_everything_http() {
        Some(everything) => {
            let url = everything.url("/mcp");
            let ms = batch(&url, settings.batch_runs);
            let mut bare: Vec<f64> = (0..settings.batch_runs)
                .map(|_| rt.block_on(bare_batch(&url)))
                .collect();
            bare.sort_by(f64::total_cmp);
            let bare = bare[bare.len() / 2];
            println!(
                "\n64 sessions × 20 echo against server-everything over streamable HTTP (medians):\n  \
                 mcp-group batch (process start included): {ms:.0} ms\n  \
                 bare rmcp clients in-process:             {bare:.0} ms"
            );
            out.insert("batch_64x20_server_everything_ms".into(), json!(ms));
            out.insert("bare_rmcp_64x20_server_everything_ms".into(), json!(bare));
        }
        None => println!("\nbatch: server-everything is not installed (cargo xtask fixtures)"),
    }
    println!(
        "client RSS per idle HTTP session at {} sessions: {kib:.1} KiB",
        settings.memory_sessions
    );
    for (era, kib) in era_kib {
        println!("  against a server of the {era} era only: {kib:.1} KiB");
    }

    let took = started.elapsed().as_secs_f64();
    println!("(measured in {took:.1} s)");
    out.insert("measured_in_s".into(), json!(took));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap()).unwrap();
    println!("wrote {}", path.display());
}
