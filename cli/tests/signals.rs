//! The `mcp-group` binary terminated by a signal in the middle of a batch:
//! no server process is left behind, whether it is asked to stop (SIGINT,
//! SIGTERM: a bounded graceful shutdown, exit code 128 + the signal) or
//! killed outright (SIGKILL: the servers die with it).
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

mod support;

use std::{process::Stdio, time::Duration};

use mcp_group_test_kit::{process_dead, wait_dead};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

const BIN: &str = env!("CARGO_BIN_EXE_mcp-group");

/// How long an OS event (a line of output, a process exit) may take.
const DEADLINE: Duration = Duration::from_secs(20);

/// The processes whose parent is `pid`, from the process table.
fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The parent's pid is the second field after the parenthesised name.
        let parent = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split(' ').nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if parent == Some(pid) {
            children.push(child);
        }
    }
    children
}

/// `mcp-group batch` in the middle of its work, with its pipes open.
struct Batch {
    cli: Child,
    /// Its server processes, and theirs.
    servers: Vec<u32>,
    _stdin: ChildStdin,
    _stdout: Lines<BufReader<ChildStdout>>,
}

/// `mcp-group batch` with two sessions (the default one and "a") each in the
/// middle of a ten-minute call. Each server is `sh`, which runs the demo
/// server and, once that has exited (at stdin EOF), stays as `sleep`: a
/// server that outlives its stdin.
async fn batch_in_flight() -> Batch {
    let server = format!("sh -c '\"$0\" demo-server; exec sleep 600' {BIN}");
    let mut cli = Command::new(BIN)
        .args(["batch", "--stdio", &server])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = cli.stdin.take().unwrap();
    stdin
        .write_all(
            concat!(
                r#"{"tool":"whoami"}"#,
                "\n",
                r#"{"session":"a","tool":"whoami"}"#,
                "\n",
                r#"{"tool":"sleep","args":{"ms":600000}}"#,
                "\n",
                r#"{"session":"a","tool":"sleep","args":{"ms":600000}}"#,
                "\n",
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut lines = BufReader::new(cli.stdout.take().unwrap()).lines();
    let mut demo_servers = Vec::new();
    for _ in 0..2 {
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("whoami answered")
            .unwrap()
            .expect("a result line");
        let result: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(result["ok"], true, "{line}");
        let who: serde_json::Value =
            serde_json::from_str(result["result"].as_str().unwrap()).unwrap();
        demo_servers.push(who["pid"].as_u64().unwrap() as u32);
    }
    let mut servers = children_of(cli.id().unwrap());
    assert_eq!(servers.len(), 2, "one server per session");
    for server in servers.clone() {
        servers.extend(children_of(server));
    }
    for demo_server in demo_servers {
        assert!(
            servers.contains(&demo_server),
            "{demo_server} in {servers:?}"
        );
    }
    // Both pipes stay open: the batch is still running.
    Batch {
        cli,
        servers,
        _stdin: stdin,
        _stdout: lines,
    }
}

async fn exit_status(cli: &mut Child) -> std::process::ExitStatus {
    tokio::time::timeout(DEADLINE, cli.wait())
        .await
        .expect("the CLI exits")
        .unwrap()
}

async fn assert_all_dead(servers: &[u32]) {
    for &pid in servers {
        assert!(
            wait_dead(pid).await,
            "server {pid} outlived the CLI: {}",
            std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default()
        );
    }
}

fn signal(cli: &Child, signal: i32) {
    let pid = libc::pid_t::try_from(cli.id().unwrap()).unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

#[tokio::test]
async fn sigterm_to_the_cli_leaves_no_orphaned_server() {
    let mut batch = batch_in_flight().await;
    signal(&batch.cli, libc::SIGTERM);
    let status = exit_status(&mut batch.cli).await;
    assert_eq!(status.code(), Some(143), "handled, not killed: {status:?}");
    // A graceful shutdown reaps its servers itself.
    assert_all_dead(&batch.servers).await;
}

#[tokio::test]
async fn sigint_to_the_cli_leaves_no_orphaned_server() {
    let mut batch = batch_in_flight().await;
    signal(&batch.cli, libc::SIGINT);
    let status = exit_status(&mut batch.cli).await;
    assert_eq!(status.code(), Some(130), "handled, not killed: {status:?}");
    assert_all_dead(&batch.servers).await;
}

#[tokio::test]
async fn sigkill_to_the_cli_leaves_no_orphaned_server() {
    let mut batch = batch_in_flight().await;
    assert!(batch.servers.iter().all(|&pid| !process_dead(pid)));
    signal(&batch.cli, libc::SIGKILL);
    let status = exit_status(&mut batch.cli).await;
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    assert_all_dead(&batch.servers).await;
}

/// Whether `pid` is blocked writing to a pipe (its kernel wait channel).
fn blocked_on_pipe_write(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|task| {
        std::fs::read_to_string(task.path().join("wchan")).is_ok_and(|w| w.contains("pipe_write"))
    })
}

#[tokio::test]
async fn sigterm_ends_a_batch_whose_stdout_nobody_reads() {
    let mut cli = Command::new(BIN)
        .args(["batch", "--stdio", &format!("{BIN} demo-server")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Far more output than a pipe holds, and nobody reads it.
    let line = concat!(
        r#"{"tool":"echo","args":{"message":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}"#,
        "\n"
    );
    let mut stdin = cli.stdin.take().unwrap();
    stdin
        .write_all(line.repeat(5_000).as_bytes())
        .await
        .unwrap();
    let _stdout = cli.stdout.take().unwrap();
    let pid = cli.id().unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !blocked_on_pipe_write(pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the CLI never filled its stdout"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let servers = children_of(pid);
    signal(&cli, libc::SIGTERM);
    let status = exit_status(&mut cli).await;
    assert_eq!(status.code(), Some(143), "handled, not killed: {status:?}");
    assert_all_dead(&servers).await;
}
