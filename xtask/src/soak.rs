//! `cargo xtask soak [--sessions N]`: churns N sessions (default 10,000), under each session-limit policy in turn,
//! through a registry of 100 with 64 callers, over stdio then streamable
//! HTTP against the demo server, and prints what was left behind (processes,
//! entries, file descriptors, RSS). It is `cli/benches/e2e.rs --soak`;
//! `cli/tests/soak.rs` is its short version, run in CI.

use crate::{Result, bench::cargo_bench, run};

pub(crate) fn task(args: &[String]) -> Result<()> {
    run(cargo_bench("mcp-group-cli", "e2e")
        .args(["--", "--soak"])
        .args(args))
}
