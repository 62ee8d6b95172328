//! Tool lists a hostile server can send: never-ending pagination.
#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Duration};

use mcp_group_core::{Connection, Error};
use rmcp::{
    ErrorData, RoleServer, ServerHandler, ServiceExt,
    model::{ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool},
    service::RequestContext,
};

/// Answers every `tools/list` page with one tool and a cursor to the next.
#[derive(Clone)]
struct EndlessPages;

impl ServerHandler for EndlessPages {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let page: u64 = request
            .and_then(|r| r.cursor)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut result = ListToolsResult::with_all_items(vec![Tool::new(
            format!("t{page}"),
            "",
            Arc::new(Default::default()),
        )]);
        result.next_cursor = Some((page + 1).to_string());
        Ok(result)
    }
}

#[tokio::test]
async fn endless_tool_list_pagination_is_a_typed_error_not_unbounded_growth() {
    let (client, server) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        if let Ok(running) = EndlessPages.serve(server).await {
            let _ = running.waiting().await;
        }
    });
    let (read, write) = tokio::io::split(client);
    let connection = Connection::establish((read, write), "endless")
        .await
        .unwrap();
    // Far beyond what the page cap needs: the cap must end it, not the timeout.
    let err = connection
        .list_tools(Duration::from_secs(20))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                what: "tools/list pages",
                ..
            }
        ),
        "{err:?}"
    );
    connection.close().await;
}
