//! The `mcp-group` command-line tool: connect to one MCP server (a config
//! file, a stdio command line or a URL) and use its tools the way an agent
//! does through [`mcp_group::FunctionGroup`], with one MCP client per
//! session.
//!
//! - `tools list`, `tools call` and `ping` (module `tools`): what the server
//!   exposes, one call, the round-trip time;
//! - `batch` (module `batch`): JSON lines from stdin, concurrently across
//!   sessions and in order within one, one JSON line out per call;
//! - `auth login`, `auth status`, `auth logout` (module `auth`): the local
//!   user's OAuth sign-in to a server, kept in a `0600` token file (module
//!   `token_file`) that the other commands use and refresh;
//! - `demo` (module `demo`): the main job on the bundled demo server —
//!   several sessions, each with its own server process, then idle cleanup;
//! - `demo-server` (hidden, module `demo_server`): the bundled demo MCP
//!   server over stdio or streamable HTTP, which `demo`, the tests and the
//!   benchmarks run;
//! - `conformance` (hidden, module `conformance`): the client the MCP
//!   conformance suite drives (`cargo xtask conformance`).
//!
//! Results go to stdout (module `report` formats them, for people or as
//! JSON); logs and errors go to stderr, and a failure exits non-zero with a
//! one-line `error: …`. SIGINT and SIGTERM stop the commands that run
//! servers with a bounded graceful shutdown and exit 130 or 143 (module
//! `signals`). See `mcp-group --help` and the README.

mod auth;
mod batch;
mod conformance;
mod connect;
mod demo;
mod demo_server;
mod progress;
mod report;
mod signals;
mod token_file;
mod tools;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};

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
    /// Run JSON lines `{"session","principal","tool","args"}` from stdin
    /// (session and principal optional): concurrently across sessions, in
    /// order within one; print one JSON line per result.
    Batch {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Sign in to an OAuth-protected server, show or forget stored sign-ins.
    Auth {
        #[command(subcommand)]
        command: AuthCommand,
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
        /// The protocol eras to accept: legacy (2025-11-25, `initialize`),
        /// modern (2026-07-28, `server/discover`) or both.
        #[arg(long, value_enum, default_value_t = demo_server::Era::Both)]
        era: demo_server::Era,
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

#[derive(Debug, Subcommand)]
enum AuthCommand {
    /// Sign in to the server at URL (the OAuth authorization-code flow):
    /// prints the authorization URL, opens a browser when there is one,
    /// and takes the redirect on http://127.0.0.1:PORT/callback. The tokens
    /// go to $XDG_CONFIG_HOME/mcp-group/credentials.json (mode 0600).
    Login {
        /// The MCP server's URL (streamable HTTP).
        #[arg(long)]
        url: String,
        /// Sign in as this principal (the `principal` of `batch` lines)
        /// instead of the default user.
        #[arg(long)]
        principal: Option<String>,
        /// A scope to ask for (repeatable); none: the server decides.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// A client id registered with the authorization server; none:
        /// dynamic registration.
        #[arg(long)]
        client_id: Option<String>,
        /// Do not try to open a browser.
        #[arg(long)]
        no_browser: bool,
    },
    /// Show the stored sign-ins: issuer, resource, scopes, expiry (never a
    /// token).
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Forget stored sign-ins (all, or those of --url / --principal).
    Logout {
        /// Only the sign-ins to this server.
        #[arg(long)]
        url: Option<String>,
        /// Only this principal's sign-ins.
        #[arg(long)]
        principal: Option<String>,
    },
}

/// Which server: a config file, or inline.
#[derive(Debug, Args)]
#[group(required = true, multiple = false, id = "server_source")]
struct ServerArgs {
    /// A config file (.toml, .yaml, .yml or .json), or a NeMo Agent Toolkit
    /// workflow file (see --group).
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
    #[command(flatten)]
    workflow: WorkflowArgs,
}

/// How to reach a `--url` server (not part of the one-of server choice).
#[derive(Debug, Args)]
struct RemoteArgs {
    /// The transport for --url.
    #[arg(long, default_value = "streamable-http", value_parser = ["streamable-http", "sse"])]
    transport: String,
}

/// Which function group of a workflow file (not part of the one-of server choice).
#[derive(Debug, Args)]
struct WorkflowArgs {
    /// With --config: the function group to use from a NeMo Agent Toolkit
    /// workflow file (`function_groups.NAME`); needed when it has several
    /// MCP function groups.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["stdio", "url"])]
    group: Option<String>,
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
            eprintln!("error: {}", report::printable(&report::chain(&*e)));
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
        // rmcp's OAuth module logs the authorization code at debug.
        1 => "debug,rmcp::transport::auth=info",
        _ => "trace,rmcp::transport::auth=info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Logs go to stderr: stdout carries results (and, for the demo server, MCP).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!server_mode)
        .try_init();
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
        Command::DemoServer { http, era } => demo_server::run(http.as_deref(), era).await,
        Command::Demo { sessions } => demo::run(sessions, timeout).await,
        Command::Conformance { url } => conformance::run(&url, timeout).await,
        Command::Ping { server } => tools::ping(&server, timeout).await,
        Command::Tools { command } => match command {
            ToolsCommand::List {
                detail,
                json,
                server,
            } => tools::list(&server, detail, json, timeout).await,
            ToolsCommand::Call {
                tool,
                args,
                session,
                server,
            } => tools::call(&server, &tool, &args, session, timeout).await,
        },
        Command::Batch { server } => batch::run(&server, timeout).await,
        Command::Auth { command } => match command {
            AuthCommand::Login {
                url,
                principal,
                scopes,
                client_id,
                no_browser,
            } => {
                let login = auth::Login {
                    url,
                    principal,
                    scopes,
                    client_id,
                    no_browser,
                };
                auth::login(login, timeout).await
            }
            AuthCommand::Status { json } => auth::status(json),
            AuthCommand::Logout { url, principal } => {
                auth::logout(url.as_deref(), principal.as_deref())
            }
        },
    }
}
