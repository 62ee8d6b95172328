//! W3C trace context (SEP-414) in each request's `_meta`: with the `otel`
//! feature, the OpenTelemetry context of the current `tracing` span (as
//! `tracing-opentelemetry` keeps it) goes in as `traceparent` and
//! `tracestate`; without it, nothing is added.

use rmcp::model::RequestMetaObject;

/// Adds the current span's trace context to `meta` (with the `otel`
/// feature, and when the span has a valid OpenTelemetry context).
#[cfg(not(feature = "otel"))]
pub(crate) fn inject(_meta: &mut Option<RequestMetaObject>) {}

/// Adds the current span's trace context to `meta` (with the `otel`
/// feature, and when the span has a valid OpenTelemetry context).
#[cfg(feature = "otel")]
pub(crate) fn inject(meta: &mut Option<RequestMetaObject>) {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    if !span_context.is_valid() {
        return;
    }
    let meta = meta.get_or_insert_with(RequestMetaObject::new);
    meta.0.set_traceparent(format!(
        "00-{}-{}-{:02x}",
        span_context.trace_id(),
        span_context.span_id(),
        span_context.trace_flags().to_u8()
    ));
    let state = span_context.trace_state().header();
    if !state.is_empty() {
        meta.0.set_tracestate(state);
    }
}
