//! Property tests: whatever a server sends — arbitrary bytes in place of the
//! handshake, arbitrary JSON as a tool result, arbitrary tool lists with
//! arbitrary names and schemas — the client never panics and never hangs:
//! every call ends in a value or a typed error.
//!
//! The server here is a script speaking raw line-delimited JSON-RPC over an
//! in-memory pipe (no rmcp on its side, so it can say anything). Time is
//! paused, so the timeouts that end the silent cases cost nothing. More cases:
//! `PROPTEST_CASES=10000 cargo test --test fuzz` (or `cargo xtask fuzz`).
#![allow(clippy::unwrap_used)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use mcp_group::{
    FunctionGroup, McpClientConfig, ServerConfig, SessionId,
    core::{Connection, DynTransport, Error, ServerDescription, Transport, async_trait},
};
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// What the script answers to each request, in order.
#[derive(Debug, Clone)]
enum Reply {
    /// These bytes, then a newline.
    Raw(Vec<u8>),
    /// `{"jsonrpc":"2.0","id":<the request's id>,"result":…}`.
    Result(Value),
    /// Several of these, in order, as the answer to one request.
    Many(Vec<Reply>),
}

impl Reply {
    fn bytes(self, id: &Value, out: &mut Vec<u8>) {
        match self {
            Reply::Raw(bytes) => out.extend(bytes),
            Reply::Result(result) => out.extend(
                serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "result": result})).unwrap(),
            ),
            Reply::Many(replies) => {
                for reply in replies {
                    reply.bytes(id, out);
                }
                return;
            }
        }
        out.push(b'\n');
    }
}

/// The scripts speak the 2025 era: the `initialize` handshake, first.
async fn establish_legacy(
    (read, write): (
        tokio::io::ReadHalf<tokio::io::DuplexStream>,
        tokio::io::WriteHalf<tokio::io::DuplexStream>,
    ),
) -> Result<Connection, mcp_group::core::Error> {
    let options = mcp_group::core::ClientOptions::new()
        .with_protocol_version("2025-11-25")
        .unwrap();
    Connection::establish_with(
        (read, write),
        "script",
        &options,
        &mcp_group::core::SessionKey::default_session(),
    )
    .await
}

fn init_ok() -> Reply {
    Reply::Result(json!({
        "protocolVersion": "2025-11-25",
        "capabilities": {"tools": {"listChanged": true}},
        "serverInfo": {"name": "script", "version": "0"}
    }))
}

/// Serves `script` on one end of a pipe; returns the other end's halves.
fn scripted(
    script: Vec<Reply>,
) -> (
    tokio::io::ReadHalf<tokio::io::DuplexStream>,
    tokio::io::WriteHalf<tokio::io::DuplexStream>,
) {
    let (client, server) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        let (read, mut write) = tokio::io::split(server);
        let mut lines = BufReader::new(read).lines();
        let mut script = script.into_iter();
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(request) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let Some(id) = request.get("id").cloned() else {
                continue; // a notification
            };
            let Some(reply) = script.next() else {
                continue; // out of script: silence
            };
            let mut bytes = Vec::new();
            reply.bytes(&id, &mut bytes);
            if write.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    tokio::io::split(client)
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

// ------------------------------------------------------------- strategies

/// JSON values, with keys and strings biased towards MCP's field names and
/// content types so that the decoders' real branches are reached.
fn json_value() -> impl Strategy<Value = Value> {
    let word = prop_oneof![
        3 => prop::sample::select(vec![
            "type", "text", "image", "audio", "resource", "resource_link", "data", "mimeType",
            "uri", "name", "title", "description", "annotations", "_meta", "content",
            "isError", "structuredContent", "inputSchema", "outputSchema", "properties",
            "required", "items", "$ref", "$defs", "enum", "object", "string", "integer",
            "blob", "tools", "nextCursor", "size", "icons",
        ])
        .prop_map(str::to_owned),
        1 => ".{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        word.clone().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((word.clone(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// A tool result: mostly well-formed, with arbitrary parts.
fn tool_result() -> impl Strategy<Value = Value> {
    let text = ".{0,40}";
    let block = prop_oneof![
        4 => text.prop_map(|t| json!({"type": "text", "text": t})),
        1 => ("[A-Za-z0-9+/=]{0,24}", text).prop_map(|(data, mime)| {
            json!({"type": "image", "data": data, "mimeType": mime})
        }),
        1 => ("[A-Za-z0-9+/=]{0,24}", text).prop_map(|(data, mime)| {
            json!({"type": "audio", "data": data, "mimeType": mime})
        }),
        1 => (text, text).prop_map(|(uri, t)| {
            json!({"type": "resource", "resource": {"uri": uri, "text": t}})
        }),
        1 => (text, text).prop_map(|(uri, name)| {
            json!({"type": "resource_link", "uri": uri, "name": name})
        }),
        1 => json_value(),
    ];
    prop_oneof![
        6 => (
            prop::collection::vec(block, 0..4),
            prop::option::of(any::<bool>()),
            prop::option::of(json_value()),
        )
            .prop_map(|(content, is_error, structured)| {
                let mut result = json!({"content": content});
                if let Some(is_error) = is_error {
                    result["isError"] = json!(is_error);
                }
                if let Some(structured) = structured {
                    result["structuredContent"] = structured;
                }
                result
            }),
        1 => json_value(),
    ]
}

/// A JSON schema: mostly an object schema with arbitrary parts.
fn schema() -> impl Strategy<Value = Value> {
    let property = prop_oneof![
        prop::sample::select(vec![
            "string", "integer", "number", "boolean", "object", "array", "null"
        ])
        .prop_map(|t| json!({"type": t})),
        json_value(),
    ];
    prop_oneof![
        4 => (
            prop::collection::vec(("[a-z]{1,6}", property), 0..4),
            prop::collection::vec("[a-z]{1,6}", 0..3),
        )
            .prop_map(|(properties, required)| {
                let properties: serde_json::Map<String, Value> = properties.into_iter().collect();
                json!({"type": "object", "properties": properties, "required": required})
            }),
        1 => json_value(),
    ]
}

/// A schema whose properties point into a graph of `$defs` joined by
/// `$ref`, `allOf`, `anyOf` and `oneOf` — cycles and wide fan-out included.
fn ref_graph_schema() -> impl Strategy<Value = Value> {
    let node = |defs: usize| {
        let target = (0..defs).prop_map(|i| json!({"$ref": format!("#/$defs/d{i}")}));
        let refs = prop::collection::vec(target.clone(), 1..9);
        prop_oneof![
            refs.clone().prop_map(|r| json!({"allOf": r})),
            refs.clone().prop_map(|r| json!({"anyOf": r})),
            refs.prop_map(|r| json!({"oneOf": r})),
            target,
            prop::sample::select(vec!["string", "integer", "null", "object"])
                .prop_map(|t| json!({"type": t})),
        ]
    };
    (1usize..7)
        .prop_flat_map(move |defs| {
            (
                prop::collection::vec(node(defs), defs),
                prop::collection::vec(0..defs, 1..4),
            )
        })
        .prop_map(|(nodes, properties)| {
            let defs: serde_json::Map<String, Value> = nodes
                .into_iter()
                .enumerate()
                .map(|(i, node)| (format!("d{i}"), node))
                .collect();
            let properties: serde_json::Map<String, Value> = properties
                .into_iter()
                .enumerate()
                .map(|(i, d)| (format!("p{i}"), json!({"$ref": format!("#/$defs/d{d}")})))
                .collect();
            json!({"type": "object", "properties": properties, "$defs": defs})
        })
}

/// A schema whose properties point into a chain of `$defs` where each
/// `d_i` combines several `$ref`s to `d{i+1}`: a DAG with as many paths as
/// the fan-out to the chain's length, cycle-free fan-out that the
/// validator would walk path by path.
fn ref_dag_schema() -> impl Strategy<Value = Value> {
    (
        1usize..48,
        2usize..5,
        prop::sample::select(vec!["allOf", "anyOf", "oneOf"]),
        prop::sample::select(vec!["string", "integer", "null", "object"]),
    )
        .prop_map(|(depth, fan_out, combinator, leaf)| {
            let mut defs = serde_json::Map::new();
            for i in 0..depth {
                let next = json!({"$ref": format!("#/$defs/d{}", i + 1)});
                defs.insert(format!("d{i}"), json!({combinator: vec![next; fan_out]}));
            }
            defs.insert(format!("d{depth}"), json!({"type": leaf}));
            let properties: serde_json::Map<String, Value> = (0..3)
                .map(|i| (format!("p{i}"), json!({"$ref": "#/$defs/d0"})))
                .collect();
            json!({"type": "object", "properties": properties, "$defs": defs})
        })
}

/// A tool list: names from anywhere, schemas arbitrary.
fn tool_list() -> impl Strategy<Value = Value> {
    let name = prop_oneof![3 => "[a-z_]{1,12}", 1 => ".{0,70}"];
    let tool = (name, schema(), prop::option::of(".{0,30}")).prop_map(
        |(name, schema, description)| {
            json!({"name": name, "inputSchema": schema, "description": description})
        },
    );
    prop_oneof![
        6 => prop::collection::vec(tool, 0..5).prop_map(|tools| json!({"tools": tools})),
        1 => json_value(),
    ]
}

/// Arguments: mostly objects.
fn arguments() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::collection::vec(("[a-z]{1,6}", json_value()), 0..4)
            .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        1 => json_value(),
    ]
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(96),
        ..ProptestConfig::default()
    }
}

// ------------------------------------------------------------- properties

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_in_place_of_the_handshake_end_in_a_value_or_an_error(
        lines in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..4),
        then_valid in any::<bool>(),
    ) {
        // The garbage answers `initialize`, followed (or not) by the real
        // answer: the client must skip it or fail, never stall or panic.
        let mut answer: Vec<Reply> = lines.into_iter().map(Reply::Raw).collect();
        if then_valid {
            answer.push(init_ok());
        }
        let script = vec![Reply::Many(answer)];
        paused_runtime().block_on(async {
            let established = tokio::time::timeout(
                Duration::from_secs(30),
                establish_legacy(scripted(script)),
            )
            .await;
            if let Ok(Ok(connection)) = established {
                connection.close().await;
            }
        });
    }

    #[test]
    fn any_tool_result_converts_or_is_a_typed_error(result in tool_result()) {
        paused_runtime().block_on(async {
            let connection = establish_legacy(scripted(vec![init_ok(), Reply::Result(result)]))
                .await
                .unwrap();
            match connection.call_tool("t", serde_json::Map::new(), Duration::from_secs(5)).await {
                Ok(output) => {
                    let _ = output.to_text();
                    let _ = output.is_error();
                    let _ = format!("{output:?}");
                }
                Err(error) => {
                    let _ = error.to_string();
                }
            }
            connection.close().await;
        });
    }

    #[test]
    fn schemas_with_ref_cycles_or_fan_out_cost_bounded_work_per_call(
        schema in prop_oneof![ref_graph_schema(), ref_dag_schema()],
        nulls in prop::collection::vec(any::<bool>(), 3),
    ) {
        let tools = json!({"tools": [{"name": "t", "inputSchema": schema}]});
        let arguments: serde_json::Map<String, Value> = nulls
            .iter()
            .enumerate()
            .map(|(i, null)| (format!("p{i}"), if *null { Value::Null } else { json!("v") }))
            .collect();
        paused_runtime().block_on(async {
            let transport: DynTransport = Arc::new(Script(Arc::new(Mutex::new(vec![
                init_ok(),
                Reply::Result(tools),
                Reply::Result(json!({"content": []})),
            ]))));
            let mut config =
                McpClientConfig::new(ServerConfig::stdio("unused", Vec::<String>::new()));
            config.tool_call_timeout = Duration::from_secs(5);
            config.reconnect_enabled = false;
            let group = FunctionGroup::with_transport(transport, config).await.unwrap();
            let _ = group
                .call(Some(&SessionId::new("fuzz")), "t", Value::Object(arguments))
                .await;
            group.shutdown().await;
        });
    }

    #[test]
    fn any_tool_list_builds_a_group_or_fails_typed_and_calls_never_panic(
        tools in tool_list(),
        arguments in arguments(),
        result in tool_result(),
    ) {
        paused_runtime().block_on(async {
            let transport: DynTransport = Arc::new(Script(Arc::new(Mutex::new(vec![
                init_ok(),
                Reply::Result(tools),
                Reply::Result(result),
            ]))));
            let mut config =
                McpClientConfig::new(ServerConfig::stdio("unused", Vec::<String>::new()));
            config.tool_call_timeout = Duration::from_secs(5);
            config.reconnect_enabled = false;
            let Ok(group) = FunctionGroup::with_transport(transport, config).await else {
                return;
            };
            let names: Vec<String> = group.functions().iter().map(|t| t.name().to_owned()).collect();
            for name in names {
                let _ = group
                    .call(Some(&SessionId::new("fuzz")), &name, arguments.clone())
                    .await;
            }
            group.shutdown().await;
        });
    }
}

/// Every connection runs the same script.
struct Script(Arc<Mutex<Vec<Reply>>>);

#[async_trait]
impl Transport for Script {
    async fn connect(&self, _session: &mcp_group::SessionKey) -> Result<Connection, Error> {
        let script = self.0.lock().unwrap().clone();
        establish_legacy(scripted(script)).await
    }

    fn description(&self) -> ServerDescription {
        ServerDescription {
            transport: "in-memory",
            endpoint: "script".into(),
        }
    }
}
