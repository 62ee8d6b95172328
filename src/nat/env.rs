//! Environment variables, as NeMo Agent Toolkit expands them (with Python's
//! `expandvars`): `${VAR}` and its shell forms only (a bare `$VAR` stays),
//! `\$` for a literal `$`, an unset variable empty. Its loader expands the
//! whole text before parsing, then every value once more.

use serde_yaml_ng::Value;

use crate::ConfigError;

/// The text pass over the whole file: a reference that cannot be expanded
/// is left as it is, to fail (or not) when its value is read.
pub(super) fn expand_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(['\\', '$']) {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match expand_one(rest, &env) {
            Ok((expanded, used)) => {
                out.push_str(&expanded);
                rest = &rest[used..];
            }
            Err(_) => {
                // Keep `${`, carry on after it.
                out.push_str(&rest[..2]);
                rest = &rest[2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The value pass over one string of a section read here (NeMo Agent
/// Toolkit's loader expands values a second time): errors are reported.
pub(super) fn expand_value_text(text: &str) -> Result<String, ConfigError> {
    expand_with(text, &env)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn expand_with(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(['\\', '$']) {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let (expanded, used) = expand_one(rest, env)?;
        out.push_str(&expanded);
        rest = &rest[used..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Expands what starts `text` (a `\` or a `$`): the replacement and the
/// bytes consumed.
fn expand_one(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, usize), ConfigError> {
    let mut chars = text.chars();
    let first = chars.next().unwrap_or_default();
    let second = chars.next();
    if first == '\\' {
        return Ok(match second {
            // `\$` and `\\` escape; any other `\x` stays as written.
            Some(c @ ('$' | '\\')) => (c.to_string(), 2),
            Some(c) => (format!("\\{c}"), 1 + c.len_utf8()),
            None => ("\\".to_owned(), 1),
        });
    }
    if second != Some('{') {
        return Ok(("$".to_owned(), 1));
    }
    let body = &text[2..];
    let bad = |variable: &str, reason: &str| ConfigError::Substitution {
        variable: variable.to_owned(),
        reason: reason.to_owned(),
    };
    let name_len = body
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let name = &body[..name_len];
    if name.is_empty() {
        return Err(bad(
            body.split('}').next().unwrap_or(body),
            "bad substitution: a `${…}` reference needs a variable name",
        ));
    }
    let after = &body[name_len..];
    let value = env(name).filter(|v| !v.is_empty());
    let (modifier, word) = match after.chars().next() {
        Some('}') => return Ok((value.unwrap_or_default(), 2 + name_len + 1)),
        Some(':') => (after[1..].chars().next(), 2),
        Some(c) => (Some(c), 1),
        None => return Err(bad(name, "missing `}`")),
    };
    let Some(modifier @ ('-' | '=' | '+' | '?')) = modifier else {
        return Err(bad(
            name,
            "only `${VAR}`, `${VAR:-default}`, `${VAR:=default}`, `${VAR:+alternative}` and \
             `${VAR:?message}` are read",
        ));
    };
    // The word runs to the matching `}`.
    let word_text = &after[word..];
    let mut depth = 0usize;
    let mut end = None;
    for (i, c) in word_text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                end = Some(i);
                break;
            }
            '}' => depth -= 1,
            _ => {}
        }
    }
    let Some(end) = end else {
        return Err(bad(name, "missing `}`"));
    };
    let word_value = expand_with(&word_text[..end], env)?;
    let used = 2 + name_len + word + end + 1;
    let expanded = match modifier {
        '-' | '=' => value.unwrap_or(word_value),
        '+' => value.map(|_| word_value).unwrap_or_default(),
        _ => match value {
            Some(value) => value,
            None if word_value.is_empty() => {
                return Err(bad(name, "parameter null or not set"));
            }
            None => return Err(bad(name, &word_value)),
        },
    };
    Ok((expanded, used))
}

/// The value pass over every string of `value` (keys stay).
pub(super) fn expand_values(value: &mut Value) -> Result<(), ConfigError> {
    match value {
        Value::String(text) if text.contains("${") || text.contains('\\') => {
            *text = expand_value_text(text)?;
        }
        Value::Sequence(items) => {
            for item in items {
                expand_values(item)?;
            }
        }
        Value::Mapping(map) => {
            for (_, item) in map.iter_mut() {
                expand_values(item)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(text: &str) -> Result<String, ConfigError> {
        let env = |name: &str| match name {
            "SET" => Some("value".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        expand_with(text, &env)
    }

    #[test]
    fn references_expand_like_nemo_agent_toolkits_loader() {
        assert_eq!(expand("a ${SET} b").unwrap(), "a value b");
        assert_eq!(expand("${UNSET}").unwrap(), "");
        assert_eq!(expand("${UNSET:-fallback}").unwrap(), "fallback");
        assert_eq!(expand("${EMPTY-fallback}").unwrap(), "fallback");
        assert_eq!(expand("${SET:-fallback}").unwrap(), "value");
        assert_eq!(expand("${UNSET:-${SET}}").unwrap(), "value");
        assert_eq!(expand("${SET:+alt}|${UNSET:+alt}").unwrap(), "alt|");
        assert_eq!(expand("$SET and $").unwrap(), "$SET and $");
        assert_eq!(expand(r"\${SET} \\ \n").unwrap(), r"${SET} \ \n");
        assert_eq!(expand("ünï ${SET}").unwrap(), "ünï value");
    }

    #[test]
    fn references_that_cannot_expand_name_the_variable() {
        let variable = |text| match expand(text) {
            Err(ConfigError::Substitution { variable, reason }) => (variable, reason),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            variable("${UNSET:?set it}"),
            ("UNSET".into(), "set it".into())
        );
        assert_eq!(variable("${SET").0, "SET");
        assert_eq!(variable("${SET:0:2}").0, "SET");
        assert!(variable("${}").1.contains("variable name"));
        // The text pass leaves them for the value pass.
        assert_eq!(
            expand_text("x: ${UNSET_NAT_TEST_VAR:?}"),
            "x: ${UNSET_NAT_TEST_VAR:?}"
        );
    }
}
