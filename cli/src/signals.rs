//! SIGINT and SIGTERM for the commands that run MCP servers.
//!
//! Stdio servers run in process groups of their own, so a terminal's Ctrl-C
//! never reaches them, and they would outlive a CLI that died of the signal.
//! [`run_with_group`] listens for both signals while a command runs: on the
//! first, the command's work is abandoned (its calls are cancelled), the
//! group is shut down gracefully within [`SHUTDOWN_BOUND`], and whatever is
//! still running then is killed (a connection dropped mid-close kills its
//! server's process group). A second signal cuts the graceful part short.
//! The exit code follows the shell's convention, 128 + the signal's number.
//!
//! `SIGKILL` cannot be handled: for it, the stdio transport has the kernel
//! kill each server when the CLI dies (Linux).

use std::{future::Future, process::ExitCode, sync::Arc, time::Duration};

use mcp_group::FunctionGroup;

use crate::BoxError;

/// How long the graceful shutdown after SIGINT or SIGTERM may take: enough
/// for a stdio server to exit at stdin EOF, or after `SIGTERM` two seconds
/// later.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(5);

/// The signal that stopped a command.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Interrupt,
    Terminate,
}

impl Stop {
    /// 128 + the signal's number.
    fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Stop::Interrupt => 130,
            Stop::Terminate => 143,
        })
    }

    /// 128 + the signal's number, for `std::process::exit`.
    fn exit_status(self) -> i32 {
        match self {
            Stop::Interrupt => 130,
            Stop::Terminate => 143,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Stop::Interrupt => "SIGINT",
            Stop::Terminate => "SIGTERM",
        }
    }
}

/// SIGINT and SIGTERM, listened to from creation on (their default action,
/// dying at once, no longer applies to this process).
struct Stops {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Stops {
    fn listen() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// The next signal.
    async fn next(&mut self) -> Stop {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => Stop::Interrupt,
                _ = self.terminate.recv() => Stop::Terminate,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Stop::Interrupt
        }
    }
}

/// Connects with `connect`, runs `work` on the group, and shuts the group
/// down, with SIGINT and SIGTERM handled throughout (see the module docs).
///
/// `work`'s result is returned when it completes; after a signal, the
/// signal's exit code.
pub(crate) async fn run_with_group<W, F>(
    connect: impl Future<Output = Result<FunctionGroup, BoxError>>,
    work: W,
) -> Result<ExitCode, BoxError>
where
    W: FnOnce(Arc<FunctionGroup>) -> F,
    F: Future<Output = Result<ExitCode, BoxError>>,
{
    let mut stops = Stops::listen()?;
    let watchdog = tokio::spawn(watchdog());
    // `connect` is cancel safe: a server it started is killed when dropped.
    let group = tokio::select! {
        group = connect => Arc::new(group?),
        stop = stops.next() => return Ok(stopped(stop)),
    };
    let outcome = tokio::select! {
        result = work(group.clone()) => Outcome::Done(result),
        stop = stops.next() => Outcome::Stopped(stopped(stop)),
    };
    // `work` is dropped: its calls are cancelled and their leases released.
    // After a signal the shutdown is bounded; a signal during it cuts it
    // short. Dropped part-way, it kills every server's process group.
    let bound = match outcome {
        Outcome::Done(_) => None,
        Outcome::Stopped(_) => Some(SHUTDOWN_BOUND),
    };
    let cut_short = tokio::select! {
        finished = within(bound, group.shutdown()) => {
            if !finished {
                tracing::warn!(bound = ?SHUTDOWN_BOUND, "the servers did not stop in time; killing them");
            }
            None
        }
        stop = stops.next() => Some(stopped(stop)),
    };
    watchdog.abort();
    match (cut_short, outcome) {
        (Some(code), _) | (None, Outcome::Stopped(code)) => Ok(code),
        (None, Outcome::Done(result)) => result,
    }
}

/// How much longer than [`SHUTDOWN_BOUND`] the watchdog waits.
const WATCHDOG_MARGIN: Duration = Duration::from_secs(3);

/// Ends the process if a stop takes longer than [`SHUTDOWN_BOUND`] plus a
/// margin. The command's own task may never see the signal: blocked in a
/// synchronous write to a full pipe (a reader that went away), it is never
/// polled again. This task listens on its own, and the exit happens on a
/// plain thread. The servers die with the process (on Linux, by their
/// parent-death signal).
async fn watchdog() {
    let Ok(mut stops) = Stops::listen() else {
        return;
    };
    let stop = stops.next().await;
    let spawned = std::thread::Builder::new()
        .name("mcp-group-watchdog".into())
        .spawn(move || {
            std::thread::sleep(SHUTDOWN_BOUND + WATCHDOG_MARGIN);
            std::process::exit(stop.exit_status());
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the shutdown watchdog");
    }
}

/// How a command's work ended.
enum Outcome {
    Done(Result<ExitCode, BoxError>),
    Stopped(ExitCode),
}

/// Runs `future` to completion, or for at most `bound`; whether it completed.
async fn within(bound: Option<Duration>, future: impl Future<Output = ()>) -> bool {
    match bound {
        Some(bound) => tokio::time::timeout(bound, future).await.is_ok(),
        None => {
            future.await;
            true
        }
    }
}

fn stopped(stop: Stop) -> ExitCode {
    tracing::info!(signal = stop.name(), "stopping");
    stop.exit_code()
}
