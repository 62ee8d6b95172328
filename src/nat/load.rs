//! Reading a workflow file as NeMo Agent Toolkit's loader does: `${VAR}`
//! expansion of the whole text, YAML merge keys, `base:` inheritance (deep
//! merge) and `file://` references.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use serde_yaml_ng::{Mapping, Value};

use super::{
    FunctionGroupType,
    env::{expand_text, expand_value_text},
    key_name, type_of,
};
use crate::{ConfigError, ParseError};

/// Reads `path` as NeMo Agent Toolkit's loader does, `base` files included.
pub(super) fn load_tree(
    path: &Path,
    visited: &mut HashSet<PathBuf>,
) -> Result<Mapping, ConfigError> {
    let read_error = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let canonical = path.canonicalize().map_err(read_error)?;
    if !visited.insert(canonical.clone()) {
        return Err(ConfigError::Unsupported {
            field: "base".to_owned(),
            reason: format!(
                "{} inherits from itself (circular `base` chain)",
                canonical.display()
            ),
        });
    }
    let text = std::fs::read_to_string(&canonical).map_err(read_error)?;
    let dir = canonical.parent().unwrap_or(Path::new("."));
    let mut root = parse_yaml(&expand_text(&text))?;
    resolve_files(&mut root, dir)?;
    let Some(base) = root.remove("base") else {
        return Ok(root);
    };
    let Value::String(base) = base else {
        return Err(ConfigError::Unsupported {
            field: "base".to_owned(),
            reason: "must be a file path".to_owned(),
        });
    };
    let base = expand_value_text(&base)?;
    let base_root = load_tree(&dir.join(base), visited)?;
    Ok(deep_merge(base_root, root))
}

fn parse_yaml(text: &str) -> Result<Mapping, ConfigError> {
    let yaml_error = |error| ConfigError::Yaml {
        source: ParseError::yaml(&error),
    };
    let mut value: Value = serde_yaml_ng::from_str(text).map_err(yaml_error)?;
    // PyYAML applies `<<` merge keys; so do we.
    value.apply_merge().map_err(yaml_error)?;
    match value {
        Value::Mapping(map) => Ok(map),
        Value::Null => Ok(Mapping::new()),
        _ => Err(ConfigError::Yaml {
            source: ParseError::new(None, None, "a workflow file must be a mapping"),
        }),
    }
}

/// `override` on top of `base`: mappings merge key by key, anything else is
/// replaced.
fn deep_merge(mut base: Mapping, over: Mapping) -> Mapping {
    for (key, value) in over {
        let merged = match (base.remove(&key), value) {
            (Some(Value::Mapping(b)), Value::Mapping(o)) => Value::Mapping(deep_merge(b, o)),
            (_, value) => value,
        };
        base.insert(key, merged);
    }
    base
}

/// The files a `file://` reference may name (NeMo Agent Toolkit's list).
const FILE_EXTENSIONS: &[&str] = &[
    "txt", "md", "j2", "jinja2", "jinja", "prompt", "tpl", "template",
];

/// Replaces `file://` string values in the sections read here: function
/// groups that are (or, with no `_type` in this file, may be) MCP groups,
/// and auth providers; in mappings only, as NeMo Agent Toolkit does.
fn resolve_files(root: &mut Mapping, dir: &Path) -> Result<(), ConfigError> {
    for section in ["function_groups", "authentication"] {
        let Some(Value::Mapping(entries)) = root.get_mut(section) else {
            continue;
        };
        for (name, entry) in entries.iter_mut() {
            let mcp_group = section == "authentication"
                || type_of(entry).is_none_or(|t| FunctionGroupType::parse(t).is_some());
            if let (true, Value::Mapping(entry)) = (mcp_group, entry) {
                let path = format!("{section}.{}", key_name(name));
                resolve_files_in(entry, dir, &path)?;
            }
        }
    }
    Ok(())
}

fn resolve_files_in(map: &mut Mapping, dir: &Path, path: &str) -> Result<(), ConfigError> {
    for (key, value) in map.iter_mut() {
        let field = format!("{path}.{}", key_name(key));
        match value {
            Value::Mapping(inner) => resolve_files_in(inner, dir, &field)?,
            Value::String(text) => {
                if let Some(file) = text.strip_prefix("file://") {
                    *text = read_referenced(&dir.join(file), &field)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn read_referenced(path: &Path, field: &str) -> Result<String, ConfigError> {
    let read_error = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let resolved = path.canonicalize().map_err(read_error)?;
    let extension = resolved
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if !FILE_EXTENSIONS.contains(&extension.as_str()) {
        return Err(ConfigError::Unsupported {
            field: field.to_owned(),
            reason: format!(
                "a `file://` reference must name a .{} file",
                FILE_EXTENSIONS.join(", .")
            ),
        });
    }
    std::fs::read_to_string(&resolved).map_err(read_error)
}
