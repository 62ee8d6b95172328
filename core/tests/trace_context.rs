//! With the `otel` feature, a call made inside a span carries that span's
//! W3C trace context in its `_meta` (SEP-414).
#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Duration};

use mcp_group_core::{
    Connection, JsonObject,
    rmcp::{
        ErrorData, RoleServer, ServerHandler,
        model::{
            CallToolRequestParams, CallToolResponse, CallToolResult, ServerCapabilities,
            ServerConfig,
        },
        service::RequestContext,
    },
};
use mcp_group_test_kit::serve_in_memory;
use opentelemetry::{
    Context,
    trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider,
    },
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::sync::watch;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

/// A call's `traceparent` and `tracestate`, as the server saw them.
type Seen = (Option<String>, Option<String>);

/// Records the `traceparent` and `tracestate` of each call's `_meta`.
#[derive(Clone)]
struct Recorder(Arc<watch::Sender<Vec<Seen>>>);

impl ServerHandler for Recorder {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let meta = request.meta.as_ref().unwrap_or(&context.meta);
        let seen = (
            meta.0.get_traceparent().map(str::to_owned),
            meta.0.get_tracestate().map(str::to_owned),
        );
        self.0.send_modify(|calls| calls.push(seen));
        Ok(CallToolResult::success(vec![]).into())
    }
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn a_call_inside_a_span_sends_its_trace_context_in_meta() {
    let provider = SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    // The test's runtime is single-threaded: the client runs on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);

    let calls = Arc::new(watch::Sender::new(Vec::new()));
    let (read, write) = tokio::io::split(serve_in_memory(Recorder(Arc::clone(&calls))));
    let connection = Connection::establish((read, write), "recorder")
        .await
        .unwrap();

    let remote = SpanContext::new(
        TraceId::from_hex(TRACE_ID).unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::from_key_value([("vendor", "x")]).unwrap(),
    );
    let request = tracing::info_span!("request");
    request
        .set_parent(Context::new().with_remote_span_context(remote))
        .unwrap();
    connection
        .call_tool("anything", JsonObject::new(), Duration::from_secs(10))
        .instrument(request)
        .await
        .unwrap();
    // Outside the caller's span: the call's own span starts a trace.
    connection
        .call_tool("anything", JsonObject::new(), Duration::from_secs(10))
        .await
        .unwrap();

    let calls = calls.borrow().clone();
    assert_eq!(calls.len(), 2);
    let (parent, state) = &calls[0];
    let parent = parent.as_deref().unwrap();
    let fields: Vec<&str> = parent.split('-').collect();
    assert_eq!(fields.len(), 4, "{parent}");
    assert_eq!(fields[0], "00");
    assert_eq!(fields[1], TRACE_ID, "the caller's trace");
    assert_eq!(fields[3], "01", "sampled");
    assert_eq!(state.as_deref(), Some("vendor=x"));
    let (own, _) = &calls[1];
    let own = own.as_deref().unwrap();
    assert!(!own.contains(TRACE_ID), "{own}");
    connection.close().await;
}
