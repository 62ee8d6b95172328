//! `cargo xtask fuzz [--cases N]`: runs the property tests of what servers
//! may send (the facade's `tests/fuzz.rs`: bytes in place of the handshake,
//! tool results, tool lists and schemas) with N cases each (default 10,000;
//! CI runs 96), in release mode.

use std::process::Command;

use crate::{Result, cargo, root, run};

pub(crate) fn task(args: &[String]) -> Result<()> {
    let cases = args
        .iter()
        .position(|a| a == "--cases")
        .and_then(|i| args.get(i + 1))
        .map_or("10000", String::as_str);
    run(Command::new(cargo())
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
