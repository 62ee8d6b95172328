//! Arguments checked against the tool's input schema before anything is sent.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use mcp_group_core::JsonObject;
use serde_json::Value;

use crate::Error;

/// How deep `$ref` chains are followed when deciding whether `null` is allowed.
const MAX_REF_DEPTH: usize = 32;

/// How many schema nodes one tool's null analysis may visit. A server's
/// schema is untrusted: `$ref` cycles and `allOf` fan-out could otherwise
/// make the analysis exponential. Past the budget, `null` is kept (the
/// server decides).
const NULL_CHECK_BUDGET: usize = 10_000;

/// The most validation work one tool's schema may ask for per instance node,
/// estimated by [`ValidationCost`]. Above it the tool's arguments are not
/// checked: `allOf`/`anyOf` fan-out over shared `$defs` makes the validator's
/// work (and the errors it collects) grow with the number of paths through
/// the schema, exponentially in its size.
const VALIDATION_COST_BUDGET: u64 = 100_000;

/// The largest compiled size of one `pattern` (or `patternProperties` key),
/// in bytes: larger makes the schema "does not compile".
const PATTERN_SIZE_LIMIT: usize = 64 * 1024;

/// The capacity of one pattern's lazy DFA cache, in bytes (filled as it
/// matches; past it the cache is cleared, or a slower engine takes over).
const PATTERN_CACHE_LIMIT: usize = 64 * 1024;

/// The compiled size all patterns of one tool list may take together, in
/// bytes. A pattern that cannot be compiled within [`PATTERN_SIZE_LIMIT`]
/// is charged that limit (the work of finding out).
pub(crate) const PATTERN_LIST_BUDGET: usize = 64 * 1024 * 1024;

/// How many of an invalid call's errors are collected and reported.
const MAX_ERRORS: usize = 16;

/// The longest `reason` an invalid call reports, in bytes.
const MAX_REASON_BYTES: usize = 2048;

/// How deeply schemas (nesting and `$ref`s together) are followed when
/// estimating the validation cost; deeper counts as over budget.
const MAX_COST_DEPTH: usize = 128;

/// One tool's argument checker: its compiled input schema, if it compiles,
/// and which top-level properties accept `null` — both computed once per tool
/// list, never per call.
pub(crate) struct ArgumentChecker {
    validator: Option<jsonschema::Validator>,
    /// Top-level properties whose schema provably refuses `null`.
    refuses_null: HashSet<String>,
}

impl ArgumentChecker {
    /// Compiles `schema` (drafts 4 to 2020-12, by its `$schema`; 2020-12 when
    /// absent). A schema that does not compile is reported and validation is
    /// skipped for that tool: it stays listed and callable.
    ///
    /// A schema whose estimated validation cost is over
    /// [`VALIDATION_COST_BUDGET`] is not compiled and is treated the same way.
    ///
    /// Patterns are compiled with the `regex` crate's engine (linear time; no
    /// look-around or backreferences), each within [`PATTERN_SIZE_LIMIT`], and
    /// are charged against `patterns`, the budget of the whole tool list:
    /// a schema with a pattern the engine refuses or over the limit, or whose
    /// patterns exceed what is left of the budget, is treated as a schema that
    /// does not compile.
    pub(crate) fn new(tool: &str, schema: Arc<JsonObject>, patterns: &mut PatternBudget) -> Self {
        let cost = ValidationCost::new(&schema).total();
        let validator = if cost > VALIDATION_COST_BUDGET {
            tracing::warn!(
                tool,
                "the tool's input schema is too costly to validate (its subschemas fan out too much); its arguments are not checked"
            );
            None
        } else if let Err(problem) = patterns.charge(&schema) {
            tracing::warn!(
                tool,
                "the tool's input schema {problem}; its arguments are not checked"
            );
            None
        } else {
            let value = Value::Object((*schema).clone());
            match jsonschema::options()
                .should_validate_formats(false)
                .with_pattern_options(
                    jsonschema::PatternOptions::regex()
                        .size_limit(PATTERN_SIZE_LIMIT)
                        .dfa_size_limit(PATTERN_CACHE_LIMIT),
                )
                .build(&value)
            {
                Ok(validator) => Some(validator),
                Err(error) => {
                    tracing::warn!(tool, %error, "the tool's input schema does not compile; its arguments are not checked");
                    None
                }
            }
        };
        let refuses_null = NullCheck::new(&schema).refusing_properties();
        Self {
            validator,
            refuses_null,
        }
    }

    /// Whether arguments are checked (the schema compiled).
    pub(crate) fn validates(&self) -> bool {
        self.validator.is_some()
    }

    /// Drops `null` values the schema forbids (servers reject them) and keeps
    /// those it allows, then validates. An invalid call reports its first
    /// [`MAX_ERRORS`] errors, in a `reason` of at most [`MAX_REASON_BYTES`].
    pub(crate) fn prepare(
        &self,
        tool: &str,
        mut arguments: JsonObject,
    ) -> Result<JsonObject, Error> {
        arguments.retain(|name, value| !(value.is_null() && self.refuses_null.contains(name)));
        let Some(validator) = &self.validator else {
            return Ok(arguments);
        };
        let instance = Value::Object(arguments);
        // `is_valid` stops at the first failure and collects nothing: the
        // cheap test for every call; the errors are gathered only for a
        // call that fails it.
        if validator.is_valid(&instance) {
            return match instance {
                Value::Object(arguments) => Ok(arguments),
                _ => Ok(JsonObject::new()),
            };
        }
        let errors = validator.iter_errors(&instance);
        let mut field = None;
        let mut reasons = String::new();
        for error in errors.take(MAX_ERRORS) {
            let path = error
                .instance_path()
                .as_str()
                .trim_start_matches('/')
                .to_owned();
            let name = match error.kind() {
                jsonschema::error::ValidationErrorKind::Required { property } => {
                    let property = property
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| property.to_string());
                    if path.is_empty() {
                        property
                    } else {
                        format!("{path}/{property}")
                    }
                }
                _ => path,
            };
            let reason = if name.is_empty() {
                error.to_string()
            } else {
                format!("`{name}`: {error}")
            };
            field.get_or_insert(name);
            if !reasons.is_empty() {
                reasons.push_str("; ");
            }
            reasons.push_str(&reason);
            if reasons.len() > MAX_REASON_BYTES {
                break;
            }
        }
        Err(Error::InvalidArguments {
            tool: tool.to_owned(),
            field: field.filter(|f| !f.is_empty()),
            reason: truncate(reasons, MAX_REASON_BYTES),
        })
    }
}

/// What is left of one tool list's budget for compiled patterns.
pub(crate) struct PatternBudget {
    remaining: usize,
}

impl PatternBudget {
    pub(crate) fn new(bytes: usize) -> Self {
        Self { remaining: bytes }
    }

    /// Measures the compiled size of each distinct pattern in `schema` and
    /// takes it from the budget; an error says why the schema's patterns are
    /// not to be compiled (the budget is charged what was measured anyway).
    fn charge(&mut self, schema: &JsonObject) -> Result<(), &'static str> {
        let mut patterns = HashSet::new();
        collect_patterns(schema, &mut patterns);
        for pattern in patterns {
            if self.remaining == 0 {
                return Err("has more patterns than the tool list's budget for them allows");
            }
            let measured = measure_pattern(pattern);
            let size = measured.unwrap_or(PATTERN_SIZE_LIMIT);
            let over = size > self.remaining;
            self.remaining = self.remaining.saturating_sub(size);
            if measured.is_none() {
                return Err("has a pattern that is too large to compile or not supported");
            }
            if over {
                return Err("has more patterns than the tool list's budget for them allows");
            }
        }
        Ok(())
    }
}

/// Every `pattern` string and `patternProperties` key in `schema`, wherever
/// it is (a superset of the patterns the validator compiles).
fn collect_patterns<'a>(schema: &'a JsonObject, patterns: &mut HashSet<&'a str>) {
    let mut stack: Vec<&'a Value> = schema.values().collect();
    if let Some(Value::String(pattern)) = schema.get("pattern") {
        patterns.insert(pattern);
    }
    if let Some(Value::Object(keys)) = schema.get("patternProperties") {
        patterns.extend(keys.keys().map(String::as_str));
    }
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(object) => {
                if let Some(Value::String(pattern)) = object.get("pattern") {
                    patterns.insert(pattern);
                }
                if let Some(Value::Object(keys)) = object.get("patternProperties") {
                    patterns.extend(keys.keys().map(String::as_str));
                }
                stack.extend(object.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
}

/// The memory a pattern takes compiled as the validator compiles it (the
/// `regex` crate's engine and settings, within [`PATTERN_SIZE_LIMIT`]), its
/// search caches aside; `None` when it does not compile so.
///
/// ECMA-262's `\d` and `\w` are ASCII classes: they are measured as such.
/// Other ECMA-only syntax the validator would translate makes the pattern
/// unsupported here.
fn measure_pattern(pattern: &str) -> Option<usize> {
    use regex_automata::{MatchKind, meta};
    let regex = meta::Regex::builder()
        .configure(
            meta::Config::new()
                .match_kind(MatchKind::LeftmostFirst)
                .utf8_empty(true)
                .nfa_size_limit(Some(PATTERN_SIZE_LIMIT))
                .hybrid_cache_capacity(PATTERN_CACHE_LIMIT),
        )
        .build(&ascii_perl_classes(pattern))
        .ok()?;
    Some(regex.memory_usage())
}

/// `pattern` with `\d`, `\D`, `\w` and `\W` spelled as the ASCII classes
/// ECMA-262 means by them (a nested class is valid inside a class too).
fn ascii_perl_classes(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str("[0-9]"),
            Some('D') => out.push_str("[^0-9]"),
            Some('w') => out.push_str("[0-9A-Za-z_]"),
            Some('W') => out.push_str("[^0-9A-Za-z_]"),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// `text` cut to at most `limit` bytes (at a character boundary), with `…`
/// in place of what was cut.
fn truncate(mut text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

/// Decides which properties of a schema accept `null`, following local
/// `$ref`s, with each schema node evaluated at most once (memoized by
/// address; a node met again while it is being evaluated — a `$ref` cycle —
/// is taken to allow `null`) and a bounded number of visits in all.
struct NullCheck<'a> {
    root: &'a JsonObject,
    memo: HashMap<*const Value, bool>,
    budget: usize,
    visits: usize,
}

impl<'a> NullCheck<'a> {
    fn new(root: &'a JsonObject) -> Self {
        Self {
            root,
            memo: HashMap::new(),
            budget: NULL_CHECK_BUDGET,
            visits: 0,
        }
    }

    /// The top-level properties whose schema provably refuses `null`.
    fn refusing_properties(&mut self) -> HashSet<String> {
        let root = self.root;
        let Some(properties) = root.get("properties").and_then(Value::as_object) else {
            return HashSet::new();
        };
        properties
            .iter()
            .filter(|(_, schema)| !self.allows_null(schema, 0))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Whether `schema` accepts `null`. Unknown or unresolvable constructs,
    /// cycles and an exhausted budget are taken to allow it (keep the value
    /// and let the server decide) — only a provable "no" drops a null.
    fn allows_null(&mut self, schema: &'a Value, depth: usize) -> bool {
        if depth > MAX_REF_DEPTH || self.visits >= self.budget {
            return true;
        }
        self.visits += 1;
        let key: *const Value = schema;
        if let Some(known) = self.memo.get(&key) {
            return *known;
        }
        // While this node is being evaluated, meeting it again is a cycle.
        self.memo.insert(key, true);
        let answer = self.evaluate(schema, depth);
        self.memo.insert(key, answer);
        answer
    }

    fn evaluate(&mut self, schema: &'a Value, depth: usize) -> bool {
        let object = match schema {
            Value::Bool(allowed) => return *allowed,
            Value::Object(object) => object,
            _ => return true,
        };
        // (OpenAPI's `nullable` is not JSON Schema: the validator would refuse
        // the null anyway, so it is not honoured here either.)
        let type_ok = match object.get("type") {
            None => true,
            Some(Value::String(t)) => t == "null",
            Some(Value::Array(types)) => types.iter().any(|t| t == "null"),
            Some(_) => true,
        };
        let enum_ok = match object.get("enum") {
            Some(Value::Array(values)) => values.iter().any(Value::is_null),
            _ => true,
        };
        let const_ok = object.get("const").is_none_or(Value::is_null);
        if !(type_ok && enum_ok && const_ok) {
            return false;
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = object.get(key) {
                if !branches.iter().any(|b| self.allows_null(b, depth + 1)) {
                    return false;
                }
            }
        }
        if let Some(Value::Array(branches)) = object.get("allOf") {
            if !branches.iter().all(|b| self.allows_null(b, depth + 1)) {
                return false;
            }
        }
        match object.get("$ref").and_then(Value::as_str) {
            Some(reference) => match resolve_pointer(reference, self.root) {
                Some(target) => self.allows_null(target, depth + 1),
                None => true,
            },
            None => true,
        }
    }
}

/// Keywords whose value is one subschema.
const SCHEMA_KEYWORDS: [&str; 13] = [
    "additionalProperties",
    "additionalItems",
    "unevaluatedProperties",
    "unevaluatedItems",
    "items",
    "contains",
    "propertyNames",
    "if",
    "then",
    "else",
    "not",
    "contentSchema",
    "$ref",
];

/// Keywords whose value is an array of subschemas.
const ARRAY_KEYWORDS: [&str; 5] = ["allOf", "anyOf", "oneOf", "prefixItems", "items"];

/// Keywords whose value maps names to subschemas.
const MAP_KEYWORDS: [&str; 4] = [
    "properties",
    "patternProperties",
    "dependentSchemas",
    "dependencies",
];

/// An upper estimate of the work the validator may do for one instance node:
/// a schema's cost is 1 plus the costs of its subschemas, `$ref` targets
/// included, saturating. Each node is evaluated once (memoized by address),
/// so the estimate itself takes work linear in the schema's size even when
/// the cost it finds is exponential. A `$ref` back into a node being
/// evaluated (a cycle) costs 1: recursion through it is driven by the
/// instance's depth, not by the schema.
///
/// What cannot be followed soundly costs [`u64::MAX`]: a `$ref` that is not a
/// local JSON pointer (`#` or `#/…`) or does not resolve, `$dynamicRef` and
/// `$recursiveRef` to anything but `#`, an `$id` below the root (it changes
/// what pointers resolve against), and nesting deeper than
/// [`MAX_COST_DEPTH`].
struct ValidationCost<'a> {
    root: &'a JsonObject,
    /// Finished nodes' costs, and `1` for the nodes being evaluated.
    memo: HashMap<*const Value, u64>,
    visits: usize,
}

impl<'a> ValidationCost<'a> {
    fn new(root: &'a JsonObject) -> Self {
        Self {
            root,
            memo: HashMap::new(),
            visits: 0,
        }
    }

    /// The root schema's cost.
    fn total(&mut self) -> u64 {
        let root = self.root;
        self.object_cost(root, 0, true)
    }

    fn cost(&mut self, schema: &'a Value, depth: usize) -> u64 {
        self.visits += 1;
        let key: *const Value = schema;
        if let Some(known) = self.memo.get(&key) {
            return *known;
        }
        let cost = match schema {
            Value::Object(object) => {
                if depth > MAX_COST_DEPTH {
                    return u64::MAX;
                }
                self.memo.insert(key, 1);
                self.object_cost(object, depth, false)
            }
            _ => 1,
        };
        self.memo.insert(key, cost);
        cost
    }

    fn object_cost(&mut self, object: &'a JsonObject, depth: usize, root: bool) -> u64 {
        if !root && (object.contains_key("$id") || object.get("id").is_some_and(Value::is_string)) {
            return u64::MAX;
        }
        let mut cost: u64 = 1;
        let depth = depth + 1;
        for keyword in SCHEMA_KEYWORDS {
            match (keyword, object.get(keyword)) {
                (_, None) | ("items", Some(Value::Array(_))) => {}
                ("$ref", Some(reference)) => {
                    let target = reference
                        .as_str()
                        .and_then(|reference| resolve_local(reference, self.root));
                    cost = cost.saturating_add(match target {
                        Some(Resolved::Node(target)) => self.cost(target, depth),
                        Some(Resolved::Root) => 1,
                        None => u64::MAX,
                    });
                }
                (_, Some(subschema)) => {
                    cost = cost.saturating_add(self.cost(subschema, depth));
                }
            }
        }
        for keyword in ["$dynamicRef", "$recursiveRef"] {
            match object.get(keyword) {
                None => {}
                // The root (or a resource below it, which has an `$id`).
                Some(Value::String(reference)) if reference == "#" => {
                    cost = cost.saturating_add(1);
                }
                Some(_) => return u64::MAX,
            }
        }
        for keyword in ARRAY_KEYWORDS {
            if let Some(Value::Array(subschemas)) = object.get(keyword) {
                for subschema in subschemas {
                    cost = cost.saturating_add(self.cost(subschema, depth));
                }
            }
        }
        for keyword in MAP_KEYWORDS {
            if let Some(Value::Object(subschemas)) = object.get(keyword) {
                for subschema in subschemas.values() {
                    // (`dependencies` also maps names to lists of names.)
                    if !subschema.is_array() {
                        cost = cost.saturating_add(self.cost(subschema, depth));
                    }
                }
            }
        }
        cost
    }
}

/// Where a local `$ref` points.
enum Resolved<'a> {
    /// The whole schema (`#`): a cycle back to the root, costing 1.
    Root,
    Node(&'a Value),
}

/// Resolves a local JSON pointer reference (`#` or `#/a/b`, percent-encoded
/// or not) against the root schema; `None` for anything else, and for a
/// pointer through an `$id` below the root (it would resolve against that
/// resource instead).
fn resolve_local<'a>(reference: &str, root: &'a JsonObject) -> Option<Resolved<'a>> {
    let pointer = percent_decode(reference.strip_prefix('#')?)?;
    if pointer.is_empty() {
        return Some(Resolved::Root);
    }
    let mut parts = pointer.strip_prefix('/')?.split('/');
    let first = parts.next()?;
    let mut node = root.get(&unescape(first))?;
    for part in parts {
        if node.get("$id").is_some() {
            return None;
        }
        node = match node {
            Value::Object(map) => map.get(&unescape(part))?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(Resolved::Node(node))
}

/// Decodes `%XX` escapes; `None` when they do not make UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// Resolves `#/a/b` against the root schema, for the null analysis.
fn resolve_pointer<'a>(reference: &str, root: &'a JsonObject) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.is_empty() {
        return None;
    }
    let mut parts = pointer.trim_start_matches('/').split('/');
    let first = parts.next()?;
    let mut node = root.get(&unescape(first))?;
    for part in parts {
        node = match node {
            Value::Object(map) => map.get(&unescape(part))?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(node)
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn checker(schema: Value) -> ArgumentChecker {
        match schema {
            Value::Object(map) => ArgumentChecker::new(
                "t",
                Arc::new(map),
                &mut PatternBudget::new(PATTERN_LIST_BUDGET),
            ),
            _ => panic!("schema must be an object"),
        }
    }

    fn args(value: Value) -> JsonObject {
        value.as_object().cloned().unwrap_or_default()
    }

    fn invalid(result: Result<JsonObject, Error>) -> (Option<String>, String) {
        match result {
            Err(Error::InvalidArguments { field, reason, .. }) => (field, reason),
            other => panic!("expected invalid arguments, got {other:?}"),
        }
    }

    /// A schema whose `$defs/a` is `allOf` of eight `$ref`s to itself: an
    /// eager analysis visits 8^depth nodes.
    fn self_referencing_all_of() -> Value {
        let branches: Vec<Value> = (0..8).map(|_| json!({"$ref": "#/$defs/a"})).collect();
        json!({
            "type": "object",
            "properties": {"x": {"$ref": "#/$defs/a"}, "y": {"type": "string"}},
            "$defs": {"a": {"allOf": branches}}
        })
    }

    #[test]
    fn a_ref_cycle_with_all_of_fan_out_is_analysed_in_linear_work() {
        let schema = self_referencing_all_of();
        let Value::Object(root) = &schema else {
            panic!("an object schema");
        };
        let mut check = NullCheck::new(root);
        let refusing = check.refusing_properties();
        assert_eq!(refusing, HashSet::from(["y".to_owned()]));
        assert!(
            check.visits <= 32,
            "each node once, not 8^depth: {} visits",
            check.visits
        );
    }

    #[test]
    fn a_call_against_a_ref_cycle_schema_completes() {
        let c = checker(self_referencing_all_of());
        let prepared = c.prepare("t", args(json!({"x": null, "y": null})));
        // `x`'s null is kept (the cycle cannot prove it refused), `y`'s dropped.
        assert_eq!(prepared.unwrap(), args(json!({"x": null})));
    }

    #[test]
    fn the_null_analysis_stops_at_its_budget() {
        // A wide, acyclic fan-out: many distinct nodes, each visited once.
        let defs: serde_json::Map<String, Value> = (0..(NULL_CHECK_BUDGET + 10))
            .map(|i| {
                (
                    format!("d{i}"),
                    json!({"allOf": [{"$ref": format!("#/$defs/d{}", i + 1)}]}),
                )
            })
            .collect();
        let schema =
            json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/d0"}}, "$defs": defs});
        let Value::Object(root) = &schema else {
            panic!("an object schema");
        };
        let mut check = NullCheck::new(root);
        assert!(
            check.refusing_properties().is_empty(),
            "an exhausted budget keeps the null"
        );
        assert!(check.visits <= NULL_CHECK_BUDGET);
    }

    /// `d0 … d{depth}` where each `d_i` is `combinator` of two `$ref`s to
    /// `d{i+1}` (the last is `leaf`), `x` refers to `d0`; `pointer` writes the
    /// reference to `d_i`.
    fn fan_out_dag(
        depth: usize,
        combinator: &str,
        leaf: Value,
        pointer: impl Fn(usize) -> String,
    ) -> Value {
        let mut defs = serde_json::Map::new();
        for i in 0..depth {
            let next = json!({"$ref": pointer(i + 1)});
            defs.insert(format!("d{i}"), json!({combinator: [next.clone(), next]}));
        }
        defs.insert(format!("d{depth}"), leaf);
        json!({
            "type": "object",
            "properties": {"x": {"$ref": pointer(0)}},
            "$defs": defs
        })
    }

    fn dag(depth: usize, combinator: &str) -> Value {
        fan_out_dag(depth, combinator, json!({"type": "integer"}), |i| {
            format!("#/$defs/d{i}")
        })
    }

    fn cost_of(schema: &Value) -> (u64, usize) {
        let Value::Object(root) = schema else {
            panic!("an object schema");
        };
        let mut cost = ValidationCost::new(root);
        let total = cost.total();
        (total, cost.visits)
    }

    #[test]
    fn a_fan_out_dag_costs_exponentially_but_is_estimated_in_linear_work() {
        for combinator in ["allOf", "anyOf", "oneOf"] {
            let (cost, visits) = cost_of(&dag(30, combinator));
            assert!(cost > 1 << 30, "{combinator}: {cost}");
            assert!(visits <= 4 * 32, "{combinator}: {visits} visits");
        }
        // Small DAGs are within the budget and checked.
        let (cost, _) = cost_of(&dag(8, "allOf"));
        assert!(cost < VALIDATION_COST_BUDGET, "{cost}");
        assert!(checker(dag(8, "allOf")).validates());
    }

    #[test]
    fn a_schema_over_the_cost_budget_is_listed_unchecked_and_a_call_completes() {
        for combinator in ["allOf", "anyOf"] {
            let c = checker(dag(30, combinator));
            assert!(!c.validates(), "{combinator}");
            // Invalid for the schema, but not checked: the server decides.
            let prepared = c.prepare("t", args(json!({"x": "not an integer"})));
            assert_eq!(prepared.unwrap(), args(json!({"x": "not an integer"})));
        }
    }

    #[test]
    fn references_the_estimate_cannot_follow_count_as_over_budget() {
        // Percent-encoded pointers are followed like plain ones.
        let (cost, _) = cost_of(&fan_out_dag(30, "allOf", json!({}), |i| {
            format!("#/%24defs/d{i}")
        }));
        assert!(cost > VALIDATION_COST_BUDGET, "{cost}");
        let (cost, _) = cost_of(&fan_out_dag(4, "allOf", json!({}), |i| {
            format!("#/%24defs/d{i}")
        }));
        assert!(cost < 100, "{cost}");
        // References by `$id` or anchor, a nested `$id`, dynamic references.
        let hidden = [
            json!({"properties": {"x": {"$ref": "urn:a"}}, "$defs": {"a": {"$id": "urn:a"}}}),
            json!({"properties": {"x": {"$ref": "#a"}}, "$defs": {"a": {"$anchor": "a"}}}),
            json!({"properties": {"x": {"$id": "urn:x", "$ref": "#/$defs/a"}}}),
            json!({"properties": {"x": {"$ref": "#/$defs/r/$defs/a"}}, "$defs": {"r": {"$id": "urn:r", "$defs": {"a": {}}}}}),
            json!({"properties": {"x": {"$dynamicRef": "#node"}}}),
            json!({"properties": {"x": {"$ref": "#/$defs/missing"}}}),
        ];
        for schema in hidden {
            assert_eq!(cost_of(&schema).0, u64::MAX, "{schema}");
        }
        // A reference to the root is a cycle.
        let (cost, _) = cost_of(&json!({"properties": {"x": {"$ref": "#"}}}));
        assert_eq!(cost, 3);
    }

    #[test]
    fn a_chain_deeper_than_the_estimate_follows_counts_as_over_budget() {
        let chain = |depth: usize| {
            let defs: serde_json::Map<String, Value> = (0..depth)
                .map(|i| {
                    (
                        format!("d{i}"),
                        json!({"$ref": format!("#/$defs/d{}", i + 1)}),
                    )
                })
                .chain([(format!("d{depth}"), json!({}))])
                .collect();
            json!({"properties": {"x": {"$ref": "#/$defs/d0"}}, "$defs": defs})
        };
        assert!(cost_of(&chain(50)).0 < 200);
        assert_eq!(cost_of(&chain(10_000)).0, u64::MAX);
    }

    #[test]
    fn an_invalid_call_reports_a_bounded_number_of_errors_in_a_bounded_reason() {
        // 2^10 failing paths, each with its own error.
        let c = checker(dag(10, "allOf"));
        assert!(c.validates());
        let (field, reason) = invalid(c.prepare("t", args(json!({"x": "not an integer"}))));
        assert_eq!(field.as_deref(), Some("x"));
        assert!(reason.len() <= MAX_REASON_BYTES, "{} bytes", reason.len());
        assert!(
            reason.matches("is not of type").count() <= MAX_ERRORS,
            "{reason}"
        );
        // Long messages (here the instance, quoted in each) are cut too.
        let long = "y".repeat(100_000);
        let (_, reason) = invalid(c.prepare("t", args(json!({"x": long}))));
        assert!(reason.len() <= MAX_REASON_BYTES, "{} bytes", reason.len());
        assert!(reason.ends_with('…'), "{reason}");
        // Many failing properties, one error each.
        let properties: serde_json::Map<String, Value> = (0..100)
            .map(|i| (format!("p{i}"), json!({"type": "integer"})))
            .collect();
        let c = checker(json!({"type": "object", "properties": properties}));
        let many: JsonObject = (0..100).map(|i| (format!("p{i}"), json!("s"))).collect();
        let (_, reason) = invalid(c.prepare("t", many));
        assert!(
            reason.matches("is not of type").count() <= MAX_ERRORS,
            "{reason}"
        );
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("abc".to_owned(), 3), "abc");
        assert_eq!(truncate("abcdef".to_owned(), 4), "a…");
        assert_eq!(truncate("ééé".to_owned(), 5), "é…");
    }

    /// About 560 KiB compiled, from 20 bytes of pattern.
    const PATTERN_BOMB: &str = r"^(?:\w{1000}){4}$";

    #[test]
    fn a_pattern_over_the_size_limit_leaves_the_tool_unchecked() {
        assert_eq!(measure_pattern(PATTERN_BOMB), None);
        let schema = json!({"type": "object", "properties": {"a": {"type": "string", "pattern": PATTERN_BOMB}}});
        let c = checker(schema.clone());
        assert!(!c.validates());
        assert_eq!(
            c.prepare("t", args(json!({"a": 1}))).unwrap(),
            args(json!({"a": 1}))
        );
        // The same as a `patternProperties` key, and nested anywhere.
        let c = checker(json!({"patternProperties": {PATTERN_BOMB: {}}}));
        assert!(!c.validates());
        let c = checker(json!({"$defs": {"unused": {"items": [{"pattern": PATTERN_BOMB}]}}}));
        assert!(!c.validates());
    }

    #[test]
    fn ecma_classes_are_measured_as_ascii_and_ordinary_patterns_are_small() {
        assert_eq!(
            ascii_perl_classes(r"^\d\D\w\W[\d-]\\d\s$"),
            r"^[0-9][^0-9][0-9A-Za-z_][^0-9A-Za-z_][[0-9]-]\\d\s$"
        );
        for pattern in [
            r"^[A-Z]{3}$",
            r"^\d{4}-\d{2}-\d{2}$",
            r"^(\w{70})$",
            r"^[^@]+@[^@]+\.[a-z]{2,}$",
        ] {
            let size = measure_pattern(pattern);
            assert!(size.is_some_and(|s| s < 32 * 1024), "{pattern}: {size:?}");
        }
        // Look-around and backreferences are not supported by the engine.
        assert_eq!(measure_pattern(r"^(?=a)a$"), None);
        let c = checker(json!({"properties": {"a": {"pattern": r"^(a)\1$"}}}));
        assert!(!c.validates());
    }

    #[test]
    fn a_tool_list_s_patterns_share_one_budget() {
        let pattern = r"^[a-z]{1,40}$";
        let size = measure_pattern(pattern).unwrap_or(usize::MAX);
        let schema = |i: usize| {
            let Value::Object(schema) =
                json!({"properties": {"a": {"pattern": pattern}, "i": {"const": i}}})
            else {
                panic!("an object schema");
            };
            Arc::new(schema)
        };
        let mut budget = PatternBudget::new(3 * size);
        let checkers: Vec<bool> = (0..5)
            .map(|i| ArgumentChecker::new("t", schema(i), &mut budget).validates())
            .collect();
        assert_eq!(checkers, [true, true, true, false, false]);
        // A pattern that does not compile is charged the size limit.
        let mut budget = PatternBudget::new(PATTERN_SIZE_LIMIT + size);
        let Value::Object(bomb) = json!({"properties": {"a": {"pattern": PATTERN_BOMB}}}) else {
            panic!("an object schema");
        };
        assert!(!ArgumentChecker::new("t", Arc::new(bomb), &mut budget).validates());
        assert!(ArgumentChecker::new("t", schema(0), &mut budget).validates());
        assert!(!ArgumentChecker::new("t", schema(1), &mut budget).validates());
    }

    #[test]
    fn wrong_type_names_the_field() {
        let c = checker(json!({"type": "object", "properties": {"a": {"type": "number"}}}));
        let (field, reason) = invalid(c.prepare("t", args(json!({"a": "two"}))));
        assert_eq!(field.as_deref(), Some("a"));
        assert!(
            reason.contains("`a`") && reason.contains("number"),
            "{reason}"
        );
    }

    #[test]
    fn missing_required_field_names_it() {
        let c = checker(
            json!({"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}),
        );
        let (field, reason) = invalid(c.prepare("t", JsonObject::new()));
        assert_eq!(field.as_deref(), Some("message"));
        assert!(reason.contains("message"), "{reason}");
    }

    #[test]
    fn nested_fields_are_named_by_path() {
        let c = checker(
            json!({"type": "object", "properties": {"p": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}}}),
        );
        let (field, _) = invalid(c.prepare("t", args(json!({"p": {}}))));
        assert_eq!(field.as_deref(), Some("p/x"));
        let (field, _) = invalid(c.prepare("t", args(json!({"p": {"x": 1.5}}))));
        assert_eq!(field.as_deref(), Some("p/x"));
    }

    #[test]
    fn valid_arguments_pass_unchanged() {
        let c = checker(
            json!({"type": "object", "properties": {"a": {"type": "number"}}, "required": ["a"]}),
        );
        assert_eq!(
            c.prepare("t", args(json!({"a": 1}))).unwrap(),
            args(json!({"a": 1}))
        );
    }

    #[test]
    fn integer_enums_refs_defs_allof_and_patterns_are_enforced() {
        let c = checker(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {"level": {"type": "integer", "enum": [1, 2, 3]}},
            "properties": {
                "level": {"$ref": "#/$defs/level"},
                "code": {"allOf": [{"type": "string"}, {"pattern": "^[A-Z]{3}$"}]}
            }
        }));
        assert!(c.validates());
        assert!(
            c.prepare("t", args(json!({"level": 2, "code": "ABC"})))
                .is_ok()
        );
        assert_eq!(
            invalid(c.prepare("t", args(json!({"level": 4}))))
                .0
                .as_deref(),
            Some("level")
        );
        assert_eq!(
            invalid(c.prepare("t", args(json!({"code": "abc"}))))
                .0
                .as_deref(),
            Some("code")
        );
    }

    #[test]
    fn draft_7_definitions_refs_work() {
        let c = checker(json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "definitions": {"n": {"type": "integer"}},
            "properties": {"n": {"$ref": "#/definitions/n"}}
        }));
        assert!(c.prepare("t", args(json!({"n": 1}))).is_ok());
        assert!(c.prepare("t", args(json!({"n": "x"}))).is_err());
    }

    #[test]
    fn a_schema_that_does_not_compile_skips_validation() {
        let c = checker(json!({"type": "object", "properties": {"a": {"type": "not-a-type"}}}));
        assert!(!c.validates());
        assert_eq!(
            c.prepare("t", args(json!({"a": 1}))).unwrap(),
            args(json!({"a": 1}))
        );
    }

    #[test]
    fn nulls_the_schema_forbids_are_dropped_and_allowed_nulls_kept() {
        let c = checker(json!({
            "type": "object",
            "$defs": {"maybe": {"type": ["string", "null"]}},
            "properties": {
                "plain": {"type": "string"},
                "nullable_type": {"type": ["string", "null"]},
                "any_of": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "by_ref": {"$ref": "#/$defs/maybe"},
                "openapi": {"type": "string", "nullable": true},
                "anything": {},
                "enum_no_null": {"enum": ["a", "b"]}
            },
            "required": ["nullable_type"]
        }));
        let prepared = c
            .prepare(
                "t",
                args(json!({
                    "plain": null, "nullable_type": null, "any_of": null, "by_ref": null,
                    "openapi": null, "anything": null, "enum_no_null": null, "undeclared": null
                })),
            )
            .unwrap();
        let kept: Vec<&str> = prepared.keys().map(String::as_str).collect();
        assert_eq!(
            kept,
            [
                "any_of",
                "anything",
                "by_ref",
                "nullable_type",
                "undeclared"
            ]
        );
    }

    #[test]
    fn a_required_nullable_field_arrives_as_null_not_missing() {
        let c = checker(
            json!({"type": "object", "properties": {"x": {"type": ["integer", "null"]}}, "required": ["x"]}),
        );
        let prepared = c.prepare("t", args(json!({"x": null}))).unwrap();
        assert_eq!(prepared.get("x"), Some(&Value::Null));
    }

    #[test]
    fn ref_cycles_terminate() {
        let root = args(json!({"$defs": {"a": {"$ref": "#/$defs/a"}}}));
        assert!(NullCheck::new(&root).allows_null(&json!({"$ref": "#/$defs/a"}), 0));
    }
}
