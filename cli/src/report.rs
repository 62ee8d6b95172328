//! Output formatting: the tool list for people or as JSON, the ping line,
//! `batch`'s JSON result lines, and errors with their causes on one line.

use std::{borrow::Cow, fmt::Display, io::Write, time::Duration};

use mcp_group::{Functions, ToolOutput, core::Era};
use serde_json::{Value, json};

use crate::BoxError;

/// Server-supplied text made safe for a terminal: control characters (C0
/// but newline and tab, DEL, C1 — `ESC`, `CSI`, `BEL`, ...) are dropped, so
/// a server cannot clear the screen, retitle the window or hide text. JSON
/// output is not filtered: it escapes them and stays exact.
pub(crate) fn printable(text: &str) -> Cow<'_, str> {
    // Bidirectional overrides and isolates reorder what is shown.
    let bidi = |c: char| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    let unsafe_char = |c: char| (c.is_control() && c != '\n' && c != '\t') || bidi(c);
    if text.chars().any(unsafe_char) {
        Cow::Owned(text.chars().filter(|c| !unsafe_char(*c)).collect())
    } else {
        Cow::Borrowed(text)
    }
}

/// An error and its sources on one line.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Prints the exposed tools on stdout: a name and the first line of its
/// description per line; with `detail`, descriptions and schemas; with
/// `json`, a JSON array.
pub(crate) fn tools(
    functions: &Functions,
    era: Option<Era>,
    detail: bool,
    json: bool,
) -> Result<(), BoxError> {
    let mut out = std::io::stdout().lock();
    if json {
        let tools: Vec<Value> = functions
            .iter()
            .map(|f| {
                json!({
                    "name": f.name(),
                    "original_name": f.original_name(),
                    "aliased": f.is_aliased(),
                    "description": f.description(),
                    "validates_arguments": functions.validates_arguments(f.name()),
                    "input_schema": &*f.descriptor().input_schema,
                    "output_schema": f.descriptor().output_schema.as_deref(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&tools)?)?;
        return Ok(());
    }
    if detail {
        writeln!(out, "{}\n", era_line(era))?;
    }
    for f in functions {
        if !detail {
            let alias = if f.is_aliased() {
                format!(" (server name: {})", f.original_name())
            } else {
                String::new()
            };
            let description = f.description().and_then(|d| d.lines().next()).unwrap_or("");
            let line = format!("{}{alias}\t{description}", f.name());
            writeln!(out, "{}", printable(&line))?;
            continue;
        }
        write!(out, "{}", f.name())?;
        if f.is_aliased() {
            write!(out, " (server name: {})", printable(f.original_name()))?;
        }
        writeln!(out)?;
        if let Some(description) = f.description() {
            writeln!(out, "  {}", printable(description))?;
        }
        writeln!(out, "  input schema:")?;
        let schema = serde_json::to_string_pretty(&*f.descriptor().input_schema)?;
        for line in printable(&schema).lines() {
            writeln!(out, "    {line}")?;
        }
        if let Some(output) = &f.descriptor().output_schema {
            writeln!(out, "  output schema:")?;
            let schema = serde_json::to_string_pretty(&**output)?;
            for line in printable(&schema).lines() {
                writeln!(out, "    {line}")?;
            }
        }
        if !functions.validates_arguments(f.name()) {
            writeln!(
                out,
                "  (its input schema does not compile: arguments are not checked)"
            )?;
        }
    }
    Ok(())
}

/// `ping`'s line: who answered, in which protocol era, and the round-trip
/// time in milliseconds.
pub(crate) fn pong(server: impl Display, era: Option<Era>, rtt: Duration) -> String {
    format!(
        "pong from {server} [{}] in {:.3} ms",
        era_name(era),
        rtt.as_secs_f64() * 1000.0
    )
}

/// The protocol era's line of `tools list --detail` and `demo`.
pub(crate) fn era_line(era: Option<Era>) -> String {
    format!("protocol era: {}", era_name(era))
}

fn era_name(era: Option<Era>) -> &'static str {
    match era {
        Some(Era::Modern) => "modern (2026-07-28)",
        Some(Era::Legacy) => "legacy (2025-11-25 or earlier)",
        _ => "not yet known",
    }
}

/// `batch`'s line for an input line that is not a request.
pub(crate) fn batch_bad_line(number: usize, error: impl Display) -> Value {
    json!({"line": number, "ok": false, "error": format!("bad input line: {error}")})
}

/// `batch`'s line for one call: its result's text, or the error.
/// The session is its name (`null` for the default session); `principal`
/// is there when the line named one.
pub(crate) fn batch_result(
    key: &mcp_group::SessionKey,
    tool: &str,
    result: Result<ToolOutput, impl std::error::Error + 'static>,
) -> Value {
    let mut line = match result {
        Ok(output) => {
            json!({"session": key.session().name(), "tool": tool, "ok": true, "result": output.to_text()})
        }
        Err(e) => {
            json!({"session": key.session().name(), "tool": tool, "ok": false, "error": chain(&e)})
        }
    };
    if let Some(principal) = key.principal() {
        line["principal"] = json!(principal);
    }
    line
}
