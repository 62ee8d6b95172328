//! `cargo xtask fixtures`: installs the third-party MCP servers the tests
//! run against, from the package registries, into `target/fixtures/`
//! (or `MCP_GROUP_FIXTURES`): `@modelcontextprotocol/server-everything`
//! (npm), Python's `mcp` package (2.x, which serves both protocol eras) in
//! one venv, and a legacy-only `mcp` 1.x release (it answers `server/discover`
//! with a JSON-RPC error and speaks 2025-11-25 after `initialize`) in a
//! second one, `venv-legacy`. Idempotent: a finished install is not repeated.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{Result, read, root, run, write};

/// Pinned versions of the servers no one here wrote.
const SERVER_EVERYTHING: &str = "@modelcontextprotocol/server-everything@2026.8.31";
const PYTHON_MCP: &str = "mcp==2.3.0";
/// A release from before the 2026-07-28 revision, for the era fallback: its
/// newest protocol version is 2025-11-25.
const PYTHON_MCP_LEGACY: &str = "mcp==1.23.3";

pub(crate) fn task() -> Result<()> {
    install().map(|_| ())
}

/// Where the fixtures live: `MCP_GROUP_FIXTURES`, else the workspace's
/// `target/fixtures`.
pub(crate) fn dir() -> PathBuf {
    env::var_os("MCP_GROUP_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target").join("fixtures"))
}

/// Installs the fixtures and returns their folder.
pub(crate) fn install() -> Result<PathBuf> {
    let dir = dir();
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

    venv(&dir.join("venv"), PYTHON_MCP)?;
    venv(&dir.join("venv-legacy"), PYTHON_MCP_LEGACY)?;
    eprintln!("xtask: fixtures ready in {}", dir.display());
    Ok(dir)
}

/// A Python virtual environment at `venv` with `requirement` installed.
fn venv(venv: &Path, requirement: &str) -> Result<()> {
    let stamp = venv.join(".installed");
    if read(&stamp) != requirement {
        let python = env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
        run(Command::new(python).args(["-m", "venv"]).arg(venv))?;
        run(Command::new(venv.join("bin").join("pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            requirement,
        ]))?;
        write(&stamp, requirement)?;
    }
    Ok(())
}
