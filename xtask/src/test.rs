//! `cargo xtask test [ARGS…]`: installs the fixtures, then runs the whole
//! test suite, `cargo test --workspace --all-features` (doc tests included),
//! with any extra arguments passed on to `cargo test`.

use std::process::Command;

use crate::{Result, cargo, fixtures, root, run};

pub(crate) fn task(extra: &[String]) -> Result<()> {
    let dir = fixtures::install()?;
    run(Command::new(cargo())
        .current_dir(root())
        .env("MCP_GROUP_FIXTURES", dir)
        .args(["test", "--workspace", "--all-features"])
        .args(extra))
}
