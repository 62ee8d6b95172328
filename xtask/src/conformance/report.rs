//! Reading what the conformance suite's 0.2 releases print and ship: the
//! `=== SUITE SUMMARY ===` of a `client --requirements REV` run, and the
//! client scenarios a revision's `requirements/REV.yaml` scores.

/// One `✓`/`✗ name: N passed, M failed[, K warnings]` line of a summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScenarioLine {
    pub(crate) name: String,
    pub(crate) passed: bool,
    pub(crate) checks_passed: u32,
    pub(crate) checks_failed: u32,
    pub(crate) warnings: u32,
}

/// A run's summary: every scenario line, and which of them the run says are
/// not scored (with the reason it gives).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) scenarios: Vec<ScenarioLine>,
    pub(crate) not_scored: Vec<(String, String)>,
}

/// How a scenario did in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Passed,
    Failed,
    /// The run printed no line for it: counts as failed.
    Missing,
}

impl Status {
    /// Its name in `summary.json`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Failed => "failed",
            Self::Missing => "missing",
        }
    }

    /// Its name in the printed table.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Passed => "pass",
            Self::Failed => "FAIL",
            Self::Missing => "MISSING",
        }
    }
}

impl Summary {
    /// The summary line of `name`, if the run printed one.
    pub(crate) fn get(&self, name: &str) -> Option<&ScenarioLine> {
        self.scenarios.iter().find(|s| s.name == name)
    }

    /// How `name` did: a scenario the run printed no line for did not pass.
    pub(crate) fn status(&self, name: &str) -> Status {
        match self.get(name) {
            Some(line) if line.passed => Status::Passed,
            Some(_) => Status::Failed,
            None => Status::Missing,
        }
    }
}

/// Parses the summary a run prints after `=== SUITE SUMMARY ===`; `None`
/// when there is none (the suite did not get as far as running).
///
/// Lines that do not have the expected shape are skipped, so a scenario the
/// suite printed in an unknown way is simply absent (and counts as failed).
pub(crate) fn parse_summary(text: &str) -> Option<Summary> {
    let (_, rest) = text.split_once("=== SUITE SUMMARY ===")?;
    let mut summary = Summary::default();
    let mut in_not_scored = false;
    for line in rest.lines() {
        if line.trim_start().starts_with("Not scored for ") {
            in_not_scored = true;
            continue;
        }
        if in_not_scored {
            if let Some((name, reason)) = not_scored_line(line) {
                summary.not_scored.push((name, reason));
            }
        } else if let Some(scenario) = scenario_line(line) {
            summary.scenarios.push(scenario);
        }
    }
    Some(summary)
}

/// The mark (`✓` passed, `✗` failed) and what follows it.
fn mark(line: &str) -> Option<(bool, &str)> {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix('✓') {
        Some((true, rest.trim_start()))
    } else {
        line.strip_prefix('✗')
            .map(|rest| (false, rest.trim_start()))
    }
}

/// `✓ name: 5 passed, 0 failed[, 2 warnings]`.
fn scenario_line(line: &str) -> Option<ScenarioLine> {
    let (passed, rest) = mark(line)?;
    let (name, counts) = rest.rsplit_once(": ")?;
    let mut scenario = ScenarioLine {
        name: name.trim().to_owned(),
        passed,
        checks_passed: 0,
        checks_failed: 0,
        warnings: 0,
    };
    let mut seen_passed = false;
    let mut seen_failed = false;
    for part in counts.split(',') {
        let (number, word) = part.trim().split_once(' ')?;
        let number: u32 = number.parse().ok()?;
        match word.trim() {
            "passed" => (scenario.checks_passed, seen_passed) = (number, true),
            "failed" => (scenario.checks_failed, seen_failed) = (number, true),
            "warning" | "warnings" => scenario.warnings = number,
            _ => return None,
        }
    }
    (seen_passed && seen_failed && !scenario.name.is_empty()).then_some(scenario)
}

/// `  ✓ name (reason)`.
fn not_scored_line(line: &str) -> Option<(String, String)> {
    let (_, rest) = mark(line)?;
    match rest.rsplit_once(" (") {
        Some((name, reason)) => Some((
            name.trim().to_owned(),
            reason.trim_end_matches(')').to_owned(),
        )),
        None => Some((rest.trim().to_owned(), String::new())),
    }
}

/// What a revision's `requirements/REV.yaml` says of client scenarios.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Requirements {
    /// The scored client scenarios.
    pub(crate) client: Vec<String>,
    /// The client scenarios run but not scored, with the reason.
    pub(crate) not_scored: Vec<(String, String)>,
}

/// Reads the client scenarios of a requirements file: the items of the
/// top-level `client:` list, and the `not_scored:` entries whose `leg` is
/// `client`. (The files are flat lists; this reads exactly that shape.)
pub(crate) fn parse_requirements(yaml: &str) -> Requirements {
    #[derive(PartialEq)]
    enum Section {
        Other,
        Client,
        NotScored,
    }
    let mut requirements = Requirements::default();
    let mut section = Section::Other;
    // The not-scored entry being read: scenario, leg, reason.
    let mut entry: Option<(String, String, String)> = None;
    let finish = |entry: &mut Option<(String, String, String)>, r: &mut Requirements| {
        if let Some((scenario, leg, reason)) = entry.take()
            && leg == "client"
        {
            r.not_scored.push((scenario, reason));
        }
    };
    for line in yaml.lines() {
        let content = line.split(" #").next().unwrap_or_default().trim_end();
        if content.trim().is_empty() || content.trim_start().starts_with('#') {
            continue;
        }
        if !content.starts_with(' ') && !content.starts_with('-') {
            finish(&mut entry, &mut requirements);
            section = match content {
                "client:" => Section::Client,
                "not_scored:" => Section::NotScored,
                _ => Section::Other,
            };
            continue;
        }
        let item = content.trim_start();
        match section {
            Section::Other => {}
            Section::Client => {
                if let Some(name) = item.strip_prefix("- ") {
                    requirements.client.push(name.trim().to_owned());
                }
            }
            Section::NotScored => {
                let (item, starts) = match item.strip_prefix("- ") {
                    Some(rest) => (rest, true),
                    None => (item, false),
                };
                if starts {
                    finish(&mut entry, &mut requirements);
                    entry = Some(Default::default());
                }
                if let (Some((key, value)), Some((scenario, leg, reason))) =
                    (item.split_once(':'), entry.as_mut())
                {
                    let value = value.trim().to_owned();
                    match key.trim() {
                        "scenario" => *scenario = value,
                        "leg" => *leg = value,
                        "reason" => *reason = value,
                        _ => {}
                    }
                }
            }
        }
    }
    finish(&mut entry, &mut requirements);
    requirements
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real `client --requirements 2026-07-28` run's output (the client's
    /// stderr and the per-scenario progress cut short).
    const RUN_2026: &str = include_str!("testdata/run-2026-07-28.txt");
    /// A real `client --requirements 2025-11-25` run's summary.
    const RUN_2025: &str = include_str!("testdata/run-2025-11-25.txt");
    /// The suite's `requirements/2026-07-28.yaml`, client part.
    const REQUIREMENTS_2026: &str = include_str!("testdata/requirements-2026-07-28.yaml");

    #[test]
    fn a_summary_yields_every_scenario_line_with_its_counts() {
        let summary = parse_summary(RUN_2026).unwrap_or_default();
        assert_eq!(summary.scenarios.len(), 39);
        assert_eq!(
            summary.get("request-metadata"),
            Some(&ScenarioLine {
                name: "request-metadata".to_owned(),
                passed: false,
                checks_passed: 0,
                checks_failed: 2,
                warnings: 2,
            })
        );
        assert_eq!(
            summary.get("http-invalid-tool-headers"),
            Some(&ScenarioLine {
                name: "http-invalid-tool-headers".to_owned(),
                passed: true,
                checks_passed: 12,
                checks_failed: 0,
                warnings: 0,
            })
        );
        // Names with a slash, and a prefix of another name, stay apart.
        assert!(summary.get("auth/iss-supported").is_some());
        assert!(summary.get("auth/iss-supported-missing").is_some());
        assert_eq!(summary.scenarios.iter().filter(|s| s.passed).count(), 5);
    }

    #[test]
    fn the_not_scored_section_is_read_apart_from_the_scored_lines() {
        let summary = parse_summary(RUN_2025).unwrap_or_default();
        assert_eq!(summary.not_scored.len(), 7);
        assert!(summary.not_scored.contains(&(
            "json-schema-2020-12-preservation".to_owned(),
            "added-after-release".to_owned()
        )));
        assert!(
            summary
                .not_scored
                .contains(&("auth/dpop".to_owned(), "extension".to_owned()))
        );
        // The not-scored lines are not mistaken for more scenario lines.
        assert_eq!(summary.scenarios.len(), 25);
        let passed: Vec<&str> = summary
            .scenarios
            .iter()
            .filter(|s| s.passed)
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            passed,
            [
                "initialize",
                "tools_call",
                "elicitation-sep1034-client-defaults",
                "sse-retry",
                "auth/pre-registration",
                "auth/client-credentials-jwt",
                "auth/client-credentials-basic",
            ]
        );
    }

    #[test]
    fn a_scenario_the_run_did_not_print_did_not_pass() {
        let summary = parse_summary(RUN_2026).unwrap_or_default();
        assert_eq!(summary.status("json-schema-ref-no-deref"), Status::Passed);
        assert_eq!(summary.status("tools_call"), Status::Failed);
        assert_eq!(summary.status("initialize"), Status::Missing);
        // A truncated summary loses the scenarios after the cut.
        let cut = RUN_2026
            .split_once("✓ http-invalid-tool-headers")
            .map_or(RUN_2026, |(head, _)| head);
        let summary = parse_summary(cut).unwrap_or_default();
        assert_eq!(summary.status("http-invalid-tool-headers"), Status::Missing);
        assert_eq!(summary.status("auth/pre-registration"), Status::Passed);
    }

    #[test]
    fn output_without_a_summary_is_no_summary() {
        assert_eq!(
            parse_summary("Error: unknown option '--requirements'\n"),
            None
        );
        assert_eq!(parse_summary(""), None);
    }

    #[test]
    fn malformed_scenario_lines_are_skipped() {
        let text = "=== SUITE SUMMARY ===\n\
                    ✓ good: 1 passed, 0 failed\n\
                    ✓ no-counts\n\
                    ✗ bad-number: x passed, 0 failed\n\
                    ✓ unknown-word: 1 passed, 0 exploded\n\
                    ✓ only-passed: 3 passed\n\
                    ✗ failing: 0 passed, 1 failed\n\
                    Total: 1 passed, 1 failed\n";
        let summary = parse_summary(text).unwrap_or_default();
        let names: Vec<&str> = summary.scenarios.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["good", "failing"]);
    }

    #[test]
    fn requirements_list_the_scored_client_scenarios_and_the_not_scored_client_ones() {
        let requirements = parse_requirements(REQUIREMENTS_2026);
        assert_eq!(requirements.client.len(), 32);
        assert_eq!(
            requirements.client.first().map(String::as_str),
            Some("tools_call")
        );
        assert_eq!(
            requirements.client.last().map(String::as_str),
            Some("json-schema-ref-no-deref")
        );
        // Server-leg entries (the tasks extension, pending ones) are left out.
        let not_scored: Vec<&str> = requirements
            .not_scored
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(
            not_scored,
            [
                "auth/client-credentials-jwt",
                "auth/client-credentials-basic",
                "auth/enterprise-managed-authorization",
                "auth/dpop",
                "auth/dpop-nonce",
                "auth/wif-jwt-bearer",
                "json-schema-2020-12-preservation",
            ]
        );
        assert!(
            requirements
                .not_scored
                .iter()
                .all(|(_, reason)| !reason.is_empty())
        );
    }

    #[test]
    fn the_server_list_is_not_read_as_client_scenarios() {
        let yaml = "server:\n  - tools-list\nclient:\n  - initialize\n  # a comment\n  - tools_call # why\nnot_scored:\n  - scenario: x\n    leg: server\n    reason: pending\n";
        let requirements = parse_requirements(yaml);
        assert_eq!(requirements.client, ["initialize", "tools_call"]);
        assert!(requirements.not_scored.is_empty());
    }
}
