//! `input_required` rounds (SEP-2322) through `Connection::call_tool`: each
//! input request answered by the session's handler, `requestState` echoed
//! exactly, and a server that never stops asking stopped by the round bound.
#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use mcp_group_core::{
    AcceptDefaults, ClientOptions, Connection, Error, JsonObject, MAX_INPUT_ROUNDS, SessionId,
    SessionKey,
    rmcp::{
        ErrorData, RoleServer, ServerHandler,
        model::{
            CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ElicitRequest,
            ElicitRequestParams, ElicitationSchema, InputRequest, InputRequiredResult,
            ServerCapabilities, ServerConfig,
        },
        service::RequestContext,
    },
};
use mcp_group_test_kit::serve_in_memory;

/// A retry's `requestState`, and whether it carried the handler's answer.
type Retry = (Option<String>, bool);

/// Asks one question per round with a fresh `requestState`, for `rounds`
/// rounds (forever with `usize::MAX`), then answers with what it was given.
#[derive(Clone)]
struct Asker {
    rounds: usize,
    calls: Arc<AtomicUsize>,
    /// The `requestState` each retry echoed, and whether it carried an answer.
    echoed: Arc<Mutex<Vec<Retry>>>,
}

impl ServerHandler for Asker {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call > 0 {
            let answered = request
                .input_responses
                .as_ref()
                .is_some_and(|r| r["q"]["content"]["answer"] == "default");
            self.echoed
                .lock()
                .unwrap()
                .push((request.request_state.clone(), answered));
        }
        if call >= self.rounds {
            return Ok(CallToolResult::success(vec![ContentBlock::text("done")]).into());
        }
        let schema = ElicitationSchema::builder()
            .required_string_property("answer", |s| s.with_default("default"))
            .build()
            .unwrap();
        let ask = ElicitRequest::new(ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: "what?".into(),
            requested_schema: schema,
        });
        Ok(InputRequiredResult::new(
            Some(
                [("q".to_owned(), InputRequest::Elicitation(ask))]
                    .into_iter()
                    .collect(),
            ),
            Some(format!("state {{\"round\": {call}}} \u{e9}")),
        )
        .into())
    }
}

async fn connect(asker: Asker) -> Connection {
    let (read, write) = tokio::io::split(serve_in_memory(asker));
    Connection::establish_with(
        (read, write),
        "asker",
        &ClientOptions::new().with_elicitation(Arc::new(AcceptDefaults)),
        &SessionKey::from(SessionId::new("alice")),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn each_round_is_answered_and_its_request_state_echoed_unchanged() {
    let asker = Asker {
        rounds: 3,
        calls: Arc::default(),
        echoed: Arc::default(),
    };
    let echoed = Arc::clone(&asker.echoed);
    let connection = connect(asker).await;
    let output = connection
        .call_tool("ask", JsonObject::new(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(output.to_text(), "done");
    let echoed = echoed.lock().unwrap().clone();
    let expected: Vec<_> = (0..3)
        .map(|round| (Some(format!("state {{\"round\": {round}}} \u{e9}")), true))
        .collect();
    assert_eq!(echoed, expected);
    connection.close().await;
}

#[tokio::test]
async fn a_server_that_never_stops_asking_is_stopped_by_the_round_bound() {
    let asker = Asker {
        rounds: usize::MAX,
        calls: Arc::default(),
        echoed: Arc::default(),
    };
    let calls = Arc::clone(&asker.calls);
    let connection = connect(asker).await;
    let err = connection
        .call_tool("ask", JsonObject::new(), Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                what: "input_required rounds",
                limit: MAX_INPUT_ROUNDS
            }
        ),
        "{err:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), MAX_INPUT_ROUNDS);
    connection.close().await;
}
