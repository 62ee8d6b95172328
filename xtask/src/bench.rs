//! `cargo xtask bench [registry|e2e] [--quick]`.
//!
//! - `registry` (the default) measures registry lock contention (the locking
//!   model of NeMo Agent Toolkit's Python client ported, our keyed and handle
//!   paths, the floor) and prints a summary table, writing
//!   `target/xtask-bench/registry.json`; without `--quick` it also runs the
//!   criterion benchmarks. Both build the registry with its internal
//!   `_bench` feature (the benchmark hooks).
//! - `e2e` installs the fixtures, runs the end-to-end benchmarks
//!   (`cli/benches/e2e.rs`: the group's overhead against a bare rmcp client,
//!   also in the 2026-07-28 era; throughput and p99 across sessions, a new
//!   session's first call against a warm one's per protocol era, `mcp-group
//!   batch` against server-everything, memory per session, per era), writes
//!   `target/xtask-bench/e2e.json` and plots calls/s and p99 against sessions
//!   to `target/xtask-bench/e2e.svg` (a full run also to
//!   `docs/bench-e2e.svg`, which `BENCHMARKS.md` shows).

use std::process::Command;

use crate::{Result, cargo, fixtures, plot, read, root, run, write};

pub(crate) fn task(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    match args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(String::as_str)
    {
        None | Some("registry") => registry(quick),
        Some("e2e") => e2e(quick),
        Some(other) => Err(format!("unknown benchmark {other:?} (registry, e2e)")),
    }
}

fn registry(quick: bool) -> Result<()> {
    let summary = root()
        .join("target")
        .join("xtask-bench")
        .join("registry.json");
    let mut cmd = cargo_bench("mcp-group-registry", "registry");
    cmd.args(["--features", "_bench", "--", "--summary"])
        .arg(&summary);
    if quick {
        cmd.arg("--quick");
    }
    run(&mut cmd)?;
    if !quick {
        run(cargo_bench("mcp-group-registry", "registry").args(["--features", "_bench"]))?;
    }
    Ok(())
}

fn e2e(quick: bool) -> Result<()> {
    let fixtures = fixtures::install()?;
    let out = root().join("target").join("xtask-bench");
    let summary = out.join("e2e.json");
    let mut cmd = cargo_bench("mcp-group-cli", "e2e");
    cmd.env("MCP_GROUP_FIXTURES", fixtures)
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

/// `cargo bench --package PACKAGE --bench BENCH`, from the workspace root.
pub(crate) fn cargo_bench(package: &str, bench: &str) -> Command {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root())
        .args(["bench", "--package", package, "--bench", bench]);
    cmd
}
