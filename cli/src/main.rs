//! The `mcp-group` command-line tool. See `mcp-group --help` and the README.

mod demo_server;

use std::{
    collections::{BTreeMap, HashSet},
    io::{BufRead, Write},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use clap::{Args, Parser, Subcommand};
use mcp_group::{FunctionGroup, McpClientConfig, ServerConfig, SessionId, TransportKind};
use serde_json::{Value, json};

/// Connect to an MCP server and use its tools, one MCP client per session.
#[derive(Debug, Parser)]
#[command(
    name = "mcp-group",
    version,
    about = "Session-aware MCP function groups: one MCP client per end-user session, reaped when idle, with tool overrides."
)]
struct Cli {
    /// Bound, in seconds, on every tool call and on connect + initialize
    /// (overrides `tool_call_timeout`).
    #[arg(long, global = true, value_name = "SECS")]
    timeout: Option<f64>,
    /// More logging (-v: debug, -vv: trace); `RUST_LOG` also works.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List or call the server's tools.
    Tools {
        #[command(subcommand)]
        command: ToolsCommand,
    },
    /// Measure the round-trip time of an MCP ping.
    Ping {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Run JSON lines `{"session","tool","args"}` from stdin: concurrently across
    /// sessions, in order within one; print one JSON line per result.
    Batch {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Run the main job on the bundled demo server: several sessions, each with
    /// its own server process, then idle cleanup.
    Demo {
        /// How many concurrent sessions to run.
        #[arg(long, default_value_t = 3)]
        sessions: usize,
    },
    /// MCP conformance-suite client mode: connect to URL over streamable
    /// HTTP, answer elicitations with their defaults, call every tool with
    /// arguments built from its schema (`cargo xtask conformance`).
    #[command(hide = true)]
    Conformance {
        /// The scenario server's URL (the suite appends it).
        url: String,
    },
    /// Serve the bundled demo MCP server over stdio, or over streamable HTTP
    /// with `--http ADDR` (prints the URL it serves, then serves until
    /// interrupted).
    #[command(hide = true)]
    DemoServer {
        /// Serve streamable HTTP on this address (e.g. 127.0.0.1:0).
        #[arg(long)]
        http: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ToolsCommand {
    /// List the exposed tools.
    List {
        /// Show descriptions and input schemas.
        #[arg(long)]
        detail: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Call one tool and print its result.
    Call {
        /// The tool's exposed name.
        tool: String,
        /// The arguments, a JSON object.
        #[arg(long, default_value = "{}")]
        args: String,
        /// The session to call it in (default: the shared default session).
        #[arg(long)]
        session: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Which server: a config file, or inline.
#[derive(Debug, Args)]
#[group(required = true, multiple = false, id = "server_source")]
struct ServerArgs {
    /// A config file (.toml, .yaml, .yml or .json).
    #[arg(long, group = "server_source")]
    config: Option<PathBuf>,
    /// A stdio server's command line, e.g. "node dist/index.js stdio".
    #[arg(long, group = "server_source")]
    stdio: Option<String>,
    /// An HTTP server's URL.
    #[arg(long, group = "server_source")]
    url: Option<String>,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// How to reach a `--url` server (not part of the one-of server choice).
#[derive(Debug, Args)]
struct RemoteArgs {
    /// The transport for --url.
    #[arg(long, default_value = "streamable-http", value_parser = ["streamable-http", "sse"])]
    transport: String,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(
        cli.verbose,
        matches!(cli.command, Command::DemoServer { .. }),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Give closing child processes a moment; then tear down remaining tasks.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", chain(&*e));
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8, server_mode: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        // rmcp logs connection failures at ERROR from its worker task; our
        // errors already carry them (with their cause), once.
        0 => "warn,rmcp=off",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Logs go to stderr: stdout carries results (and, for the demo server, MCP).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!server_mode)
        .try_init();
}

/// An error and its sources on one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn run(cli: Cli) -> Result<ExitCode, BoxError> {
    let timeout = cli
        .timeout
        .map(|secs| {
            Duration::try_from_secs_f64(secs)
                .map_err(|_| format!("--timeout {secs} is not a number of seconds"))
        })
        .transpose()?;
    match cli.command {
        Command::DemoServer { http } => {
            match http {
                Some(addr) => demo_server::serve_http(&addr).await,
                None => demo_server::serve_stdio().await,
            }
            .map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { sessions } => demo(sessions, timeout).await,
        Command::Conformance { url } => conformance(&url, timeout).await,
        Command::Ping { server } => {
            let group = connect(&server, timeout).await?;
            let result = group.ping(None).await;
            group.shutdown().await;
            let rtt = result?;
            println!(
                "pong from {} in {:.3} ms",
                group.server(),
                rtt.as_secs_f64() * 1000.0
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Tools { command } => match command {
            ToolsCommand::List {
                detail,
                json,
                server,
            } => {
                let group = connect(&server, timeout).await?;
                list_tools(&group, detail, json)?;
                group.shutdown().await;
                Ok(ExitCode::SUCCESS)
            }
            ToolsCommand::Call {
                tool,
                args,
                session,
                server,
            } => {
                let arguments: Value = serde_json::from_str(&args)
                    .map_err(|e| format!("--args is not valid JSON: {e}"))?;
                let group = connect(&server, timeout).await?;
                let session = session.map(SessionId::from);
                let result = group.call(session.as_ref(), &tool, arguments).await;
                group.shutdown().await;
                let output = result?;
                println!("{}", output.to_text());
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Batch { server } => {
            let group = Arc::new(connect(&server, timeout).await?);
            let code = batch(group.clone()).await?;
            group.shutdown().await;
            Ok(code)
        }
    }
}

fn config_from_args(server: &ServerArgs) -> Result<McpClientConfig, BoxError> {
    if let Some(path) = &server.config {
        return Ok(McpClientConfig::from_path(path)?);
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
        )));
    }
    Err("give the server with --config, --stdio or --url".into())
}

async fn connect(
    server: &ServerArgs,
    timeout: Option<Duration>,
) -> Result<FunctionGroup, BoxError> {
    let mut config = config_from_args(server)?;
    if let Some(timeout) = timeout {
        config.tool_call_timeout = timeout;
    }
    Ok(FunctionGroup::connect(config).await?)
}

fn list_tools(group: &FunctionGroup, detail: bool, json: bool) -> Result<(), BoxError> {
    let mut out = std::io::stdout().lock();
    let functions = group.functions();
    if json {
        let tools: Vec<Value> = functions
            .iter()
            .map(|f| {
                json!({
                    "name": f.name(),
                    "original_name": f.original_name(),
                    "aliased": f.is_aliased(),
                    "description": f.description(),
                    "validates_arguments": functions.validates_arguments(f.name()),
                    "input_schema": &*f.descriptor().input_schema,
                    "output_schema": f.descriptor().output_schema.as_deref(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&tools)?)?;
        return Ok(());
    }
    for f in &functions {
        if !detail {
            let alias = if f.is_aliased() {
                format!(" (server name: {})", f.original_name())
            } else {
                String::new()
            };
            let description = f.description().and_then(|d| d.lines().next()).unwrap_or("");
            writeln!(out, "{}{alias}\t{description}", f.name())?;
            continue;
        }
        write!(out, "{}", f.name())?;
        if f.is_aliased() {
            write!(out, " (server name: {})", f.original_name())?;
        }
        writeln!(out)?;
        if let Some(description) = f.description() {
            writeln!(out, "  {description}")?;
        }
        writeln!(out, "  input schema:")?;
        let schema = serde_json::to_string_pretty(&*f.descriptor().input_schema)?;
        for line in schema.lines() {
            writeln!(out, "    {line}")?;
        }
        if let Some(output) = &f.descriptor().output_schema {
            writeln!(out, "  output schema:")?;
            for line in serde_json::to_string_pretty(&**output)?.lines() {
                writeln!(out, "    {line}")?;
            }
        }
        if !functions.validates_arguments(f.name()) {
            writeln!(
                out,
                "  (its input schema does not compile: arguments are not checked)"
            )?;
        }
    }
    Ok(())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchLine {
    #[serde(default)]
    session: Option<String>,
    tool: String,
    #[serde(default)]
    args: Value,
}

async fn batch(group: Arc<FunctionGroup>) -> Result<ExitCode, BoxError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    // Read stdin on a blocking thread; dispatch each line to its session's queue.
    let reader = {
        let group = group.clone();
        let tx = tx.clone();
        tokio::task::spawn_blocking(move || -> Result<(), std::io::Error> {
            let handle = tokio::runtime::Handle::current();
            let mut queues: BTreeMap<String, tokio::sync::mpsc::UnboundedSender<BatchLine>> =
                BTreeMap::new();
            for (number, line) in std::io::stdin().lock().lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let request: BatchLine = match serde_json::from_str(&line) {
                    Ok(request) => request,
                    Err(e) => {
                        let _ = tx.send(json!({"line": number + 1, "ok": false, "error": format!("bad input line: {e}")}));
                        continue;
                    }
                };
                let session = request
                    .session
                    .clone()
                    .unwrap_or_else(|| SessionId::DEFAULT.to_owned());
                let queue = queues.entry(session.clone()).or_insert_with(|| {
                    let (qtx, mut qrx) = tokio::sync::mpsc::unbounded_channel::<BatchLine>();
                    let group = group.clone();
                    let tx = tx.clone();
                    handle.spawn(async move {
                        let id = SessionId::from(session.clone());
                        while let Some(request) = qrx.recv().await {
                            let result = group.call(Some(&id), &request.tool, request.args).await;
                            let line = match result {
                                Ok(output) => json!({"session": session, "tool": request.tool, "ok": true, "result": output.to_text()}),
                                Err(e) => json!({"session": session, "tool": request.tool, "ok": false, "error": chain(&e)}),
                            };
                            let _ = tx.send(line);
                        }
                    });
                    qtx
                });
                let _ = queue.send(request);
            }
            Ok(())
        })
    };
    drop(tx);
    let mut failed = 0usize;
    let mut out = std::io::stdout();
    while let Some(line) = rx.recv().await {
        if line["ok"] != json!(true) {
            failed += 1;
        }
        writeln!(out, "{line}")?;
    }
    reader.await.map_err(|e| e.to_string())??;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// The conformance suite's client: what an agent using the group would do.
async fn conformance(url: &str, timeout: Option<Duration>) -> Result<ExitCode, BoxError> {
    let scenario = std::env::var("MCP_CONFORMANCE_SCENARIO").unwrap_or_default();
    tracing::info!(%scenario, %url, "conformance client");
    let mut config = McpClientConfig::new(ServerConfig::remote(TransportKind::StreamableHttp, url));
    config.tool_call_timeout = timeout.unwrap_or(Duration::from_secs(20));
    // Scenarios that hand out client credentials put them in the context.
    let context: serde_json::Value = std::env::var("MCP_CONFORMANCE_CONTEXT")
        .ok()
        .and_then(|c| serde_json::from_str(&c).ok())
        .unwrap_or_default();
    if let Some(id) = context["client_id"].as_str() {
        config.server.oauth_client_credentials = Some(mcp_group::OAuthClientCredentials {
            client_id: id.to_owned(),
            client_secret: context["client_secret"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            private_key_pem: context["private_key_pem"].as_str().map(str::to_owned),
            scope: None,
        });
    }
    let options = config
        .client_options()
        .with_elicitation(std::sync::Arc::new(mcp_group::core::AcceptDefaults));
    let group = FunctionGroup::connect_with(config, options).await?;
    let mut failed = false;
    for tool in group.functions().iter() {
        let arguments = example_arguments(&tool.descriptor().input_schema);
        match group.call(None, tool.name(), arguments).await {
            Ok(output) => println!("{}: {}", tool.name(), output.to_text()),
            Err(error) => {
                failed = true;
                println!("{}: error: {error}", tool.name());
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

/// Arguments for a tool built from its input schema: each property's
/// `default`, else a plain value of its type.
fn example_arguments(schema: &serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
    use serde_json::{Value, json};
    let mut arguments = serde_json::Map::new();
    if let Some(Value::Object(properties)) = schema.get("properties") {
        for (name, property) in properties {
            let value = match (
                property.get("default"),
                property.get("type").and_then(Value::as_str),
            ) {
                (Some(default), _) => default.clone(),
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

async fn demo(sessions: usize, timeout: Option<Duration>) -> Result<ExitCode, BoxError> {
    let exe = std::env::current_exe()?;
    let mut config = McpClientConfig::new(ServerConfig::stdio(
        exe.to_string_lossy().into_owned(),
        ["demo-server"],
    ));
    if let Some(timeout) = timeout {
        config.tool_call_timeout = timeout;
    }
    println!(
        "Starting the bundled demo MCP server over stdio: {} demo-server",
        exe.display()
    );
    let group = Arc::new(FunctionGroup::connect(config).await?);
    println!("Tools exposed by the group:");
    for f in group.functions() {
        println!("  {:<8} {}", f.name(), f.description().unwrap_or(""));
    }

    let names: Vec<String> = ["alice", "bob", "carol", "dave", "erin", "frank"]
        .iter()
        .cycle()
        .take(sessions.max(2))
        .enumerate()
        .map(|(i, n)| {
            if i < 6 {
                n.to_string()
            } else {
                format!("{n}{i}")
            }
        })
        .collect();
    println!(
        "\nCalling from {} sessions concurrently (3 calls each):",
        names.len()
    );
    let mut tasks = tokio::task::JoinSet::new();
    for name in &names {
        for call in 1..=3u32 {
            let group = group.clone();
            let name = name.clone();
            tasks.spawn(async move {
                let session = SessionId::from(name.clone());
                let sum = group
                    .call(Some(&session), "add", json!({"a": call, "b": 100}))
                    .await
                    .map(|o| o.to_text());
                let who = group.call(Some(&session), "whoami", Value::Null).await;
                (name, call, sum, who.map(|o| o.to_text()))
            });
        }
    }
    let mut rows = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        rows.push(joined?);
    }
    rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut pids_by_session: BTreeMap<String, HashSet<u64>> = BTreeMap::new();
    for (name, call, sum, who) in rows {
        let sum = sum?;
        let who: Value = serde_json::from_str(&who?)?;
        let pid = who["pid"].as_u64().unwrap_or(0);
        println!(
            "  session {name:<6} call {call}: add({call}, 100) = {sum:<4} served by server pid {pid} (whoami call #{} on that connection)",
            who["calls"]
        );
        pids_by_session.entry(name).or_default().insert(pid);
    }
    let all_pids: HashSet<u64> = pids_by_session.values().flatten().copied().collect();
    let each_session_one_connection = pids_by_session.values().all(|p| p.len() == 1);

    let open = group.session_count();
    let reaped = group.cleanup_sessions(Some(Duration::ZERO)).await;
    let stats = group.stats();
    println!("\nSummary:");
    println!("  sessions served:            {}", pids_by_session.len());
    println!("  distinct server processes:  {}", all_pids.len());
    println!(
        "  one connection per session: {}",
        if each_session_one_connection {
            "yes"
        } else {
            "NO"
        }
    );
    println!(
        "  connections opened:         {} (incl. the default session that listed the tools)",
        stats.created
    );
    println!("  calls served by reuse:      {}", stats.reused);
    println!(
        "  idle sessions reaped:       {reaped} of {open}; {} left",
        group.session_count()
    );
    group.shutdown().await;
    if all_pids.len() >= 2 && all_pids.len() == pids_by_session.len() && each_session_one_connection
    {
        println!("OK: every session had its own MCP client.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("FAILED: sessions did not get distinct connections.");
        Ok(ExitCode::FAILURE)
    }
}
