//! One `tools/call` driven to its end: `input_required` rounds (SEP-2322)
//! answered through the session's [`ClientAgent`], and tasks (the
//! `io.modelcontextprotocol/tasks` extension, SEP-2663) followed with
//! `tasks/get`, fed with `tasks/update` and cancelled with `tasks/cancel`
//! when the caller gives up.
//!
//! Nothing here bounds time: the caller wraps the whole exchange in its
//! timeout, and dropping the future stops it (and cancels a task).

use std::{collections::HashSet, time::Duration};

use rmcp::{
    RoleClient, ServiceError,
    model::{
        CallToolRequest, CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams,
        CancelTaskRequest, ClientRequest, DetailedTask, GetExtensions, GetTaskParams,
        GetTaskRequest, GetTaskResult, InputRequest, InputRequests, InputResponses, JsonObject,
        MetaObject, RequestMetaObject, ServerResult, Task, TaskPayload, UpdateTaskParams,
        UpdateTaskRequest,
    },
    service::{Peer, PeerRequestOptions, RequestHandle},
};

use crate::{
    Error, MAX_INPUT_ROUNDS, MAX_SERVER_REQUESTS_PER_SESSION,
    connection::{ClientAgent, RequestTag},
    trace,
};

/// One session's way to the server: rmcp's peer, and the tag its requests
/// carry when the connection is shared by several sessions (see
/// [`crate::Connection::share`]).
#[derive(Clone)]
pub(crate) struct Requester {
    pub(crate) peer: Peer<RoleClient>,
    pub(crate) tag: Option<RequestTag>,
}

impl Requester {
    /// Sends `request` with the session's tag and waits for the answer; if
    /// the future is dropped first, the request is abandoned
    /// (`notifications/cancelled`, which over streamable HTTP also closes
    /// its response stream), as rmcp's own request methods do.
    pub(crate) async fn send(
        &self,
        mut request: ClientRequest,
    ) -> Result<ServerResult, ServiceError> {
        if let Some(tag) = &self.tag {
            request.extensions_mut().insert(tag.clone());
        }
        let handle = self
            .peer
            .send_request_with_option(request, PeerRequestOptions::no_options())
            .await?;
        let mut pending = Abandon(Some(handle));
        let Some(handle) = pending.0.as_mut() else {
            return Err(ServiceError::TransportClosed);
        };
        let result = (&mut handle.rx).await;
        pending.0 = None;
        result.map_err(|_| ServiceError::TransportClosed)?
    }

    /// One `tools/call`: a final result, an `input_required` round or a task.
    async fn call_tool_once(
        &self,
        params: CallToolRequestParams,
    ) -> Result<CallToolResponse, ServiceError> {
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        match self.send(request).await? {
            ServerResult::CallToolResult(result) => Ok(CallToolResponse::Complete(result)),
            ServerResult::InputRequiredResult(result) => {
                Ok(CallToolResponse::InputRequired(result))
            }
            ServerResult::CreateTaskResult(result) => Ok(CallToolResponse::Task(result)),
            other => contentless_call_tool_result(other)
                .map(CallToolResponse::Complete)
                .ok_or(ServiceError::UnexpectedResponse),
        }
    }

    async fn get_task(&self, params: GetTaskParams) -> Result<GetTaskResult, ServiceError> {
        match self
            .send(ClientRequest::GetTaskRequest(GetTaskRequest::new(params)))
            .await?
        {
            ServerResult::GetTaskResult(result) => Ok(result),
            _ => Err(ServiceError::UnexpectedResponse),
        }
    }

    async fn update_task(&self, params: UpdateTaskParams) -> Result<(), ServiceError> {
        match self
            .send(ClientRequest::UpdateTaskRequest(UpdateTaskRequest::new(
                params,
            )))
            .await?
        {
            ServerResult::TaskAckResult(_) | ServerResult::EmptyResult(_) => Ok(()),
            _ => Err(ServiceError::UnexpectedResponse),
        }
    }

    async fn cancel_task(&self, params: CancelTaskParams) -> Result<(), ServiceError> {
        match self
            .send(ClientRequest::CancelTaskRequest(CancelTaskRequest::new(
                params,
            )))
            .await?
        {
            ServerResult::TaskAckResult(_) | ServerResult::EmptyResult(_) => Ok(()),
            _ => Err(ServiceError::UnexpectedResponse),
        }
    }
}

/// A request whose answer nobody waits for any more: dropped before its
/// answer, it is cancelled.
struct Abandon(Option<RequestHandle<RoleClient>>);

impl Drop for Abandon {
    fn drop(&mut self) {
        let Some(handle) = self.0.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = handle
                    .cancel(Some("request abandoned by the caller".to_owned()))
                    .await;
            });
        }
    }
}

/// A `tools/call` answer that carries no content: an empty result, a task
/// acknowledgement, or only `_meta` (read as rmcp's own `call_tool` reads
/// them).
fn contentless_call_tool_result(result: ServerResult) -> Option<CallToolResult> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct MetaOnly {
        #[serde(rename = "_meta")]
        meta: MetaObject,
    }
    let (result_type, meta) = match result {
        ServerResult::EmptyResult(_) => (None, None),
        ServerResult::TaskAckResult(ack) => (Some(ack.result_type), ack.meta),
        ServerResult::CustomResult(custom) => {
            let MetaOnly { meta } = serde_json::from_value(custom.0).ok()?;
            (None, Some(meta))
        }
        _ => return None,
    };
    let mut result = CallToolResult::default();
    result.result_type = result_type;
    result.meta = meta;
    Some(result)
}

/// The shortest wait between two `tasks/get` of one task, whatever the
/// server's `pollIntervalMs` says: a hint of 0 cannot make the client spin.
pub const MIN_TASK_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The longest wait between two `tasks/get` of one task, whatever the
/// server's `pollIntervalMs` says: a huge hint cannot stall the call.
pub const MAX_TASK_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// The most input requests one `input_required` round or one task status
/// may carry.
pub const MAX_INPUT_REQUESTS_PER_ROUND: usize = 16;

/// The most input requests one task may make over its lifetime.
pub const MAX_TASK_INPUT_REQUESTS: usize = 64;

/// How long the `tasks/cancel` sent for an abandoned task may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// Calls the tool and drives the call to a final result.
pub(crate) async fn call_tool(
    peer: &Requester,
    agent: &ClientAgent,
    mut params: CallToolRequestParams,
) -> Result<CallToolResult, Error> {
    trace::inject(&mut params.meta);
    let mut state_only_rounds = 0u32;
    for _ in 0..MAX_INPUT_ROUNDS {
        let response = peer
            .call_tool_once(params.clone())
            .await
            .map_err(|e| Error::from_service(e, "tools/call"))?;
        match response {
            CallToolResponse::Complete(result) => return Ok(result),
            CallToolResponse::InputRequired(result) => {
                let requests = result.input_requests.unwrap_or_default();
                if requests.is_empty() {
                    if result.request_state.is_none() {
                        return Err(Error::UnexpectedResponse);
                    }
                    // The server asks nothing but wants the call again: not
                    // at once, or a server could make us spin.
                    tokio::time::sleep(state_only_delay(state_only_rounds)).await;
                    state_only_rounds += 1;
                } else {
                    state_only_rounds = 0;
                }
                let responses = answer(agent, requests).await?;
                params.input_responses = (!responses.is_empty()).then_some(responses);
                // Echoed exactly as received.
                params.request_state = result.request_state;
            }
            CallToolResponse::Task(created) => {
                return follow_task(peer, agent, created.task, params.meta).await;
            }
            _ => return Err(Error::UnexpectedResponse),
        }
    }
    Err(Error::LimitExceeded {
        what: "input_required rounds",
        limit: MAX_INPUT_ROUNDS,
    })
}

/// 50 ms, doubling up to 400 ms: the pause before re-sending a call whose
/// `input_required` round carried only a `requestState`.
fn state_only_delay(rounds: u32) -> Duration {
    Duration::from_millis(50 << rounds.min(3))
}

/// Answers a round's input requests through the session's elicitation
/// handler, one at a time.
async fn answer(agent: &ClientAgent, requests: InputRequests) -> Result<InputResponses, Error> {
    if requests.len() > MAX_INPUT_REQUESTS_PER_ROUND {
        return Err(Error::LimitExceeded {
            what: "input requests in one round",
            limit: MAX_INPUT_REQUESTS_PER_ROUND,
        });
    }
    let mut responses = InputResponses::new();
    for (key, request) in requests {
        // Sampling and roots are not declared: a server that asks for them
        // anyway is not speaking to this client.
        let InputRequest::Elicitation(request) = request else {
            tracing::debug!(session = %agent.session(), "server asked for input other than an elicitation");
            return Err(Error::UnexpectedResponse);
        };
        let result = agent
            .elicit(request.params)
            .await
            .ok_or(Error::LimitExceeded {
                what: "server requests in flight for the session",
                limit: MAX_SERVER_REQUESTS_PER_SESSION,
            })?;
        let value = serde_json::to_value(result).map_err(|_| Error::UnexpectedResponse)?;
        responses.insert(key, value);
    }
    Ok(responses)
}

/// Polls the task to a terminal status, answering its input requests on
/// the way. Dropped before the end (timeout, caller gone, error), it sends
/// `tasks/cancel`.
async fn follow_task(
    peer: &Requester,
    agent: &ClientAgent,
    task: Task,
    meta: Option<RequestMetaObject>,
) -> Result<CallToolResult, Error> {
    let id = task.task_id;
    tracing::debug!(task = %id, "the server runs the call as a task");
    let mut guard = CancelOnDrop {
        peer: Some(peer.clone()),
        id: id.clone(),
        meta: meta.clone(),
    };
    let mut poll = PollInterval::new(task.poll_interval_ms);
    // Input request keys are unique over a task's life; one still listed
    // after its answer was sent is one the server has not processed yet.
    let mut answered = HashSet::new();
    loop {
        tokio::time::sleep(poll.next_wait()).await;
        let mut get = GetTaskParams::new(id.clone());
        get.meta = meta.clone();
        let DetailedTask { task, payload, .. } = peer
            .get_task(get)
            .await
            .map_err(|e| Error::from_service(e, "tasks/get"))?
            .task;
        poll.hint(task.poll_interval_ms);
        match payload {
            TaskPayload::Working => {}
            TaskPayload::InputRequired { input_requests } => {
                let fresh: InputRequests = input_requests
                    .into_iter()
                    .filter(|(key, _)| !answered.contains(key))
                    .collect();
                if fresh.is_empty() {
                    continue;
                }
                if answered.len() + fresh.len() > MAX_TASK_INPUT_REQUESTS {
                    return Err(Error::LimitExceeded {
                        what: "input requests of one task",
                        limit: MAX_TASK_INPUT_REQUESTS,
                    });
                }
                answered.extend(fresh.keys().cloned());
                let mut update = UpdateTaskParams::new(id.clone(), answer(agent, fresh).await?);
                update.meta = meta.clone();
                peer.update_task(update)
                    .await
                    .map_err(|e| Error::from_service(e, "tasks/update"))?;
                poll.reset();
            }
            TaskPayload::Completed { result } => {
                guard.disarm();
                return serde_json::from_value(serde_json::Value::Object(result))
                    .map_err(|_| Error::UnexpectedResponse);
            }
            TaskPayload::Failed { error } => {
                guard.disarm();
                return Err(task_error(&error));
            }
            TaskPayload::Cancelled => {
                guard.disarm();
                return Err(Error::Cancelled);
            }
            _ => return Err(Error::UnexpectedResponse),
        }
    }
}

/// The JSON-RPC error of a failed task.
fn task_error(error: &JsonObject) -> Error {
    let code = error
        .get("code")
        .and_then(serde_json::Value::as_i64)
        .and_then(|code| i32::try_from(code).ok());
    let message = error.get("message").and_then(serde_json::Value::as_str);
    match (code, message) {
        (Some(code), Some(message)) => Error::Protocol {
            code,
            message: message.to_owned(),
        },
        _ => Error::UnexpectedResponse,
    }
}

/// When to poll a task next: the server's hint, or a backoff from
/// [`MIN_TASK_POLL_INTERVAL`] doubling each poll, whichever is longer,
/// kept within [`MIN_TASK_POLL_INTERVAL`]..=[`MAX_TASK_POLL_INTERVAL`].
#[derive(Debug)]
struct PollInterval {
    hint: Duration,
    backoff: Duration,
}

impl PollInterval {
    fn new(hint_ms: Option<u64>) -> Self {
        let mut interval = Self {
            hint: Duration::ZERO,
            backoff: MIN_TASK_POLL_INTERVAL,
        };
        interval.hint(hint_ms);
        interval
    }

    fn hint(&mut self, hint_ms: Option<u64>) {
        if let Some(ms) = hint_ms {
            self.hint = Duration::from_millis(ms);
        }
    }

    fn next_wait(&mut self) -> Duration {
        let wait = self
            .backoff
            .max(self.hint)
            .clamp(MIN_TASK_POLL_INTERVAL, MAX_TASK_POLL_INTERVAL);
        self.backoff = (self.backoff * 2).min(MAX_TASK_POLL_INTERVAL);
        wait
    }

    /// Back to the shortest wait, after the client gave the task input.
    fn reset(&mut self) {
        self.backoff = MIN_TASK_POLL_INTERVAL;
    }
}

/// Sends `tasks/cancel` for a task the call stopped following before its
/// end (timeout, the caller dropped the call, an error).
struct CancelOnDrop {
    peer: Option<Requester>,
    id: String,
    meta: Option<RequestMetaObject>,
}

impl CancelOnDrop {
    fn disarm(&mut self) {
        self.peer = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(peer) = self.peer.take() else {
            return;
        };
        let mut params = CancelTaskParams::new(std::mem::take(&mut self.id));
        params.meta = self.meta.take();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(task = %params.task_id, "no runtime to send tasks/cancel on");
            return;
        };
        runtime.spawn(async move {
            let id = params.task_id.clone();
            match tokio::time::timeout(CANCEL_TIMEOUT, peer.cancel_task(params)).await {
                Ok(Ok(())) => tracing::debug!(task = %id, "task cancelled"),
                Ok(Err(error)) => tracing::debug!(task = %id, %error, "tasks/cancel failed"),
                Err(_) => tracing::debug!(task = %id, "tasks/cancel timed out"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_waits_stay_within_bounds_whatever_the_hint() {
        let mut zero = PollInterval::new(Some(0));
        assert_eq!(zero.next_wait(), MIN_TASK_POLL_INTERVAL);
        let mut huge = PollInterval::new(Some(u64::MAX));
        assert_eq!(huge.next_wait(), MAX_TASK_POLL_INTERVAL);
        let mut none = PollInterval::new(None);
        let waits: Vec<_> = (0..8).map(|_| none.next_wait()).collect();
        assert_eq!(waits[0], MIN_TASK_POLL_INTERVAL);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert_eq!(waits[7], MAX_TASK_POLL_INTERVAL);
        none.reset();
        assert_eq!(none.next_wait(), MIN_TASK_POLL_INTERVAL);
        let mut hinted = PollInterval::new(Some(1_000));
        assert_eq!(hinted.next_wait(), Duration::from_secs(1));
    }

    #[test]
    fn a_failed_task_carries_its_json_rpc_error() {
        let error = serde_json::json!({"code": -32000, "message": "boom"});
        let serde_json::Value::Object(error) = error else {
            unreachable!()
        };
        assert!(matches!(
            task_error(&error),
            Error::Protocol { code: -32000, ref message } if message == "boom"
        ));
        assert!(matches!(
            task_error(&JsonObject::new()),
            Error::UnexpectedResponse
        ));
    }
}
