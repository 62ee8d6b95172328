//! Where `cargo xtask fixtures` installed the third-party servers the tests
//! run against.

use std::path::{Path, PathBuf};

/// `@modelcontextprotocol/server-everything`'s package folder, under
/// [`fixtures_dir`].
pub const SERVER_EVERYTHING: &str = "npm/node_modules/@modelcontextprotocol/server-everything";

/// The Python (with the `mcp` package) of the fixtures' virtual environment,
/// under [`fixtures_dir`].
pub const PYTHON: &str = "venv/bin/python";

/// The Python of the legacy fixtures' virtual environment (an `mcp` 1.x
/// release that speaks only the 2025-11-25 era), under [`fixtures_dir`].
pub const PYTHON_LEGACY: &str = "venv-legacy/bin/python";

/// The workspace's root folder (the one with `Cargo.lock`).
pub fn workspace_root() -> PathBuf {
    let kit = Path::new(env!("CARGO_MANIFEST_DIR"));
    kit.ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .unwrap_or(kit)
        .to_path_buf()
}

/// Where the fixtures are: `MCP_GROUP_FIXTURES`, or the workspace's
/// `target/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("MCP_GROUP_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target").join("fixtures"))
}

/// Whether `relative` (under [`fixtures_dir`]) is installed.
pub fn installed(relative: &str) -> bool {
    fixtures_dir().join(relative).exists()
}

/// `relative` under [`fixtures_dir`]; panics, saying how to install it, if
/// it is not there.
#[track_caller]
pub fn fixture(relative: &str) -> PathBuf {
    let path = fixtures_dir().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask fixtures` (or the whole suite with `cargo xtask test`)",
        path.display()
    );
    path
}
