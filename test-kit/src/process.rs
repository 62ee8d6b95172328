//! Processes: external servers on free loopback ports, bounded waits for a
//! process to go away, what this process holds, and commands run with input.
//!
//! The waits poll: a process leaving the process table, or a file another
//! process writes, sends no event a test could await. They are bounded, and
//! meant for work that is asynchronous by design (a killed child reaped by a
//! background task), never to paper over a race in our own code.

use std::{
    io::Write,
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

/// How long [`wait_gone`], [`wait_dead`] and [`ServerProcess::start`] wait.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// How often the waits look again.
const POLL: Duration = Duration::from_millis(10);

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Blocks (up to 30 s) until something accepts connections on the loopback
/// `port`; panics if nothing ever does.
pub fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server process listening on a loopback port, killed and reaped on drop.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    port: u16,
}

impl ServerProcess {
    /// Starts `program` on a free port and waits (bounded) until the port
    /// accepts connections. The port is passed as `PORT` in the environment
    /// and replaces `{port}` in `args`; `cwd` is the working directory.
    pub fn start(program: impl AsRef<Path>, args: &[&str], cwd: Option<&Path>) -> Self {
        Self::start_on(free_port(), program, args, cwd)
    }

    /// Like [`ServerProcess::start`], on a given port (to restart a server
    /// where its clients expect it).
    pub fn start_on(
        port: u16,
        program: impl AsRef<Path>,
        args: &[&str],
        cwd: Option<&Path>,
    ) -> Self {
        let program = program.as_ref();
        let mut command = Command::new(program);
        command
            .args(args.iter().map(|a| a.replace("{port}", &port.to_string())))
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", program.display()));
        // Built before waiting, so that a server that never listens is
        // still killed when the wait panics.
        let server = Self { child, port };
        wait_listening(port);
        server
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `probe` every 10 ms until it returns a value or `limit` (wall
/// time) has passed.
pub async fn wait_for<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether `check` became true within `limit` (polled every 10 ms).
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    wait_for(limit, || check().then_some(())).await.is_some()
}

/// Whether a process with this pid exists (an unreaped zombie counts).
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether `pid` has exited (it may still be an unreaped zombie).
pub fn process_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => is_zombie(&stat),
    }
}

/// Whether `pid` is running (not a zombie) with `needle` in its command line.
pub fn process_running(pid: u32, needle: &str) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !is_zombie(&stat)
        && cmdline
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
}

/// The state in `/proc/<pid>/stat` follows the parenthesised command name.
fn is_zombie(stat: &str) -> bool {
    stat.rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

/// Waits (up to [`PATIENCE`]) until `pid` is gone and reaped.
pub async fn wait_gone(pid: u32) -> bool {
    eventually(PATIENCE, || !process_exists(pid)).await
}

/// Waits (up to [`PATIENCE`]) until `pid` has exited, reaped or not.
pub async fn wait_dead(pid: u32) -> bool {
    eventually(PATIENCE, || process_dead(pid)).await
}

/// This process's resident set size in KiB (0 where `/proc` cannot say).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// How many file descriptors this process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// What this process's open file descriptors point at (for a failure
/// message).
pub fn fd_targets() -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|t| t.display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `command` to the end with `input` (or nothing) on its stdin and its
/// stdout captured; stderr is as the caller set it.
pub fn run_with_input(command: &mut Command, input: Option<&str>) -> Output {
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .spawn()
        .expect("the command starts");
    if let Some(input) = input {
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .expect("the command reads its input");
    }
    child
        .wait_with_output()
        .expect("the command runs to the end")
}
