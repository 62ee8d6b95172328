//! The shared value types: session ids, server descriptions, tools, call results.

use std::{fmt, sync::Arc};

use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool};
use serde::{Deserialize, Serialize};

/// The id of one end-user session (a conversation). Each session gets its own
/// MCP connection. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(Arc<str>);

impl SessionId {
    /// The id used for calls made without a session id; they all share one connection.
    pub const DEFAULT: &'static str = "default";

    /// Creates a session id.
    pub fn new(id: impl AsRef<str>) -> Self {
        Self(Arc::from(id.as_ref()))
    }

    /// The shared default session.
    pub fn default_session() -> Self {
        Self::new(Self::DEFAULT)
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::default_session()
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for SessionId {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for SessionId {
    fn from(s: String) -> Self {
        Self(Arc::from(s))
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// What a transport connects to, for logs and error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerDescription {
    /// The transport's configuration name: `"stdio"`, `"streamable-http"`, `"sse"`, ...
    pub transport: &'static str,
    /// The command line or URL of the server.
    pub endpoint: String,
}

impl fmt::Display for ServerDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.endpoint, self.transport)
    }
}

/// One tool as the server describes it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ToolDescriptor {
    /// The server's name of the tool.
    pub name: String,
    /// A human-readable title, if the server gave one.
    pub title: Option<String>,
    /// The server's description.
    pub description: Option<String>,
    /// The JSON Schema of the arguments, exactly as the server sent it.
    pub input_schema: Arc<JsonObject>,
    /// The JSON Schema of the structured result, if any.
    pub output_schema: Option<Arc<JsonObject>>,
}

impl ToolDescriptor {
    /// Creates a descriptor with an input schema and no description.
    pub fn new(name: impl Into<String>, input_schema: JsonObject) -> Self {
        Self {
            name: name.into(),
            title: None,
            description: None,
            input_schema: Arc::new(input_schema),
            output_schema: None,
        }
    }

    /// Sets the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
}

impl From<Tool> for ToolDescriptor {
    fn from(tool: Tool) -> Self {
        Self {
            name: tool.name.into_owned(),
            title: tool.title,
            description: tool.description.map(|d| d.into_owned()),
            input_schema: tool.input_schema,
            output_schema: tool.output_schema,
        }
    }
}

/// The result of one tool call, with every content block the server sent.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    result: CallToolResult,
}

impl ToolOutput {
    /// Wraps rmcp's result.
    pub fn new(result: CallToolResult) -> Self {
        Self { result }
    }

    /// Whether the server flagged the result as a tool error (`isError`).
    pub fn is_error(&self) -> bool {
        self.result.is_error.unwrap_or(false)
    }

    /// Every content block, in order.
    pub fn content(&self) -> &[ContentBlock] {
        &self.result.content
    }

    /// The structured content, if the server sent any.
    pub fn structured_content(&self) -> Option<&serde_json::Value> {
        self.result.structured_content.as_ref()
    }

    /// The text contents joined with newlines (the string view the seed returns).
    /// When there is no text block but structured content, its JSON text.
    pub fn to_text(&self) -> String {
        let texts: Vec<&str> = self
            .result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
            .collect();
        if texts.is_empty() {
            if let Some(structured) = &self.result.structured_content {
                return structured.to_string();
            }
        }
        texts.join("\n")
    }

    /// The result as JSON, as it came over the wire.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.result).unwrap_or(serde_json::Value::Null)
    }

    /// The rmcp result.
    pub fn into_inner(self) -> CallToolResult {
        self.result
    }
}
