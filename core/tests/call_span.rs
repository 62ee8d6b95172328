//! Every tool call runs in an `mcp.call` span recording the session, the
//! tool, the protocol era and the outcome.
#![allow(clippy::unwrap_used)]

use std::{
    fmt::Debug,
    sync::{Arc, Mutex},
    time::Duration,
};

use mcp_group_core::{ClientOptions, Connection, SessionId, SessionKey};
use mcp_group_test_kit::{EchoServer, serve_in_memory};
use tracing::{
    Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};
use tracing_subscriber::{Layer, layer::Context, layer::SubscriberExt, registry::LookupSpan};

/// The fields of every `mcp.call` span, as `name=value` in the order set.
#[derive(Clone, Default)]
struct CallSpans(Arc<Mutex<Vec<Vec<String>>>>);

struct Fields<'a>(&'a mut Vec<String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push(format!("{}={value:?}", field.name()));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push(format!("{}={value}", field.name()));
    }
}

/// The index of a span in [`CallSpans`], kept in its extensions.
struct Index(usize);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for CallSpans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "mcp.call" {
            return;
        }
        let mut fields = Vec::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.0.lock().unwrap();
        spans.push(fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Index(spans.len() - 1));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some(Index(index)) = span.extensions().get::<Index>().map(|i| Index(i.0)) else {
            return;
        };
        values.record(&mut Fields(&mut self.0.lock().unwrap()[index]));
    }
}

#[tokio::test]
async fn each_call_has_a_span_with_session_tool_era_and_outcome() {
    let spans = CallSpans::default();
    // Single-threaded test runtime: the calls run on this thread.
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let (read, write) = tokio::io::split(serve_in_memory(EchoServer::new()));
    let connection = Connection::establish_with(
        (read, write),
        "echo",
        &ClientOptions::new(),
        &SessionKey::from(SessionId::new("alice")),
    )
    .await
    .unwrap();

    let limit = Duration::from_secs(10);
    connection
        .call_tool("echo", EchoServer::arguments("hi"), limit)
        .await
        .unwrap();
    connection
        .call_tool("nope", Default::default(), limit)
        .await
        .unwrap_err();
    // Given up before the answer: the future is polled once, then dropped.
    {
        let call = connection.call_tool("echo", EchoServer::arguments("hi"), limit);
        let mut call = std::pin::pin!(call);
        let pending =
            std::future::poll_fn(|cx| std::task::Poll::Ready(call.as_mut().poll(cx).is_pending()))
                .await;
        assert!(pending);
    }

    let spans = spans.0.lock().unwrap().clone();
    assert_eq!(spans.len(), 3, "{spans:?}");
    for span in &spans {
        assert!(
            span.iter()
                .any(|f| f.starts_with("session=") && f.contains("alice")),
            "{span:?}"
        );
        assert!(span.contains(&"era=modern".to_owned()), "{span:?}");
    }
    assert!(spans[0].contains(&"tool=echo".to_owned()), "{:?}", spans[0]);
    assert_eq!(spans[0].last().unwrap(), "outcome=ok");
    assert!(spans[1].contains(&"tool=nope".to_owned()), "{:?}", spans[1]);
    assert_eq!(spans[1].last().unwrap(), "outcome=error");
    assert_eq!(spans[2].last().unwrap(), "outcome=dropped");
    connection.close().await;
}
