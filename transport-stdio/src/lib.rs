//! The stdio transport of [mcp-group]: each connection spawns the MCP server
//! as a child process and speaks MCP over its stdin and stdout.
//!
//! - The server's stderr is read line by line and forwarded to `tracing`
//!   (target `mcp_group::server_stderr`, level `INFO`), tagged with the pid.
//!   It is read as bytes and decoded lossily, and a line is cut at 8 KiB
//!   (the rest, up to the newline, is dropped): whatever a server writes
//!   there, it is drained to the end and never kills the server or grows
//!   our memory.
//! - The child runs in its own process group. [`Connection::close`] closes its
//!   stdin, waits for it to exit, then sends `SIGTERM` and finally `SIGKILL`
//!   to the whole group; dropping the connection without closing it kills the
//!   group at once. Either way the child is reaped: no orphans, no zombies.
//! - On Linux the child gets `SIGKILL` if this process dies, even of
//!   `SIGKILL` (`PR_SET_PDEATHSIG`). The kernel sends it when the thread
//!   that forked the child exits, so servers are forked from one thread that
//!   lives as long as the process. The server's own children are not
//!   covered; they see their stdin close.
//!
//! rmcp's own `TokioChildProcess` kills the child from a task spawned in its
//! `Drop`, which never runs when the runtime is already shutting down, and it
//! does not reach grandchildren (an `npx` or shell wrapper's real server).
//! That is why this crate spawns the process itself and hands rmcp only the
//! `(stdout, stdin)` pair, which rmcp frames as newline-delimited JSON-RPC.
//!
//! ```no_run
//! use mcp_group_core::{SessionId, Transport};
//! use mcp_group_transport_stdio::{StdioConfig, StdioTransport};
//!
//! # async fn run() -> Result<(), mcp_group_core::Error> {
//! let transport = StdioTransport::new(StdioConfig::new("npx").arg("-y").arg("@modelcontextprotocol/server-everything"));
//! let connection = transport.connect(&SessionId::new("alice").into()).await?;
//! let output = connection
//!     .call_tool("echo", serde_json::from_str(r#"{"message":"hi"}"#).unwrap(), std::time::Duration::from_secs(5))
//!     .await?;
//! assert_eq!(output.to_text(), "Echo: hi");
//! connection.close().await; // the process is gone after this
//! # Ok(()) }
//! ```
//!
//! # Cancel safety
//! `connect` is cancel safe: dropping its future kills the half-started
//! process group. So is the close: dropped at any point (say, by a shutdown
//! that ran out of time), it kills the whole group — grandchildren
//! included — and tokio reaps the server.
//!
//! [mcp-group]: https://docs.rs/mcp-group

use std::{collections::BTreeMap, fmt, path::PathBuf, process::Stdio, time::Duration};

use mcp_group_core::{
    Cleanup, ClientOptions, Connection, Redacted, ServerDescription, SessionKey, Transport,
    redact_args,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, ChildStderr, ChildStdin, ChildStdout, Command},
};

/// How long a closed server gets to exit on its own, and then after `SIGTERM`.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// The variables of this process's environment a server gets by default:
/// the list the reference MCP SDKs (Python, TypeScript) pass on POSIX. The
/// rest — API tokens, cloud credentials — stays with us unless the config
/// sets `inherit_env`.
pub const INHERITED_ENV: [&str; 6] = ["HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER"];

/// What to run: the command, its arguments, environment and working directory.
/// `Debug` redacts secret-looking environment values and arguments.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StdioConfig {
    /// The program to run (looked up in `PATH` when it has no slash).
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment variables set for the server, on top of [`INHERITED_ENV`]
    /// (or of the whole environment, with `inherit_env`).
    pub env: BTreeMap<String, String>,
    /// The working directory, if not the current one.
    pub cwd: Option<PathBuf>,
    /// Pass this process's whole environment to the server instead of
    /// [`INHERITED_ENV`] only (default false).
    pub inherit_env: bool,
}

impl fmt::Debug for StdioConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StdioConfig")
            .field("command", &self.command)
            .field("args", &redact_args(&self.args))
            .field("env", &Redacted(&self.env))
            .field("cwd", &self.cwd)
            .field("inherit_env", &self.inherit_env)
            .finish()
    }
}

impl StdioConfig {
    /// Runs `command` with no arguments.
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            ..Self::default()
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets the working directory.
    pub fn cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// Parses a shell-like command line (`node server.js --flag "a b"`).
    pub fn from_command_line(line: &str) -> Result<Self, Error> {
        let mut words = shell_words::split(line)
            .map_err(|source| Error::UnparsableCommandLine { source })?
            .into_iter();
        let command = words.next().ok_or(Error::EmptyCommandLine)?;
        Ok(Self::new(command).args(words))
    }

    /// The command line, quoted as a shell would need it.
    pub fn command_line(&self) -> String {
        let mut words = vec![self.command.as_str()];
        words.extend(self.args.iter().map(String::as_str));
        shell_words::join(words)
    }

    /// The command line with secret-looking arguments redacted: what logs,
    /// errors and descriptions show.
    pub fn display_command_line(&self) -> String {
        let args = redact_args(&self.args);
        let mut words = vec![self.command.as_str()];
        words.extend(args.iter().map(String::as_str));
        shell_words::join(words)
    }
}

/// What the stdio transport reports: a command line it cannot split, or a
/// server process it cannot start. A spawn failure reaches callers as the
/// source of [`mcp_group_core::Error::Start`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The command line is empty.
    #[error("the command line is empty")]
    EmptyCommandLine,
    /// Unbalanced quotes or a trailing backslash.
    #[error("the command line cannot be split into words")]
    UnparsableCommandLine {
        /// What the splitter reported.
        #[source]
        source: shell_words::ParseError,
    },
    /// The operating system refused to start the process (missing binary,
    /// bad working directory, no permission).
    #[error("could not start `{command}`")]
    Spawn {
        /// The command line that was run.
        command: String,
        /// Why the operating system refused.
        #[source]
        source: std::io::Error,
    },
}

/// A transport that spawns one server process per connection.
#[derive(Debug, Clone)]
pub struct StdioTransport {
    config: StdioConfig,
    options: ClientOptions,
    /// The server's protocol era, learned by the first connection.
    era: std::sync::Arc<mcp_group_core::EraMemory>,
}

impl StdioTransport {
    /// A transport running `config` for every new connection.
    pub fn new(config: StdioConfig) -> Self {
        Self {
            config,
            options: ClientOptions::new(),
            era: Default::default(),
        }
    }

    /// The client side's options: offered protocol version, elicitation.
    pub fn with_client_options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &StdioConfig {
        &self.config
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.config.command);
        if !self.config.inherit_env {
            cmd.env_clear();
            for name in INHERITED_ENV {
                if let Some(value) = std::env::var_os(name) {
                    cmd.env(name, value);
                }
            }
        }
        cmd.args(&self.config.args)
            .envs(&self.config.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(cwd) = &self.config.cwd {
            cmd.current_dir(cwd);
        }
        #[cfg(unix)]
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        die_with_parent(&mut cmd);
        cmd
    }
}

/// Makes the child get `SIGKILL` when this process dies, however it dies
/// (Linux `PR_SET_PDEATHSIG`).
///
/// The kernel sends the signal when the *thread* that forked the child
/// exits, not the process; that is why [`spawn`] forks from a thread that
/// lives as long as the process.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before `exec` and only
    // makes async-signal-safe system calls (`prctl`, `getppid`); it neither
    // allocates nor takes locks (the errors it builds are raw OS codes).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // If we died between the fork and the `prctl`, no signal will
            // come: the child has a new parent already. Do not start.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Spawns `cmd` and puts the process under a [`ChildGuard`].
///
/// On Linux the fork happens on one dedicated thread that lives as long as
/// the process, so that [`die_with_parent`]'s signal comes when the process
/// dies, and not when whichever runtime thread happened to spawn exits (a
/// blocking-pool thread idles out, a `current_thread` runtime's thread may
/// end while the connection lives on). If the caller gave up meanwhile, the
/// guard is dropped on that thread and kills the process group.
async fn spawn(mut cmd: Command) -> std::io::Result<ChildGuard> {
    #[cfg(target_os = "linux")]
    if let (Some(spawner), Ok(runtime)) = (spawner(), tokio::runtime::Handle::try_current()) {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let job: SpawnJob = Box::new(move || {
            // tokio's `Child` registers with the caller's runtime.
            // A caller that gave up while this job waited gets no process:
            // forking now could leave one no guard owns.
            if sender.is_closed() {
                return;
            }
            let _runtime = runtime.enter();
            let _ = sender.send(cmd.spawn().map(ChildGuard::new));
        });
        if let Err(std::sync::mpsc::SendError(job)) = spawner.send(job) {
            job();
        }
        return receiver
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("the spawning thread is gone")));
    }
    cmd.spawn().map(ChildGuard::new)
}

#[cfg(target_os = "linux")]
type SpawnJob = Box<dyn FnOnce() + Send>;

/// The thread [`spawn`] forks from, started on first use and never ended
/// (its sender lives in a static, so its loop never sees the channel close).
/// `None` if the thread could not be started: then the caller's thread forks.
#[cfg(target_os = "linux")]
fn spawner() -> Option<&'static std::sync::mpsc::Sender<SpawnJob>> {
    static SPAWNER: std::sync::OnceLock<Option<std::sync::mpsc::Sender<SpawnJob>>> =
        std::sync::OnceLock::new();
    SPAWNER
        .get_or_init(|| {
            let (sender, jobs) = std::sync::mpsc::channel::<SpawnJob>();
            let thread = std::thread::Builder::new()
                .name("mcp-group-spawner".into())
                .spawn(move || {
                    for job in jobs {
                        // A panicking job must not end the thread: its
                        // children would get their parent-death signal.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                });
            match thread {
                Ok(_) => Some(sender),
                Err(error) => {
                    tracing::warn!(%error, "cannot start the stdio spawner thread; servers are spawned from runtime threads");
                    None
                }
            }
        })
        .as_ref()
}

#[mcp_group_core::async_trait]
impl Transport for StdioTransport {
    async fn connect(&self, session: &SessionKey) -> Result<Connection, mcp_group_core::Error> {
        mcp_group_core::negotiate(&self.era, || self.connect_once(session)).await
    }

    fn description(&self) -> ServerDescription {
        self.describe()
    }

    fn era(&self) -> Option<mcp_group_core::Era> {
        self.era.era()
    }
}

impl StdioTransport {
    /// The protocol era the server was found to speak, once a connection
    /// has found out.
    pub fn era(&self) -> Option<mcp_group_core::Era> {
        self.era.era()
    }

    async fn connect_once(
        &self,
        session: &SessionKey,
    ) -> Result<Connection, mcp_group_core::Error> {
        let command_line = self.config.display_command_line();
        // From here on the guard owns the process: any early return or a
        // dropped future kills the group.
        let mut guard =
            spawn(self.command())
                .await
                .map_err(|source| mcp_group_core::Error::Start {
                    endpoint: command_line.clone(),
                    source: Box::new(Error::Spawn {
                        command: command_line.clone(),
                        source,
                    }),
                })?;
        let pid = guard.pid();
        tracing::debug!(?pid, %session, command = %command_line, "spawned MCP server");
        let Some((stdin, stdout, stderr)) = guard.take_pipes() else {
            // All three are piped above, so this cannot happen; fail cleanly anyway.
            return Err(mcp_group_core::Error::ServerGone { source: None });
        };
        tokio::spawn(forward_stderr(stderr, pid));
        let connection = Connection::establish_remembering(
            (stdout, stdin),
            command_line,
            &self.options,
            session,
            &self.era,
        )
        .await?;
        Ok(connection.with_cleanup(guard))
    }

    fn describe(&self) -> ServerDescription {
        ServerDescription {
            transport: "stdio",
            endpoint: self.config.display_command_line(),
        }
    }
}

/// The longest stderr line forwarded; the rest of a longer one is dropped.
const MAX_STDERR_LINE: usize = 8 * 1024;

/// Forwards the server's stderr to `tracing`, line by line, until EOF.
///
/// It reads bytes, not text: a server's stderr may be in any encoding, and
/// a reader that stopped at the first invalid byte would close the pipe and
/// kill the server with `SIGPIPE` at its next write. Lines are decoded
/// lossily and capped at [`MAX_STDERR_LINE`] bytes, so a server writing
/// without newlines cannot grow our memory.
async fn forward_stderr(stderr: ChildStderr, pid: Option<u32>) {
    let mut reader = BufReader::new(stderr);
    let mut line = StderrLine::default();
    loop {
        let buffer = match reader.fill_buf().await {
            Ok(buffer) => buffer,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(target: "mcp_group::server_stderr", pid, error = %e, "reading stderr failed; stop reading it");
                break;
            }
        };
        if buffer.is_empty() {
            if !line.bytes.is_empty() {
                line.finish(pid);
            }
            break;
        }
        let used = match buffer.iter().position(|&b| b == b'\n') {
            Some(end) => {
                line.push(&buffer[..end], pid);
                line.finish(pid);
                end + 1
            }
            None => {
                line.push(buffer, pid);
                buffer.len()
            }
        };
        reader.consume(used);
    }
}

/// The stderr line being read: at most [`MAX_STDERR_LINE`] bytes are kept.
#[derive(Default)]
struct StderrLine {
    bytes: Vec<u8>,
    /// The line was cut (and logged); the rest up to the newline is dropped.
    truncated: bool,
}

impl StderrLine {
    fn push(&mut self, mut bytes: &[u8], pid: Option<u32>) {
        if self.truncated {
            return;
        }
        let room = MAX_STDERR_LINE - self.bytes.len();
        let cut = bytes.len() > room;
        if cut {
            bytes = &bytes[..room];
        }
        self.bytes.extend_from_slice(bytes);
        if cut {
            let text = String::from_utf8_lossy(&self.bytes);
            tracing::info!(target: "mcp_group::server_stderr", pid, "{text} [line longer than {MAX_STDERR_LINE} bytes; the rest dropped]");
            self.bytes.clear();
            self.truncated = true;
        }
    }

    /// Logs the line (unless it was logged when cut) and starts the next.
    fn finish(&mut self, pid: Option<u32>) {
        if !self.truncated {
            let bytes = self.bytes.strip_suffix(b"\r").unwrap_or(&self.bytes);
            let text = String::from_utf8_lossy(bytes);
            tracing::info!(target: "mcp_group::server_stderr", pid, "{text}");
        }
        self.bytes.clear();
        self.truncated = false;
    }
}

/// Owns a server process and its process group; see the crate docs.
///
/// The guard keeps the child until the whole group is dead and the leader
/// reaped, so a [`Cleanup::cleanup`] dropped at any await point leaves the
/// rest to `Drop`, which kills the group. The group is always signalled
/// while its leader is alive or an unreaped zombie: until it is reaped, its
/// pid — the group id — cannot be given to another process.
#[derive(Debug)]
struct ChildGuard {
    child: Option<Child>,
    pgid: Option<i32>,
}

impl ChildGuard {
    fn new(child: Child) -> Self {
        let pgid = child.id().and_then(|id| i32::try_from(id).ok());
        Self {
            child: Some(child),
            pgid,
        }
    }

    /// The server's process id (unset once it is reaped).
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The server's stdin, stdout and stderr, once.
    fn take_pipes(&mut self) -> Option<(ChildStdin, ChildStdout, ChildStderr)> {
        let child = self.child.as_mut()?;
        match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
            (Some(stdin), Some(stdout), Some(stderr)) => Some((stdin, stdout, stderr)),
            _ => None,
        }
    }

    fn signal_group(&self, signal: i32) {
        #[cfg(unix)]
        if let Some(pgid) = self.pgid {
            // SAFETY: killpg has no memory-safety preconditions; a stale group
            // id only yields ESRCH. The group was created for this child by
            // `process_group(0)`, and its id is not reused while the leader
            // is unreaped (every caller signals before reaping).
            unsafe {
                libc::killpg(pgid, signal);
            }
        }
        #[cfg(not(unix))]
        let _ = signal;
    }

    /// Whether the leader has exited, without reaping it (Linux: `waitid`
    /// with `WNOWAIT`). Elsewhere the check reaps it, and the group signals
    /// that follow are best effort.
    fn leader_exited(&mut self) -> bool {
        #[cfg(target_os = "linux")]
        if let Some(pid) = self.pgid.and_then(|pid| libc::id_t::try_from(pid).ok()) {
            // SAFETY: `info` is a plain C struct, valid when zeroed, and
            // `waitid` only writes into it. `WNOWAIT` leaves the child
            // waitable: tokio's `Child` reaps it later.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let found = unsafe {
                libc::waitid(
                    libc::P_PID,
                    pid,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                )
            };
            // With WNOHANG, a child that has not exited leaves `si_pid` zero.
            // SAFETY: `si_pid` reads the field `waitid` filled in.
            return found != 0 || unsafe { info.si_pid() } != 0;
        }
        match self.child.as_mut() {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Waits up to `grace` for the leader to exit, without reaping it where
    /// the platform allows; see [`ChildGuard::leader_exited`].
    async fn leader_exits_within(&mut self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        // Every child's exit raises SIGCHLD: listen before looking, so that
        // an exit between the look and the wait is not missed.
        #[cfg(unix)]
        let mut sigchld =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok();
        loop {
            if self.leader_exited() {
                return true;
            }
            #[cfg(unix)]
            let woken = match sigchld.as_mut() {
                Some(sigchld) => tokio::time::timeout_at(deadline, sigchld.recv())
                    .await
                    .is_ok(),
                None => tokio::time::timeout_at(deadline, poll_tick()).await.is_ok(),
            };
            #[cfg(not(unix))]
            let woken = tokio::time::timeout_at(deadline, poll_tick()).await.is_ok();
            if !woken {
                return self.leader_exited();
            }
        }
    }
}

/// The fallback when SIGCHLD cannot be listened to: look again shortly.
async fn poll_tick() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[mcp_group_core::async_trait]
impl Cleanup for ChildGuard {
    async fn cleanup(mut self: Box<Self>) {
        if self.child.is_none() {
            return;
        }
        // rmcp has closed our end of stdin: a well-behaved server exits now.
        if !self.leader_exits_within(EXIT_GRACE).await {
            self.signal_group(libc::SIGTERM);
            self.leader_exits_within(EXIT_GRACE).await;
        }
        // Whatever the leader did, leave nothing of its group behind; the
        // leader is not reaped yet, so the group id is still this group's.
        self.signal_group(libc::SIGKILL);
        if let Some(child) = self.child.as_mut() {
            // The leader too, by its pid: it may have left its group. The pid
            // is still ours (not reaped), so this cannot hit another process.
            let _ = child.start_kill();
            // Dropped here, `Drop` signals the group again: harmless.
            let _ = child.wait().await;
        }
        tracing::debug!(pgid = self.pgid, "MCP server process reaped");
        // The group id is free for reuse once the leader is reaped.
        self.child = None;
        self.pgid = None;
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The leader is not reaped yet: the group id is still ours.
            self.signal_group(libc::SIGKILL);
            // Reap now if it is already gone; otherwise tokio's `kill_on_drop`
            // kills it and its orphan queue reaps it.
            let _ = child.try_wait();
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::{
        path::{Path, PathBuf},
        pin::pin,
        task::{Context, Waker},
        time::Duration,
    };

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "mcp-group-stdio-unit-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Whether `pid` has exited (an unreaped zombie counts: once its parent
    /// is gone, reaping is up to init).
    fn dead(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z')),
        }
    }

    /// Polls the process table (bounded) until `pid` has exited.
    async fn wait_dead(pid: u32) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !dead(pid) {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Polls (bounded) until the child has written `path`.
    async fn read_pid(path: &Path) -> u32 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = std::fs::read_to_string(path) {
                if let Ok(pid) = text.trim().parse() {
                    if text.ends_with('\n') {
                        return pid;
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} was never written",
                path.display()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn cancelling_a_close_leaks_no_process_group() {
        let dir = scratch("cancelled-close");
        // Leaves a grandchild in its group and outlives its stdin.
        let script = format!(
            "sleep 600 & echo $! > '{d}/grandchild'; cat > /dev/null; exec sleep 600",
            d = dir.display()
        );
        let transport = StdioTransport::new(StdioConfig::new("sh").arg("-c").arg(script));
        let mut child = transport.command().spawn().unwrap();
        let leader = child.id().unwrap();
        // What rmcp does before the cleanup runs: close the server's stdin.
        drop(child.stdin.take());
        let guard = Box::new(ChildGuard::new(child));
        let grandchild = read_pid(&dir.join("grandchild")).await;
        assert!(!dead(leader) && !dead(grandchild));

        // Poll the close once (it is now waiting for the leader), then drop it.
        {
            let mut close = pin!(guard.cleanup());
            let mut context = Context::from_waker(Waker::noop());
            assert!(close.as_mut().poll(&mut context).is_pending());
        }

        assert!(wait_dead(leader).await, "leader {leader} killed");
        assert!(
            wait_dead(grandchild).await,
            "grandchild {grandchild} killed with its group"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_leader_that_leaves_its_group_and_ignores_sigterm_is_still_killed_on_close() {
        use tokio::io::AsyncBufReadExt;
        // The leader ignores SIGTERM and stdin EOF and moves itself into its
        // parent's process group (same session: allowed), out of reach of
        // the group signals; it says so on stdout once it has.
        let transport = StdioTransport::new(StdioConfig::new("perl").arg("-e").arg(
            "$| = 1; $SIG{TERM} = 'IGNORE'; setpgrp(0, getpgrp(getppid())) or die; print \"moved\\n\"; sleep 600",
        ));
        let mut child = transport.command().spawn().unwrap();
        let leader = child.id().unwrap();
        drop(child.stdin.take());
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(stdout.next_line().await.unwrap().as_deref(), Some("moved"));
        let guard = Box::new(ChildGuard::new(child));
        let finished = tokio::time::timeout(EXIT_GRACE * 4, guard.cleanup())
            .await
            .is_ok();
        assert!(
            finished,
            "the close hung (leader {leader} alive: {})",
            !dead(leader)
        );
        assert!(dead(leader));
    }

    #[tokio::test]
    async fn a_close_returns_as_soon_as_the_server_exits() {
        let transport = StdioTransport::new(
            StdioConfig::new("sh")
                .arg("-c")
                .arg("cat > /dev/null; exit 3"),
        );
        let mut child = transport.command().spawn().unwrap();
        let leader = child.id().unwrap();
        drop(child.stdin.take());
        let guard = Box::new(ChildGuard::new(child));
        // The exit is noticed when it happens (SIGCHLD), not at the end of
        // the grace period.
        tokio::time::timeout(EXIT_GRACE / 2, guard.cleanup())
            .await
            .expect("the close ends with the server");
        assert!(dead(leader));
    }
}
