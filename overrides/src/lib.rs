//! Tool overrides for [mcp-group]: how a server's tools are presented to an
//! agent — renamed (`alias`), re-described (`description`), filtered
//! (`include` / `exclude` globs) and prefixed (so two servers' tools never
//! collide).
//!
//! Everything here is pure: [`Overrides::apply`] turns the server's tool list
//! into a [`ToolMap`], the one place where an exposed name is mapped back to
//! the server's name for calls. Rules, in order:
//!
//! 1. **Filters** match the server's tool names: with a non-empty `include`,
//!    only tools matching one of its patterns are kept; tools matching an
//!    `exclude` pattern are dropped. Patterns are exact names or globs
//!    (`*`, `?`, `[a-z]`).
//! 2. **Alias and description**: the exposed name is the alias, else the
//!    server's name; the description is the override, else the server's.
//! 3. **Prefix**: `prefix` is prepended to every exposed name.
//! 4. **Usable names**: an exposed name must match `[A-Za-z0-9_-]{1,64}` (what
//!    function-calling APIs accept). A tool whose name does not — `a/b`, `two
//!    words`, 65 characters — is reported in [`Applied::unusable`] and left
//!    out; it can be aliased to a usable name. It never fails the others.
//! 5. **Collisions**: two tools exposed under one name (an alias or prefix
//!    that makes two names one) are an [`OverrideError::Collision`] naming
//!    both. A name the server lists twice is not a collision: the first is
//!    kept and the repeat reported in [`Applied::duplicates`].
//!
//! An override naming a tool the server does not have is
//! dropped, but it is reported in [`Applied::unknown`] so that a typo in a
//! config file is visible.
//!
//! ```
//! use std::collections::BTreeMap;
//! use mcp_group_core::ToolDescriptor;
//! use mcp_group_overrides::{Overrides, ToolOverride};
//!
//! let tools = vec![
//!     ToolDescriptor::new("calculator_add", Default::default()),
//!     ToolDescriptor::new("debug_dump", Default::default()),
//! ];
//! let mut overrides = Overrides::default();
//! overrides.tool_overrides.insert(
//!     "calculator_add".to_string(),
//!     ToolOverride { alias: Some("add_numbers".into()), description: Some("Add two numbers".into()) },
//! );
//! overrides.exclude = vec!["debug_*".into()];
//! let applied = overrides.apply(tools).unwrap();
//! let tool = applied.tools.get("add_numbers").unwrap();
//! assert_eq!(tool.original_name(), "calculator_add");
//! assert_eq!(tool.description(), Some("Add two numbers"));
//! assert!(applied.tools.get("debug_dump").is_none());
//! ```
//!
//! [mcp-group]: https://docs.rs/mcp-group

use std::collections::{BTreeMap, btree_map::Entry};

use mcp_group_core::ToolDescriptor;
use serde::{Deserialize, Serialize};

/// The longest exposed name function-calling APIs accept.
pub const MAX_NAME_LEN: usize = 64;

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

/// Every presentation rule of one group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Overrides {
    /// Per-tool overrides, keyed by the server's tool name.
    pub tool_overrides: BTreeMap<String, ToolOverride>,
    /// If not empty, only server tools matching one of these patterns are kept.
    pub include: Vec<String>,
    /// Server tools matching one of these patterns are dropped.
    pub exclude: Vec<String>,
    /// Prepended to every exposed name.
    pub prefix: Option<String>,
}

/// The rules cannot be applied.
#[derive(Debug, thiserror::Error)]
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
    /// An `include` or `exclude` pattern is not a valid glob.
    #[error("`{pattern}` is not a valid tool name pattern")]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        #[source]
        source: glob::PatternError,
    },
}

/// Why a name cannot be exposed to a function-calling API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameProblem {
    /// The name is empty.
    #[error("it is empty")]
    Empty,
    /// The name is longer than the APIs accept.
    #[error("it is longer than {max} characters")]
    TooLong {
        /// The most characters allowed.
        max: usize,
    },
    /// The name holds a character outside `[A-Za-z0-9_-]`.
    #[error("it contains {character:?}; names may hold only A-Z, a-z, 0-9, `_` and `-`")]
    BadCharacter {
        /// The first such character.
        character: char,
    },
}

/// A server tool left out because its exposed name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnusableTool {
    /// The server's name.
    pub original_name: String,
    /// The name it would have been exposed as.
    pub exposed_name: String,
    /// Why that name cannot be used.
    pub reason: NameProblem,
}

/// One tool as exposed to the agent.
#[derive(Debug, Clone, PartialEq)]
pub struct ExposedTool {
    name: String,
    description: Option<String>,
    descriptor: ToolDescriptor,
}

impl ExposedTool {
    /// The exposed name (prefix + alias, or the server's name).
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

    /// The tool as the server described it (input and output schema included).
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

/// The outcome of [`Overrides::apply`].
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Applied {
    /// The exposed tools.
    pub tools: ToolMap,
    /// Override keys that name no tool of the server (dropped; listed so a typo is visible).
    pub unknown: Vec<String>,
    /// Tools left out because their exposed name cannot be used.
    pub unusable: Vec<UnusableTool>,
    /// Server tools left out by `include` / `exclude`.
    pub filtered: Vec<String>,
    /// Names the server listed more than once: the first is kept, the later
    /// ones are left out.
    pub duplicates: Vec<String>,
}

/// Why `name` cannot be exposed, if it cannot.
pub fn name_problem(name: &str) -> Option<NameProblem> {
    if name.is_empty() {
        return Some(NameProblem::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Some(NameProblem::TooLong { max: MAX_NAME_LEN });
    }
    name.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        .map(|character| NameProblem::BadCharacter { character })
}

fn compile(patterns: &[String]) -> Result<Vec<glob::Pattern>, OverrideError> {
    patterns
        .iter()
        .map(|p| {
            glob::Pattern::new(p).map_err(|source| OverrideError::BadPattern {
                pattern: p.clone(),
                source,
            })
        })
        .collect()
}

impl Overrides {
    /// Overrides with only per-tool aliases and descriptions.
    pub fn new(tool_overrides: BTreeMap<String, ToolOverride>) -> Self {
        Self {
            tool_overrides,
            ..Self::default()
        }
    }

    /// Checks the patterns, so a bad one is reported when the config loads.
    pub fn validate(&self) -> Result<(), OverrideError> {
        compile(&self.include)?;
        compile(&self.exclude)?;
        Ok(())
    }

    /// Applies the rules to the server's tools.
    pub fn apply(&self, tools: Vec<ToolDescriptor>) -> Result<Applied, OverrideError> {
        let include = compile(&self.include)?;
        let exclude = compile(&self.exclude)?;
        let unknown: Vec<String> = self
            .tool_overrides
            .keys()
            .filter(|name| !tools.iter().any(|t| &t.name == *name))
            .cloned()
            .collect();
        let mut applied = Applied {
            unknown,
            ..Applied::default()
        };
        let mut map = BTreeMap::new();
        let mut seen = std::collections::HashSet::new();
        for descriptor in tools {
            if !seen.insert(descriptor.name.clone()) {
                applied.duplicates.push(descriptor.name);
                continue;
            }
            let included =
                include.is_empty() || include.iter().any(|p| p.matches(&descriptor.name));
            if !included || exclude.iter().any(|p| p.matches(&descriptor.name)) {
                applied.filtered.push(descriptor.name);
                continue;
            }
            let over = self.tool_overrides.get(&descriptor.name);
            let base = over
                .and_then(|o| o.alias.clone())
                .unwrap_or_else(|| descriptor.name.clone());
            let name = match &self.prefix {
                Some(prefix) => format!("{prefix}{base}"),
                None => base,
            };
            if let Some(reason) = name_problem(&name) {
                applied.unusable.push(UnusableTool {
                    original_name: descriptor.name,
                    exposed_name: name,
                    reason,
                });
                continue;
            }
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
        applied.tools = ToolMap { tools: map };
        Ok(applied)
    }
}

/// Applies per-tool overrides only (no filters, no prefix).
pub fn apply(
    tools: Vec<ToolDescriptor>,
    overrides: &BTreeMap<String, ToolOverride>,
) -> Result<Applied, OverrideError> {
    Overrides::new(overrides.clone()).apply(tools)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, description: &str) -> ToolDescriptor {
        ToolDescriptor::new(name, Default::default()).with_description(description)
    }

    fn tools(names: &[&str]) -> Vec<ToolDescriptor> {
        names.iter().map(|n| tool(n, &n.to_uppercase())).collect()
    }

    #[test]
    fn a_tool_name_the_server_lists_twice_keeps_the_first_and_is_reported() {
        let applied = apply(
            vec![tool("a", "first"), tool("b", "B"), tool("a", "second")],
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(applied.tools.len(), 2);
        assert_eq!(applied.tools.get("a").unwrap().description(), Some("first"));
        assert_eq!(applied.duplicates, ["a"]);
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

    fn exposed(applied: &Applied) -> Vec<(&str, &str)> {
        applied
            .tools
            .iter()
            .map(|t| (t.name(), t.original_name()))
            .collect()
    }

    fn rules(include: &[&str], exclude: &[&str], prefix: Option<&str>) -> Overrides {
        Overrides {
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            prefix: prefix.map(Into::into),
            ..Overrides::default()
        }
    }

    #[test]
    fn no_overrides_exposes_server_names_and_descriptions() {
        let applied = apply(vec![tool("a", "A"), tool("b", "B")], &BTreeMap::new()).unwrap();
        assert_eq!(exposed(&applied), [("a", "a"), ("b", "b")]);
        assert_eq!(applied.tools.get("a").unwrap().description(), Some("A"));
        assert!(!applied.tools.get("a").unwrap().is_aliased());
        assert!(
            applied.unknown.is_empty()
                && applied.unusable.is_empty()
                && applied.filtered.is_empty()
        );
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
    fn a_tool_without_a_description_gets_the_override_or_none() {
        let bare = ToolDescriptor::new("a", Default::default());
        let applied = apply(vec![bare.clone()], &BTreeMap::new()).unwrap();
        assert_eq!(applied.tools.get("a").unwrap().description(), None);
        let applied = apply(vec![bare], &overrides(&[("a", None, Some("now"))])).unwrap();
        assert_eq!(applied.tools.get("a").unwrap().description(), Some("now"));
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
    fn alias_onto_another_tools_name_is_a_collision_naming_both() {
        let err = apply(
            vec![tool("a", "A"), tool("b", "B")],
            &overrides(&[("b", Some("a"), None)]),
        )
        .unwrap_err();
        assert!(
            matches!(&err, OverrideError::Collision { name, first, second }
                if name == "a" && first == "a" && second == "b"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "tools `a` and `b` would both be exposed as `a`"
        );
    }

    #[test]
    fn swapping_two_names_is_not_a_collision() {
        let applied = apply(
            vec![tool("a", "A"), tool("b", "B")],
            &overrides(&[("a", Some("b"), None), ("b", Some("a"), None)]),
        )
        .unwrap();
        assert_eq!(exposed(&applied), [("a", "b"), ("b", "a")]);
    }

    #[test]
    fn include_keeps_only_matching_tools() {
        let applied = rules(&["search_*", "get"], &[], None)
            .apply(tools(&[
                "search_web",
                "search_docs",
                "get",
                "getter",
                "delete",
            ]))
            .unwrap();
        assert_eq!(
            exposed(&applied),
            [
                ("get", "get"),
                ("search_docs", "search_docs"),
                ("search_web", "search_web")
            ]
        );
        assert_eq!(applied.filtered, ["getter", "delete"]);
    }

    #[test]
    fn exclude_drops_matching_tools_and_wins_over_include() {
        let applied = rules(&["search_*"], &["*_docs", "dele?e"], None)
            .apply(tools(&["search_web", "search_docs", "delete"]))
            .unwrap();
        assert_eq!(exposed(&applied), [("search_web", "search_web")]);
        assert_eq!(applied.filtered, ["search_docs", "delete"]);
    }

    #[test]
    fn filters_match_server_names_not_aliases() {
        let mut o = rules(&["calc_*"], &[], None);
        o.tool_overrides = overrides(&[("calc_add", Some("add"), None)]);
        let applied = o.apply(tools(&["calc_add", "add_more"])).unwrap();
        assert_eq!(exposed(&applied), [("add", "calc_add")]);
    }

    #[test]
    fn an_override_of_a_filtered_tool_is_not_unknown() {
        let mut o = rules(&[], &["a"], None);
        o.tool_overrides = overrides(&[("a", Some("x"), None)]);
        let applied = o.apply(tools(&["a", "b"])).unwrap();
        assert!(applied.unknown.is_empty());
        assert_eq!(exposed(&applied), [("b", "b")]);
    }

    #[test]
    fn a_prefix_applies_to_every_exposed_name_aliases_included() {
        let mut o = rules(&[], &[], Some("github_"));
        o.tool_overrides = overrides(&[("search", Some("find"), None)]);
        let applied = o.apply(tools(&["search", "issues"])).unwrap();
        assert_eq!(
            exposed(&applied),
            [("github_find", "search"), ("github_issues", "issues")]
        );
    }

    #[test]
    fn two_servers_with_prefixes_never_collide() {
        let a = rules(&[], &[], Some("a_"))
            .apply(tools(&["search"]))
            .unwrap();
        let b = rules(&[], &[], Some("b_"))
            .apply(tools(&["search"]))
            .unwrap();
        assert_ne!(
            a.tools.iter().next().unwrap().name(),
            b.tools.iter().next().unwrap().name()
        );
    }

    #[test]
    fn unusable_names_are_reported_per_tool_and_never_fail_the_others() {
        let long = "x".repeat(65);
        let applied = apply(
            tools(&["ok-name", "a/b", "two words", "", &long]),
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(exposed(&applied), [("ok-name", "ok-name")]);
        let bad: Vec<&str> = applied
            .unusable
            .iter()
            .map(|u| u.original_name.as_str())
            .collect();
        assert_eq!(bad, ["a/b", "two words", "", long.as_str()]);
        assert!(
            applied.unusable[0].reason.to_string().contains("'/'"),
            "{:?}",
            applied.unusable[0]
        );
        assert_eq!(applied.unusable[3].reason, NameProblem::TooLong { max: 64 });
    }

    #[test]
    fn an_unusable_name_can_be_aliased_to_a_usable_one() {
        let applied = apply(tools(&["a/b"]), &overrides(&[("a/b", Some("a_b"), None)])).unwrap();
        assert_eq!(exposed(&applied), [("a_b", "a/b")]);
        assert!(applied.unusable.is_empty());
    }

    #[test]
    fn a_prefix_can_make_a_name_too_long() {
        let name = "y".repeat(60);
        let applied = rules(&[], &[], Some("prefix_"))
            .apply(tools(&[&name]))
            .unwrap();
        assert!(applied.tools.is_empty());
        assert_eq!(applied.unusable[0].exposed_name, format!("prefix_{name}"));
    }

    #[test]
    fn bad_patterns_are_errors() {
        let err = rules(&["[unclosed"], &[], None).validate().unwrap_err();
        assert!(
            matches!(err, OverrideError::BadPattern { ref pattern, .. } if pattern == "[unclosed"),
            "{err:?}"
        );
        assert!(rules(&[], &["ok*"], None).validate().is_ok());
    }

    #[test]
    fn name_problem_accepts_the_function_calling_alphabet() {
        assert_eq!(name_problem("get-sum_2"), None);
        assert!(name_problem("dot.name").is_some());
        assert!(name_problem("ünïcode").is_some());
    }

    #[test]
    fn override_deserializes_from_config_and_rejects_unknown_keys() {
        let o: ToolOverride = serde_json::from_str(r#"{"alias":"x"}"#).unwrap();
        assert_eq!(o.alias.as_deref(), Some("x"));
        assert!(serde_json::from_str::<ToolOverride>(r#"{"alais":"x"}"#).is_err());
    }
}
