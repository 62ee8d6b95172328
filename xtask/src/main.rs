//! Project chores, run as `cargo xtask <task>` (see `.cargo/config.toml`),
//! one module per task:
//!
//! - `fixtures`: install the third-party MCP servers the tests run against
//!   into `target/fixtures/`;
//! - `test`: install the fixtures, then run the whole test suite;
//! - `loom`: model-check the registry's session table with loom;
//! - `bench [registry|e2e] [--quick]`: the registry contention benchmarks, or
//!   the end-to-end ones and their plot (module `plot`);
//! - `soak [--sessions N]`: the long session churn soak;
//! - `fuzz [--cases N]`: the property tests of what servers may send, with
//!   many cases;
//! - `conformance`: the MCP conformance suite's client scenarios against
//!   `mcp-group conformance`.
//!
//! Each module's docs say what its task runs and writes.

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

mod bench;
mod conformance;
mod fixtures;
mod fuzz;
mod loom;
mod plot;
mod soak;
mod test;

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    let result = match args.first().map(String::as_str) {
        Some("fixtures") => fixtures::task(),
        Some("test") => test::task(rest),
        Some("loom") => loom::task(),
        Some("soak") => soak::task(rest),
        Some("fuzz") => fuzz::task(rest),
        Some("conformance") => conformance::task(),
        Some("bench") => bench::task(rest),
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

/// The cargo that runs this xtask.
pub(crate) fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// The workspace's root folder.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs `cmd`, failing unless it exits successfully.
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

/// The file's text, or nothing if it cannot be read.
pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Writes `text` to `path`.
pub(crate) fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
