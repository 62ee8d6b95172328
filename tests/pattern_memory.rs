//! Tool schemas whose patterns compile to large automata: the memory a tool
//! list's patterns take is bounded, per pattern and for the whole list.
//!
//! A test binary of its own with a single test, so that its resident set size
//! measures this test only.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use mcp_group::{FunctionGroup, McpClientConfig, ServerConfig, core::DynTransport};
use mcp_group_test_kit::{InMemoryTransport, process::rss_kib};
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
        PaginatedRequestParams, ServerCapabilities, ServerConfig as RmcpServerConfig, Tool,
    },
    service::RequestContext,
};
use serde_json::json;

/// About 560 KiB compiled, from 20 bytes of pattern: over the size limit.
const PATTERN_BOMB: &str = r"^(?:\w{1000}){4}$";

/// About 320 KiB compiled (its one-pass DFA): within the size limit.
const LARGE_PATTERN: &str =
    r"^([a][b][c][d][e][f][g][h][i][j][k][l][m][n][o][p][q][r][s][t][u][v][w][x][y][z]){40}$";

/// Serves `count` tools whose one property has `pattern`.
#[derive(Clone)]
struct Patterns {
    count: usize,
    pattern: &'static str,
}

impl ServerHandler for Patterns {
    fn get_info(&self) -> RmcpServerConfig {
        RmcpServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = (0..self.count)
            .map(|i| {
                let schema = json!({
                    "type": "object",
                    "properties": {"a": {"type": "string", "pattern": self.pattern}}
                });
                Tool::new(
                    format!("t{i}"),
                    "",
                    Arc::new(schema.as_object().cloned().unwrap()),
                )
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        _request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        Ok(CallToolResult::success(vec![ContentBlock::text("done")]).into())
    }
}

async fn group(count: usize, pattern: &'static str) -> FunctionGroup {
    let transport: DynTransport = Arc::new(InMemoryTransport::new(Patterns { count, pattern }));
    let config = McpClientConfig::new(ServerConfig::stdio("unused", Vec::<String>::new()));
    FunctionGroup::with_transport(transport, config)
        .await
        .unwrap()
}

fn validated(group: &FunctionGroup) -> usize {
    let functions = group.functions();
    functions
        .iter()
        .filter(|f| functions.validates_arguments(f.name()))
        .count()
}

#[tokio::test(flavor = "current_thread")]
async fn a_tool_list_s_patterns_take_bounded_memory() {
    if rss_kib() == 0 {
        return; // no /proc to measure with
    }
    // Over the size limit: not compiled, listed and callable unchecked.
    let before = rss_kib();
    let bombs = group(200, PATTERN_BOMB).await;
    let grown = rss_kib().saturating_sub(before);
    assert_eq!(bombs.functions().iter().count(), 200);
    assert_eq!(validated(&bombs), 0);
    assert!(grown < 32 * 1024, "200 pattern bombs took {grown} KiB");
    let output = bombs.call(None, "t0", json!({"a": 7})).await.unwrap();
    assert_eq!(output.to_text(), "done");
    bombs.shutdown().await;

    // Within the limit, but together over the list's budget (64 MiB): the
    // first ~200 are compiled, the rest are not.
    let before = rss_kib();
    let large = group(1000, LARGE_PATTERN).await;
    let grown = rss_kib().saturating_sub(before);
    let checked = validated(&large);
    assert!((100..400).contains(&checked), "{checked} compiled");
    assert!(
        grown < 96 * 1024,
        "1,000 large patterns took {grown} KiB ({checked} compiled)"
    );
    large.shutdown().await;
}
