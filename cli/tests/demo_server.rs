//! The function group against the bundled demo server over stdio.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use mcp_group::core::Error as CoreError;
use mcp_group::{Error, FunctionGroup, ServerConfig, SessionId};
use mcp_group_test_kit::{ServerProcess, process_exists, wait_dead, wait_gone};
use serde_json::json;
use support::{config, demo_server, whoami};

#[tokio::test]
async fn two_sessions_get_two_connections_and_one_session_reuses_its_own() {
    let group = FunctionGroup::connect(config(demo_server())).await.unwrap();
    let alice = SessionId::new("alice");
    let bob = SessionId::new("bob");

    let (alice_pid, alice_calls) =
        whoami(&group.call(Some(&alice), "whoami", json!({})).await.unwrap());
    let (bob_pid, bob_calls) = whoami(&group.call(Some(&bob), "whoami", json!({})).await.unwrap());
    let (alice_pid_again, alice_calls_again) =
        whoami(&group.call(Some(&alice), "whoami", json!({})).await.unwrap());

    assert_ne!(
        alice_pid, bob_pid,
        "each session has its own server process"
    );
    assert_eq!(
        (alice_calls, bob_calls),
        (1, 1),
        "each connection counts from 1"
    );
    assert_eq!(
        alice_pid_again, alice_pid,
        "a session reuses its connection"
    );
    assert_eq!(alice_calls_again, 2);
    // default (tool listing) + alice + bob
    assert_eq!(group.session_count(), 3);
    assert_eq!(group.stats().created, 3);

    group.shutdown().await;
    assert!(
        !process_exists(alice_pid),
        "shutdown reaps every session's server"
    );
    assert!(!process_exists(bob_pid));
}

#[tokio::test]
async fn calls_without_a_session_share_the_default_session() {
    let group = FunctionGroup::connect(config(demo_server())).await.unwrap();
    let (first, _) = whoami(&group.call(None, "whoami", json!(null)).await.unwrap());
    let default = SessionId::default_session();
    let (second, calls) = whoami(
        &group
            .call(Some(&default), "whoami", json!({}))
            .await
            .unwrap(),
    );
    assert_eq!(first, second);
    assert_eq!(calls, 2);
    assert_eq!(group.session_count(), 1);
    group.shutdown().await;
}

#[tokio::test]
async fn tools_are_listed_with_descriptions_and_schemas() {
    let group = FunctionGroup::connect(config(demo_server())).await.unwrap();
    let functions = group.functions();
    let names: Vec<&str> = functions.iter().map(|f| f.name()).collect();
    assert_eq!(
        names,
        [
            "add",
            "ask",
            "background",
            "echo",
            "fail",
            "region",
            "sleep",
            "tallied",
            "tally",
            "whoami"
        ]
    );
    let echo = group.function("echo").unwrap();
    assert!(
        echo.description()
            .unwrap()
            .starts_with("Echo the message back")
    );
    let schema = &echo.descriptor().input_schema;
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["required"], json!(["message"]));
    group.shutdown().await;
}

#[tokio::test]
async fn results_are_exact() {
    let group = FunctionGroup::connect(config(demo_server())).await.unwrap();
    let echo = group
        .call(None, "echo", json!({"message": "hi"}))
        .await
        .unwrap();
    assert_eq!(echo.to_text(), "Echo: hi");
    let sum = group
        .call(None, "add", json!({"a": 2, "b": 3.5}))
        .await
        .unwrap();
    assert_eq!(sum.to_text(), "5.5");
    group.shutdown().await;
}

#[tokio::test]
async fn unknown_tool_is_a_typed_error() {
    let group = FunctionGroup::connect(config(demo_server())).await.unwrap();
    let err = group
        .call(None, "no_such_tool", json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ToolNotFound { name } if name == "no_such_tool"),
        "{err:?}"
    );
    group.shutdown().await;
}

#[tokio::test]
async fn arguments_that_are_not_an_object_are_rejected_before_any_session_opens() {
    let group = FunctionGroup::connect(config(demo_server())).await.unwrap();
    let sessions_before = group.session_count();
    for bad in [json!([1, 2]), json!("text"), json!(3), json!(true)] {
        let err = group
            .call(Some(&SessionId::new("s")), "echo", bad.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArguments { tool, field: None, .. } if tool == "echo"),
            "{bad}: {err:?}"
        );
    }
    assert_eq!(
        group.session_count(),
        sessions_before,
        "no session was opened"
    );
    group.shutdown().await;
}

#[tokio::test]
async fn a_tool_error_result_is_a_typed_error_with_the_servers_text() {
    let group = FunctionGroup::connect(config(demo_server())).await.unwrap();
    let err = group
        .call(None, "fail", json!({"message": "boom"}))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::ToolError { tool, message } if tool == "fail" && message == "boom"),
        "{err:?}"
    );
    group.shutdown().await;
}

#[tokio::test]
async fn a_slow_call_times_out_and_the_session_stays_usable() {
    let mut config = config(demo_server());
    config.tool_call_timeout = Duration::from_millis(300);
    let group = FunctionGroup::connect(config).await.unwrap();
    let s = SessionId::new("slow");
    let (pid, _) = whoami(&group.call(Some(&s), "whoami", json!({})).await.unwrap());
    let err = group
        .call(Some(&s), "sleep", json!({"ms": 10_000}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Mcp(CoreError::Timeout { operation: "tools/call", after }) if after == Duration::from_millis(300)),
        "{err:?}"
    );
    let (pid_after, calls) = whoami(&group.call(Some(&s), "whoami", json!({})).await.unwrap());
    assert_eq!(
        (pid_after, calls),
        (pid, 2),
        "same connection, still working"
    );
    group.shutdown().await;
}

#[tokio::test]
async fn a_missing_command_is_a_spawn_error() {
    let err = FunctionGroup::connect(config(ServerConfig::stdio(
        "/nonexistent/mcp-server",
        Vec::<String>::new(),
    )))
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Mcp(CoreError::Start { endpoint, .. }) if endpoint == "/nonexistent/mcp-server"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_server_that_exits_at_once_is_a_handshake_error_and_is_reaped() {
    let dir = std::env::temp_dir().join(format!("mcp-group-exit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pid_file = dir.join("pid");
    let script = format!("echo $$ > '{}'; exit 3", pid_file.display());
    let err = FunctionGroup::connect(config(ServerConfig::stdio("sh", ["-c".to_owned(), script])))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Mcp(CoreError::Handshake { .. })),
        "{err:?}"
    );
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(wait_gone(pid).await, "the exited server {pid} was reaped");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn idle_sessions_are_cleaned_up_and_their_servers_reaped() {
    let group = FunctionGroup::connect(config(demo_server())).await.unwrap();
    let mut pids = Vec::new();
    for name in ["a", "b", "c"] {
        let out = group
            .call(Some(&SessionId::new(name)), "whoami", json!({}))
            .await
            .unwrap();
        pids.push(whoami(&out).0);
    }
    assert_eq!(group.session_count(), 4);
    assert_eq!(
        group
            .cleanup_sessions(Some(Duration::from_secs(3600)))
            .await,
        0,
        "none is idle that long"
    );
    assert_eq!(group.cleanup_sessions(Some(Duration::ZERO)).await, 3);
    assert_eq!(
        group.session_count(),
        1,
        "the default session (the base client) stays"
    );
    for pid in pids {
        assert!(!process_exists(pid), "server {pid} reaped by cleanup");
    }
    // A cleaned-up session comes back on its next call, with a new process.
    let out = group
        .call(Some(&SessionId::new("a")), "whoami", json!({}))
        .await
        .unwrap();
    assert_eq!(whoami(&out).1, 1);
    group.shutdown().await;
}

#[tokio::test]
async fn the_session_limit_is_a_typed_error() {
    let mut config = config(demo_server());
    config.max_sessions = 2;
    let group = FunctionGroup::connect(config).await.unwrap(); // the default session is one
    group
        .call(
            Some(&SessionId::new("one")),
            "echo",
            json!({"message": "x"}),
        )
        .await
        .unwrap();
    let err = group
        .call(
            Some(&SessionId::new("two")),
            "echo",
            json!({"message": "x"}),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::SessionLimitReached { limit: 2 }),
        "{err:?}"
    );
    assert_eq!(group.stats().rejected, 1);
    group.shutdown().await;
}

#[tokio::test]
async fn dropping_the_group_kills_every_server() {
    let group = FunctionGroup::connect(config(demo_server())).await.unwrap();
    let out = group
        .call(Some(&SessionId::new("x")), "whoami", json!({}))
        .await
        .unwrap();
    let (pid, _) = whoami(&out);
    drop(group);
    assert!(
        wait_gone(pid).await,
        "server {pid} is killed and reaped after drop"
    );
}

#[tokio::test]
async fn a_server_killed_between_calls_is_replaced_on_the_next_call() {
    let mut config = config(demo_server());
    config.reconnect_initial_backoff = Duration::from_millis(10);
    let group = FunctionGroup::connect(config).await.unwrap();
    let s = SessionId::new("victim");
    let (pid, _) = whoami(&group.call(Some(&s), "whoami", json!({})).await.unwrap());
    // SAFETY: plain kill(2) of a process this test started.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    assert!(wait_dead(pid).await);
    // The dead connection is noticed (now or at the next call) and replaced;
    // a call is never silently re-sent.
    let mut new_pid = None;
    for _ in 0..2 {
        match group.call(Some(&s), "whoami", json!({})).await {
            Ok(out) => {
                new_pid = Some(whoami(&out).0);
                break;
            }
            Err(e) => assert!(e.is_connection_lost(), "{e:?}"),
        }
    }
    let new_pid = new_pid.expect("the session recovered");
    assert_ne!(new_pid, pid);
    assert!(
        wait_gone(pid).await,
        "the dead server {pid} was reaped once replaced"
    );
    group.shutdown().await;
}

#[tokio::test]
async fn one_session_id_under_two_principals_is_two_servers_and_neither_reaches_the_other() {
    let group = FunctionGroup::connect(config(demo_server())).await.unwrap();
    let s = SessionId::new("chat-7");
    let out = group
        .call_as(Some(&s), Some("alice"), "whoami", json!({}))
        .await
        .unwrap();
    let (alice, _) = whoami(&out);
    let mallory = group
        .call_as(Some(&s), Some("mallory"), "whoami", json!({}))
        .await
        .unwrap();
    let (mallory, calls) = whoami(&mallory);
    assert_ne!(mallory, alice, "mallory gets a server of her own");
    assert_eq!(calls, 1);
    let nobody = group.call(Some(&s), "whoami", json!({})).await.unwrap();
    assert!(
        ![alice, mallory].contains(&whoami(&nobody).0),
        "no principal is a namespace of its own"
    );
    let again = group
        .call_as(Some(&s), Some("alice"), "whoami", json!({}))
        .await
        .unwrap();
    assert_eq!(
        whoami(&again),
        (alice, 2),
        "mallory's call never reached alice's server"
    );
    let lease = group.lease_as(&s, Some("mallory")).await.unwrap();
    assert_eq!(lease.key().principal(), Some("mallory"));
    drop(lease);
    group.ping_as(Some(&s), Some("alice")).await.unwrap();
    assert_eq!(group.session_count(), 4, "base, alice, mallory, none");
    group.shutdown().await;
}

#[tokio::test]
async fn over_streamable_http_each_session_gets_its_own_server_session() {
    let server = support::demo_http_server();
    // Server-side session state is the 2025 era's (`Mcp-Session-Id`).
    let mut config = config(ServerConfig::streamable_http(server.url("/mcp")));
    config.protocol_version = Some("2025-11-25".into());
    let group = FunctionGroup::connect(config).await.unwrap();
    let alice = SessionId::new("alice");
    let bob = SessionId::new("bob");

    let echoed = group
        .call(Some(&alice), "echo", json!({"message": "over http"}))
        .await
        .unwrap();
    group.call(Some(&alice), "whoami", json!({})).await.unwrap();
    let (alice_pid, alice_calls) =
        whoami(&group.call(Some(&alice), "whoami", json!({})).await.unwrap());
    let (bob_pid, bob_calls) = whoami(&group.call(Some(&bob), "whoami", json!({})).await.unwrap());

    assert_eq!(echoed.to_text(), "Echo: over http");
    assert_eq!(
        alice_pid, bob_pid,
        "one server process serves every session"
    );
    assert_eq!(
        (alice_calls, bob_calls),
        (2, 1),
        "each MCP session has its own server-side state"
    );
    group.shutdown().await;
}

#[tokio::test]
async fn over_streamable_http_in_the_modern_era_no_request_carries_server_side_state() {
    let server = support::demo_http_server();
    let group = FunctionGroup::connect(config(ServerConfig::streamable_http(server.url("/mcp"))))
        .await
        .unwrap();
    assert_eq!(group.era(), Some(mcp_group::core::Era::Modern));
    let alice = SessionId::new("alice");
    let bob = SessionId::new("bob");
    group.call(Some(&alice), "whoami", json!({})).await.unwrap();
    let (_, alice_calls) = whoami(&group.call(Some(&alice), "whoami", json!({})).await.unwrap());
    let (_, bob_calls) = whoami(&group.call(Some(&bob), "whoami", json!({})).await.unwrap());
    assert_eq!(
        (alice_calls, bob_calls),
        (1, 1),
        "2026-07-28 has no protocol session: every request stands alone"
    );
    group.shutdown().await;
}

/// Answers every question with the session's own name, and records who
/// was asked.
struct AnswerWithSession(std::sync::Mutex<Vec<mcp_group::core::SessionKey>>);

#[mcp_group::core::async_trait]
impl mcp_group::core::Elicitation for AnswerWithSession {
    async fn elicit(
        &self,
        session: &mcp_group::core::SessionKey,
        _message: &str,
        _schema: &mcp_group::core::JsonObject,
    ) -> mcp_group::core::ElicitationAnswer {
        self.0.lock().unwrap().push(session.clone());
        let name = session.session().name().unwrap_or_default().to_owned();
        let mut content = mcp_group::core::JsonObject::new();
        content.insert("answer".into(), json!(name));
        mcp_group::core::ElicitationAnswer::Accept(content)
    }
}

#[tokio::test]
async fn one_elicitation_handler_answers_both_eras_for_the_session_that_asked() {
    for (era, expected) in [
        ("legacy", mcp_group::core::Era::Legacy),
        ("modern", mcp_group::core::Era::Modern),
    ] {
        let handler = std::sync::Arc::new(AnswerWithSession(Default::default()));
        let config = config(ServerConfig::stdio(
            support::BIN,
            ["demo-server", "--era", era],
        ));
        let options = config
            .client_options()
            .unwrap()
            .with_elicitation(handler.clone());
        let group = FunctionGroup::connect_with(config, options).await.unwrap();
        for name in ["alice", "bob"] {
            let out = group
                .call_as(Some(&SessionId::new(name)), Some("p"), "ask", json!({}))
                .await
                .unwrap();
            assert_eq!(out.to_text(), format!("You answered: {name}"), "{era}");
        }
        assert_eq!(group.era(), Some(expected));
        let asked: Vec<String> = handler
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|key| {
                assert_eq!(key.principal(), Some("p"));
                key.session().name().unwrap_or_default().to_owned()
            })
            .collect();
        assert_eq!(asked, ["alice", "bob"], "{era}");
        group.shutdown().await;
    }
}

#[tokio::test]
async fn over_streamable_http_a_modern_sessions_slow_first_call_does_not_hold_up_its_next() {
    let server = ServerProcess::start(
        support::BIN,
        &[
            "demo-server",
            "--http",
            "127.0.0.1:{port}",
            "--era",
            "modern",
        ],
        None,
    );
    let group = std::sync::Arc::new(
        FunctionGroup::connect(config(ServerConfig::streamable_http(server.url("/mcp"))))
            .await
            .unwrap(),
    );
    // The default session found the server modern; "b" is a later session.
    let b = SessionId::new("b");
    let slow = tokio::spawn({
        let group = group.clone();
        let b = b.clone();
        async move { group.call(Some(&b), "sleep", json!({"ms": 3000})).await }
    });
    // Wait until "b" is connected and its slow call holds its lease.
    while !group
        .peek_session(&b)
        .is_some_and(|info| info.connection_id.is_some() && info.ref_count > 0)
    {
        tokio::task::yield_now().await;
    }
    let echo = tokio::time::timeout(
        Duration::from_millis(1500),
        group.call(Some(&b), "echo", json!({"message": "meanwhile"})),
    )
    .await
    .expect("the session's second call is not queued behind its first")
    .unwrap();
    assert_eq!(echo.to_text(), "Echo: meanwhile");
    slow.await.unwrap().unwrap();
    group.shutdown().await;
}

#[tokio::test]
async fn a_server_that_was_down_at_first_is_not_taken_for_a_legacy_one() {
    use mcp_group::core::{Era, Transport};
    let port = mcp_group_test_kit::free_port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let transport = mcp_group::http::StreamableHttpTransport::new(
        mcp_group::http::HttpConfig::new(url.clone()).unwrap(),
    )
    .unwrap();
    let key = SessionId::new("a").into();
    assert!(
        transport.connect(&key).await.is_err(),
        "nothing listens yet"
    );
    assert_eq!(
        transport.era(),
        None,
        "a refused connection teaches nothing"
    );

    let _server = support::demo_http_server_on_era(port, "modern");
    let connection = transport.connect(&key).await.unwrap();
    assert_eq!(connection.era(), Some(Era::Modern));
    assert_eq!(transport.era(), Some(Era::Modern));
    connection.close().await;
}

#[tokio::test]
async fn a_modern_sessions_call_carries_its_parameter_headers_though_it_never_listed_tools() {
    let server = support::demo_http_server_on_era(mcp_group_test_kit::free_port(), "modern");
    let group = FunctionGroup::connect(config(ServerConfig::streamable_http(server.url("/mcp"))))
        .await
        .unwrap();
    for session in [None, Some(SessionId::new("alice"))] {
        let out = group
            .call(session.as_ref(), "region", json!({"region": "eu-west1"}))
            .await
            .unwrap();
        assert_eq!(
            out.to_text(),
            "eu-west1 header=eu-west1",
            "session {session:?}: Mcp-Param-Region mirrors the argument"
        );
    }
    group.shutdown().await;
}
