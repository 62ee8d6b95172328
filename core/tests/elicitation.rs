//! Elicitation requests carry their session, and a server cannot keep more
//! than `MAX_SERVER_REQUESTS_PER_SESSION` of them in the handler at once.
#![allow(clippy::unwrap_used)]

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use mcp_group_core::{
    ClientOptions, Connection, Elicitation, ElicitationAnswer, JsonObject,
    MAX_SERVER_REQUESTS_PER_SESSION, SessionId, SessionKey, async_trait,
    rmcp::{
        RoleServer, ServiceError, ServiceExt,
        model::{
            ClientResult, ElicitRequest, ElicitRequestParams, ElicitResult, ElicitationAction,
            ElicitationSchema, ServerRequest,
        },
        service::Peer,
    },
};
use mcp_group_test_kit::EmptyServer;
use tokio::sync::{Notify, watch};

/// Sends `elicitation/create` as a server does.
async fn ask(peer: &Peer<RoleServer>, message: String) -> Result<ElicitResult, ServiceError> {
    let params = ElicitRequestParams::FormElicitationParams {
        meta: None,
        message,
        requested_schema: ElicitationSchema::builder()
            .optional_string("name")
            .build()
            .unwrap(),
    };
    let request = ServerRequest::ElicitRequest(ElicitRequest::new(params));
    match peer.send_request(request).await? {
        ClientResult::ElicitResult(result) => Ok(result),
        _ => Err(ServiceError::UnexpectedResponse),
    }
}

/// Holds every request until released, counting how many are inside at
/// once, and records the session each came from.
struct Blocking {
    inside: AtomicUsize,
    most_inside: AtomicUsize,
    entered: watch::Sender<usize>,
    release: Notify,
    released: std::sync::atomic::AtomicBool,
    sessions: Mutex<Vec<SessionKey>>,
}

#[async_trait]
impl Elicitation for Blocking {
    async fn elicit(
        &self,
        session: &SessionKey,
        _message: &str,
        _schema: &JsonObject,
    ) -> ElicitationAnswer {
        self.sessions.lock().unwrap().push(session.clone());
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_inside.fetch_max(now, Ordering::SeqCst);
        let released = self.release.notified();
        self.entered.send_modify(|n| *n += 1);
        if !self.released.load(Ordering::SeqCst) {
            released.await;
        }
        self.inside.fetch_sub(1, Ordering::SeqCst);
        ElicitationAnswer::Accept(JsonObject::new())
    }
}

#[tokio::test]
async fn a_server_flooding_elicitations_gets_at_most_the_bound_in_the_handler_and_errors_for_the_rest()
 {
    const ASKED: usize = 20;
    let (entered, mut entered_rx) = watch::channel(0);
    let handler = Arc::new(Blocking {
        inside: AtomicUsize::new(0),
        most_inside: AtomicUsize::new(0),
        entered,
        release: Notify::new(),
        released: false.into(),
        sessions: Mutex::new(Vec::new()),
    });
    // Server-initiated requests are the 2025 era's (the modern era asks
    // through `input_required` results instead).
    let options = ClientOptions::new()
        .with_protocol_version("2025-11-25")
        .unwrap()
        .with_elicitation(handler.clone());
    let key = SessionKey::with_principal(Some("alice"), SessionId::new("chat-7"));

    let (client_end, server_end) = tokio::io::duplex(64 * 1024);
    let (read, write) = tokio::io::split(client_end);
    let (server, connection) = tokio::join!(
        EmptyServer.serve(server_end),
        Connection::establish_with((read, write), "in-memory", &options, &key),
    );
    let (server, connection) = (server.unwrap(), connection.unwrap());
    let peer = server.peer().clone();

    // Every request at once, each on a task of its own; the declined ones
    // report back as soon as they are refused.
    let (refused_tx, mut refused_rx) = tokio::sync::mpsc::unbounded_channel();
    let asks: Vec<_> = (0..ASKED)
        .map(|i| {
            let peer = peer.clone();
            let refused = refused_tx.clone();
            tokio::spawn(async move {
                let answer = ask(&peer, format!("question {i}")).await;
                if answer.is_err() {
                    let _ = refused.send(());
                }
                answer
            })
        })
        .collect();

    // The bound's worth enter the handler and stay there; every other
    // request is refused while they do.
    entered_rx
        .wait_for(|n| *n == MAX_SERVER_REQUESTS_PER_SESSION)
        .await
        .unwrap();
    for _ in 0..ASKED - MAX_SERVER_REQUESTS_PER_SESSION {
        refused_rx.recv().await.unwrap();
    }
    assert_eq!(
        handler.inside.load(Ordering::SeqCst),
        MAX_SERVER_REQUESTS_PER_SESSION
    );

    handler.released.store(true, Ordering::SeqCst);
    handler.release.notify_waiters();
    let mut accepted = 0;
    let mut errors = 0;
    for ask in asks {
        match ask.await.unwrap() {
            Ok(result) => {
                assert_eq!(result.action, ElicitationAction::Accept);
                accepted += 1;
            }
            Err(_) => errors += 1,
        }
    }
    assert_eq!(accepted, MAX_SERVER_REQUESTS_PER_SESSION);
    assert_eq!(errors, ASKED - MAX_SERVER_REQUESTS_PER_SESSION);
    assert_eq!(
        handler.most_inside.load(Ordering::SeqCst),
        MAX_SERVER_REQUESTS_PER_SESSION,
        "never more than the bound in the handler at once"
    );
    let sessions = handler.sessions.lock().unwrap().clone();
    assert_eq!(sessions.len(), MAX_SERVER_REQUESTS_PER_SESSION);
    assert!(
        sessions.iter().all(|s| *s == key),
        "each question names its session and principal: {sessions:?}"
    );

    // Once answered, the session's slots are free again.
    let again = ask(&peer, "one more".into()).await.unwrap();
    assert_eq!(again.action, ElicitationAction::Accept);
    connection.close().await;
}
