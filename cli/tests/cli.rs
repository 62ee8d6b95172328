//! The `mcp-group` binary, end to end, against its own demo server.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output, Stdio};

use mcp_group_test_kit::{free_port, process::run_with_input};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mcp-group");

fn demo_server() -> String {
    format!("{BIN} demo-server")
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    run_with_input(Command::new(BIN).args(args).stderr(Stdio::piped()), stdin)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn tools_list_prints_names_and_descriptions() {
    let out = run(&["tools", "list", "--stdio", &demo_server()], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let names: Vec<&str> = text
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
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
    assert!(text.contains("echo\tEcho the message back"), "{text}");
}

#[test]
fn tools_list_shows_aliases_with_the_server_name() {
    let dir = std::env::temp_dir().join(format!("mcp-group-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("alias.toml");
    std::fs::write(
        &config,
        format!(
            "exclude = [\"s*\"]\n[server]\ntransport = \"stdio\"\ncommand = {BIN:?}\nargs = [\"demo-server\"]\n\
             [tool_overrides.add]\nalias = \"add_numbers\"\ndescription = \"Adds.\"\n"
        ),
    )
    .unwrap();
    let out = run(
        &["tools", "list", "--config", config.to_str().unwrap()],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("add_numbers (server name: add)\tAdds.\n"),
        "{text}"
    );
    assert!(!text.contains("sleep"), "excluded: {text}");
    let out = run(
        &[
            "tools",
            "call",
            "add_numbers",
            "--args",
            r#"{"a":1,"b":2}"#,
            "--config",
            config.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(stdout(&out), "3\n", "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn tools_list_json_is_machine_readable() {
    let out = run(
        &["tools", "list", "--json", "--stdio", &demo_server()],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let tools: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(tools.len(), 10);
    assert_eq!(tools[3]["name"], "echo");
    assert_eq!(
        tools[3]["input_schema"]["required"],
        serde_json::json!(["message"])
    );
}

#[test]
fn tools_list_detail_shows_description_and_schema() {
    let out = run(
        &["tools", "list", "--detail", "--stdio", &demo_server()],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("echo\n  Echo the message back"), "{text}");
    assert!(text.contains("\"required\""), "{text}");
}

#[test]
fn tools_call_prints_the_result() {
    let out = run(
        &[
            "tools",
            "call",
            "echo",
            "--args",
            r#"{"message":"hi"}"#,
            "--session",
            "s1",
            "--stdio",
            &demo_server(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Echo: hi\n");
}

#[test]
fn a_tool_error_exits_non_zero_with_one_line() {
    let out = run(&["tools", "call", "fail", "--stdio", &demo_server()], None);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        "error: tool `fail` reported an error: the fail tool always fails\n"
    );
}

#[test]
fn bad_input_exits_non_zero_with_one_line() {
    let out = run(
        &[
            "tools",
            "call",
            "echo",
            "--args",
            "{not json",
            "--stdio",
            &demo_server(),
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).starts_with("error: --args is not valid JSON"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1);

    let out = run(&["tools", "call", "nope", "--stdio", &demo_server()], None);
    assert!(!out.status.success());
    assert_eq!(stderr(&out), "error: unknown tool `nope`\n");
}

#[test]
fn ping_reports_a_round_trip_time() {
    let out = run(&["ping", "--stdio", &demo_server()], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("pong from "), "{}", stdout(&out));
    assert!(stdout(&out).trim_end().ends_with(" ms"));
}

/// `ping --url <url> <transport…>` where nothing listens on the port: a
/// failure, said in one line naming the URL.
fn assert_unreachable_is_one_line(path: &str, transport: &[&str]) {
    let url = format!("http://127.0.0.1:{}{path}", free_port());
    let mut args = vec!["ping", "--url", &url];
    args.extend(transport);
    let out = run(&args, None);
    assert!(!out.status.success());
    let expected = format!("error: could not connect to the MCP server at {url}");
    assert!(stderr(&out).starts_with(&expected), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1);
}

#[test]
fn an_unreachable_http_server_is_a_one_line_connect_error() {
    assert_unreachable_is_one_line("/mcp", &[]);
}

#[test]
fn an_unreachable_sse_server_is_a_one_line_connect_error() {
    assert_unreachable_is_one_line("/sse", &["--transport", "sse"]);
}

#[test]
fn batch_runs_sessions_concurrently_and_in_order_within_each() {
    let mut input = String::new();
    for i in 1..=3 {
        for s in ["a", "b"] {
            input.push_str(&format!(
                "{{\"session\":\"{s}\",\"tool\":\"whoami\",\"args\":{{}}}}\n"
            ));
            let _ = i;
        }
    }
    input.push_str("{\"session\":\"a\",\"tool\":\"fail\"}\n");
    input.push_str("not json\n");
    let out = run(&["batch", "--stdio", &demo_server()], Some(&input));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8, "{}", stdout(&out));
    assert_eq!(out.status.code(), Some(2), "some lines failed");
    for s in ["a", "b"] {
        let counts: Vec<u64> = lines
            .iter()
            .filter(|l| l["session"] == s && l["ok"] == true)
            .map(|l| {
                let who: Value = serde_json::from_str(l["result"].as_str().unwrap()).unwrap();
                who["calls"].as_u64().unwrap()
            })
            .collect();
        assert_eq!(
            counts,
            [1, 2, 3],
            "session {s}: in order, on one connection"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l["tool"] == "fail" && l["ok"] == false)
    );
    assert!(lines.iter().any(|l| l["line"] == 8 && l["ok"] == false));
}

#[test]
fn demo_runs_and_shows_distinct_connections() {
    let out = run(&["demo"], None);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("distinct server processes:  3"), "{text}");
    assert!(
        text.contains("OK: every session had its own MCP client."),
        "{text}"
    );
}

/// A server whose every text carries terminal control sequences.
fn hostile_server() -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hostile_stdio_server.py");
    format!("python3 {}", script.display())
}

fn has_control(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
}

#[test]
fn human_output_strips_terminal_control_sequences_from_server_text() {
    let server = hostile_server();
    let list = run(&["tools", "list", "--stdio", &server], None);
    assert!(list.status.success(), "{}", stderr(&list));
    let text = stdout(&list);
    assert!(text.starts_with("shout\tloud"), "{text:?}");
    assert!(!has_control(&text), "tools list: {text:?}");

    let detail = run(&["tools", "list", "--detail", "--stdio", &server], None);
    assert!(!has_control(&stdout(&detail)), "{:?}", stdout(&detail));

    let call = run(&["tools", "call", "shout", "--stdio", &server], None);
    assert!(call.status.success(), "{}", stderr(&call));
    assert!(stdout(&call).starts_with("out"), "{:?}", stdout(&call));
    assert!(
        !has_control(&stdout(&call)),
        "tools call: {:?}",
        stdout(&call)
    );

    let failed = run(
        &[
            "tools",
            "call",
            "shout",
            "--args",
            r#"{"fail":true}"#,
            "--stdio",
            &server,
        ],
        None,
    );
    assert!(!failed.status.success());
    assert!(stderr(&failed).contains("out"), "{:?}", stderr(&failed));
    assert!(
        !has_control(&stderr(&failed)),
        "error line: {:?}",
        stderr(&failed)
    );
}

#[test]
fn json_output_keeps_server_text_exact() {
    let out = run(
        &["tools", "list", "--json", "--stdio", &hostile_server()],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let tools: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        tools[0]["description"],
        "loud\u{1b}[2J\u{1b}]0;pwned\u{7}\u{9b}31mer"
    );
}

#[test]
fn batch_refuses_empty_and_overlong_session_ids_and_default_is_not_the_shared_session() {
    let long = "x".repeat(257);
    let input = format!(
        "{{\"session\":\"\",\"tool\":\"whoami\"}}\n\
         {{\"session\":\"{long}\",\"tool\":\"whoami\"}}\n\
         {{\"tool\":\"whoami\"}}\n\
         {{\"session\":\"default\",\"tool\":\"whoami\"}}\n"
    );
    let out = run(&["batch", "--stdio", &demo_server()], Some(&input));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    for number in [1, 2] {
        let bad = lines.iter().find(|l| l["line"] == number).unwrap();
        assert!(
            bad["error"]
                .as_str()
                .unwrap()
                .contains("invalid session id"),
            "{bad:?}"
        );
    }
    let pid = |session: &Value| -> u64 {
        let line = lines
            .iter()
            .find(|l| &l["session"] == session && l["ok"] == true)
            .unwrap();
        let who: Value = serde_json::from_str(line["result"].as_str().unwrap()).unwrap();
        who["pid"].as_u64().unwrap()
    };
    assert_ne!(
        pid(&Value::Null),
        pid(&Value::from("default")),
        "a line's \"default\" is a session of its own"
    );
}

#[test]
fn batch_lines_with_another_principal_are_another_session() {
    let input = "{\"session\":\"a\",\"principal\":\"alice\",\"tool\":\"whoami\"}\n\
                 {\"session\":\"a\",\"principal\":\"bob\",\"tool\":\"whoami\"}\n\
                 {\"session\":\"a\",\"tool\":\"whoami\"}\n\
                 {\"session\":\"a\",\"principal\":\"alice\",\"tool\":\"whoami\"}\n";
    let out = run(&["batch", "--stdio", &demo_server()], Some(input));
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    let who = |principal: Option<&str>| -> Vec<(u64, u64)> {
        lines
            .iter()
            .filter(|l| l["principal"].as_str() == principal)
            .map(|l| {
                let who: Value = serde_json::from_str(l["result"].as_str().unwrap()).unwrap();
                (who["pid"].as_u64().unwrap(), who["calls"].as_u64().unwrap())
            })
            .collect()
    };
    let (alice, bob, none) = (who(Some("alice")), who(Some("bob")), who(None));
    assert_eq!(alice.len(), 2);
    assert_eq!(
        (alice[0].1, alice[1].1),
        (1, 2),
        "alice's lines share one session, in order"
    );
    assert_eq!(alice[0].0, alice[1].0);
    let pids = [alice[0].0, bob[0].0, none[0].0];
    assert!(
        pids[0] != pids[1] && pids[1] != pids[2] && pids[0] != pids[2],
        "{pids:?}"
    );
}

#[test]
fn batch_reports_a_line_that_is_not_utf8_and_runs_the_rest() {
    use std::io::Write as _;
    let mut child = Command::new(BIN)
        .args(["batch", "--stdio", &demo_server()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = Vec::new();
    input.extend_from_slice(br#"{"session":"a","tool":"echo","args":{"message":"one"}}"#);
    input.extend_from_slice(b"\n{\"tool\":\"echo\",\"args\":{\"message\":\"\xff\xfe\"}}\n");
    input.extend_from_slice(br#"{"session":"a","tool":"echo","args":{"message":"three"}}"#);
    input.push(b'\n');
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let bad: Vec<&Value> = lines.iter().filter(|l| l["ok"] == false).collect();
    assert_eq!(bad.len(), 1, "{lines:?}");
    assert_eq!(bad[0]["line"], 2);
    assert!(
        bad[0]["error"].as_str().unwrap().contains("UTF-8"),
        "{bad:?}"
    );
    let results: Vec<&str> = lines.iter().filter_map(|l| l["result"].as_str()).collect();
    assert_eq!(results.len(), 2, "{lines:?}");
}

#[test]
fn a_nemo_agent_toolkit_workflow_runs_with_config_and_group() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-nat-workflow");
    std::fs::create_dir_all(&dir).unwrap();
    let workflow = dir.join("workflow.yml");
    std::fs::write(
        &workflow,
        format!(
            r#"
llms:
  nim_llm:
    _type: nim
    model_name: meta/llama-3.1-70b-instruct
function_groups:
  calc:
    _type: mcp_client
    server:
      transport: stdio
      command: {BIN:?}
      args: ["${{NAT_CLI_TEST_SERVER_ARG}}"]
    tool_overrides:
      add:
        alias: add_numbers
    include: [add_numbers]
  echo:
    _type: per_user_mcp_client
    server:
      transport: stdio
      command: {BIN:?}
      args: [demo-server]
workflow:
  _type: react_agent
  tool_names: [calc, echo]
  llm_name: nim_llm
"#
        ),
    )
    .unwrap();
    let workflow = workflow.to_str().unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("NAT_CLI_TEST_SERVER_ARG", "demo-server")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&[
        "tools",
        "call",
        "add_numbers",
        "--args",
        r#"{"a":1,"b":2}"#,
        "--config",
        workflow,
        "--group",
        "calc",
    ]);
    assert_eq!(stdout(&out), "3\n", "{}", stderr(&out));
    let out = run(&["tools", "list", "--config", workflow, "--group", "calc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out)
            .lines()
            .map(|l| l.split('\t').next().unwrap())
            .collect::<Vec<_>>(),
        ["add_numbers (server name: add)"]
    );

    // Two MCP function groups and no --group: the error lists them.
    let out = run(&["tools", "list", "--config", workflow]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ")
            && err.contains("`calc`, `echo`")
            && err.contains("--group NAME"),
        "{err}"
    );
    let out = run(&["tools", "list", "--config", workflow, "--group", "nope"]);
    assert!(
        stderr(&out).contains("no function group `nope`"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(dir);
}
