//! Tool overrides for [mcp-group]: rename a server's tool (`alias`) or give
//! it a better `description`, as the seed's `tool_overrides` do.
//!
//! Everything here is pure: [`apply`] turns the server's tool list and the
//! configured overrides into a [`ToolMap`], the one place where an exposed
//! name is mapped back to the server's name for calls.
//!
//! Like the seed, an override naming a tool the server does not have is
//! dropped — but here it is reported (a `tracing` warning per name, and
//! [`Applied::unknown`]) so a typo in a config file is visible. Two tools
//! that end up with the same exposed name are a [`OverrideError::Collision`].
//!
//! ```
//! use std::collections::BTreeMap;
//! use mcp_group_core::ToolDescriptor;
//! use mcp_group_overrides::{ToolOverride, apply};
//!
//! let tools = vec![ToolDescriptor::new("calculator_add", Default::default())];
//! let mut overrides = BTreeMap::new();
//! overrides.insert(
//!     "calculator_add".to_string(),
//!     ToolOverride { alias: Some("add_numbers".into()), description: Some("Add two numbers".into()) },
//! );
//! let applied = apply(tools, &overrides).unwrap();
//! let tool = applied.tools.get("add_numbers").unwrap();
//! assert_eq!(tool.original_name(), "calculator_add");
//! assert_eq!(tool.description(), Some("Add two numbers"));
//! ```
//!
//! [mcp-group]: https://docs.rs/mcp-group

use std::collections::{BTreeMap, btree_map::Entry};

use mcp_group_core::ToolDescriptor;
use serde::{Deserialize, Serialize};

/// How one tool is presented: a new name, a new description, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolOverride {
    /// The name to expose instead of the server's (defaults to the server's).
    #[serde(default)]
    pub alias: Option<String>,
    /// The description to expose instead of the server's.
    #[serde(default)]
    pub description: Option<String>,
}

/// The overrides could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OverrideError {
    /// Two server tools would be exposed under one name.
    #[error("tools `{first}` and `{second}` would both be exposed as `{name}`")]
    Collision {
        /// The exposed name both map to.
        name: String,
        /// One server tool.
        first: String,
        /// The other server tool.
        second: String,
    },
}

/// One tool as exposed to the agent.
#[derive(Debug, Clone, PartialEq)]
pub struct ExposedTool {
    name: String,
    description: Option<String>,
    descriptor: ToolDescriptor,
}

impl ExposedTool {
    /// The exposed name (the alias, or the server's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's name, used on the wire.
    pub fn original_name(&self) -> &str {
        &self.descriptor.name
    }

    /// Whether the exposed name differs from the server's.
    pub fn is_aliased(&self) -> bool {
        self.name != self.descriptor.name
    }

    /// The exposed description (the override, or the server's).
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The tool as the server described it.
    pub fn descriptor(&self) -> &ToolDescriptor {
        &self.descriptor
    }
}

/// Exposed tools by exposed name; the reverse map to server names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolMap {
    tools: BTreeMap<String, ExposedTool>,
}

impl ToolMap {
    /// The tool exposed as `name`.
    pub fn get(&self, name: &str) -> Option<&ExposedTool> {
        self.tools.get(name)
    }

    /// Every exposed tool, sorted by exposed name.
    pub fn iter(&self) -> impl Iterator<Item = &ExposedTool> {
        self.tools.values()
    }

    /// The number of exposed tools.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether no tool is exposed.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

/// The outcome of [`apply`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// The exposed tools.
    pub tools: ToolMap,
    /// Override keys that name no tool of the server (dropped, as in the seed).
    pub unknown: Vec<String>,
}

/// Applies `overrides` (keyed by the server's tool name) to the server's tools.
pub fn apply(
    tools: Vec<ToolDescriptor>,
    overrides: &BTreeMap<String, ToolOverride>,
) -> Result<Applied, OverrideError> {
    let unknown: Vec<String> = overrides
        .keys()
        .filter(|name| !tools.iter().any(|t| &t.name == *name))
        .cloned()
        .collect();
    for name in &unknown {
        tracing::warn!(tool = %name, "tool override names a tool the server does not have; ignored");
    }
    let mut map = BTreeMap::new();
    for descriptor in tools {
        let over = overrides.get(&descriptor.name);
        let name = over
            .and_then(|o| o.alias.clone())
            .unwrap_or_else(|| descriptor.name.clone());
        let description = over
            .and_then(|o| o.description.clone())
            .or_else(|| descriptor.description.clone());
        match map.entry(name) {
            Entry::Occupied(existing) => {
                let existing: &ExposedTool = existing.get();
                return Err(OverrideError::Collision {
                    name: existing.name.clone(),
                    first: existing.descriptor.name.clone(),
                    second: descriptor.name,
                });
            }
            Entry::Vacant(slot) => {
                let name = slot.key().clone();
                slot.insert(ExposedTool {
                    name,
                    description,
                    descriptor,
                });
            }
        }
    }
    Ok(Applied {
        tools: ToolMap { tools: map },
        unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, description: &str) -> ToolDescriptor {
        ToolDescriptor::new(name, Default::default()).with_description(description)
    }

    fn overrides(items: &[(&str, Option<&str>, Option<&str>)]) -> BTreeMap<String, ToolOverride> {
        items
            .iter()
            .map(|(k, a, d)| {
                (
                    k.to_string(),
                    ToolOverride {
                        alias: a.map(Into::into),
                        description: d.map(Into::into),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn no_overrides_exposes_server_names_and_descriptions() {
        let applied = apply(vec![tool("a", "A"), tool("b", "B")], &BTreeMap::new()).unwrap();
        let names: Vec<_> = applied.tools.iter().map(|t| t.name()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(applied.tools.get("a").unwrap().description(), Some("A"));
        assert!(!applied.tools.get("a").unwrap().is_aliased());
        assert!(applied.unknown.is_empty());
    }

    #[test]
    fn alias_renames_and_maps_back() {
        let applied = apply(vec![tool("a", "A")], &overrides(&[("a", Some("x"), None)])).unwrap();
        assert!(applied.tools.get("a").is_none());
        let x = applied.tools.get("x").unwrap();
        assert_eq!(x.original_name(), "a");
        assert!(x.is_aliased());
        assert_eq!(
            x.description(),
            Some("A"),
            "description kept when not overridden"
        );
    }

    #[test]
    fn description_override_keeps_the_name() {
        let applied = apply(
            vec![tool("a", "A")],
            &overrides(&[("a", None, Some("better"))]),
        )
        .unwrap();
        let a = applied.tools.get("a").unwrap();
        assert_eq!(a.description(), Some("better"));
        assert!(!a.is_aliased());
    }

    #[test]
    fn unknown_override_is_dropped_and_reported() {
        let applied = apply(
            vec![tool("a", "A")],
            &overrides(&[("typo", Some("x"), None), ("a", None, None)]),
        )
        .unwrap();
        assert_eq!(applied.unknown, ["typo"]);
        assert_eq!(applied.tools.len(), 1);
        assert!(applied.tools.get("x").is_none());
    }

    #[test]
    fn alias_onto_another_tools_name_is_a_collision() {
        let err = apply(
            vec![tool("a", "A"), tool("b", "B")],
            &overrides(&[("b", Some("a"), None)]),
        )
        .unwrap_err();
        assert_eq!(
            err,
            OverrideError::Collision {
                name: "a".into(),
                first: "a".into(),
                second: "b".into()
            }
        );
    }

    #[test]
    fn swapping_two_names_is_not_a_collision() {
        let applied = apply(
            vec![tool("a", "A"), tool("b", "B")],
            &overrides(&[("a", Some("b"), None), ("b", Some("a"), None)]),
        )
        .unwrap();
        assert_eq!(applied.tools.get("a").unwrap().original_name(), "b");
        assert_eq!(applied.tools.get("b").unwrap().original_name(), "a");
    }

    #[test]
    fn override_deserializes_from_config_and_rejects_unknown_keys() {
        let o: ToolOverride = serde_json::from_str(r#"{"alias":"x"}"#).unwrap();
        assert_eq!(o.alias.as_deref(), Some("x"));
        assert!(serde_json::from_str::<ToolOverride>(r#"{"alais":"x"}"#).is_err());
    }
}
