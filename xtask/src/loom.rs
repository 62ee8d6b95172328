//! `cargo xtask loom`: model-checks the registry's session table with loom
//! (`RUSTFLAGS="--cfg mcp_group_loom"`, the registry crate only, in its own
//! target folder so the normal build is not invalidated), and fails if no
//! model ran.

use std::process::Command;

use crate::{Result, cargo, root};

pub(crate) fn task() -> Result<()> {
    let mut cmd = Command::new(cargo());
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
