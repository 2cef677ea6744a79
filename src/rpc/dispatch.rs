//! Everything JSON-RPC 2.0 asks of a server that jsonrpsee's `raw_json_request` does not do:
//! parse errors, envelope validation, batches, notifications, and turning a handler panic into
//! an error reply instead of silence.

use super::Frame;
use super::outbox::Outbox;
use crate::error::{code, protocol_error};
use futures::FutureExt;
use jsonrpsee::{MethodCallback, RpcModule};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Subscription channel capacity handed to jsonrpsee (it panics on 0). A full channel makes
/// the subscription wait; the forwarder empties it into the byte-bounded outbox.
const SUBSCRIPTION_BUFFER: usize = 16;

/// Shut when the client unsubscribes, so no notification of that subscription follows the
/// unsubscribe reply.
type Gate = Arc<tokio::sync::Mutex<bool>>;

pub struct Dispatcher<Context> {
    module: RpcModule<Context>,
    methods: HashSet<&'static str>,
    subscribe: HashSet<&'static str>,
    unsubscribe: HashSet<&'static str>,
    gates: Mutex<HashMap<String, Gate>>,
}

/// What one input frame produced: the reply line, if one is owed, and the notification
/// streams of subscriptions it opened (to be forwarded after the reply is written).
pub struct Handled {
    pub line: Option<String>,
    streams: Vec<Subscription>,
}

struct Subscription {
    key: String,
    notifications: mpsc::Receiver<Box<RawValue>>,
}

struct One {
    line: Option<String>,
    stream: Option<Subscription>,
}

impl One {
    fn line(line: Option<String>) -> Self {
        One { line, stream: None }
    }
}

fn reply_error(id: Value, code: i32, message: &str, data: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": protocol_error(code, message, data)}).to_string()
}

impl<Context: Send + Sync + 'static> Dispatcher<Context> {
    pub fn new(module: RpcModule<Context>) -> Self {
        let methods: HashSet<&'static str> = module.method_names().collect();
        let kind = |wanted: fn(&MethodCallback) -> bool| -> HashSet<&'static str> {
            methods
                .iter()
                .copied()
                .filter(|name| module.method(name).is_some_and(wanted))
                .collect()
        };
        let subscribe = kind(|m| matches!(m, MethodCallback::Subscription(_)));
        let unsubscribe = kind(|m| matches!(m, MethodCallback::Unsubscription(_)));
        Dispatcher {
            module,
            methods,
            subscribe,
            unsubscribe,
            gates: Mutex::new(HashMap::new()),
        }
    }

    /// Handles one frame and writes what it produced through `outbox`: the reply first, then
    /// (on tasks of their own) the notifications of any subscription it opened.
    pub async fn serve(self: &Arc<Self>, frame: Frame, outbox: &Outbox) {
        let handled = self.handle(frame).await;
        // Gates exist before the client can learn the ids, so an unsubscribe always finds one.
        let gates: Vec<Gate> = handled
            .streams
            .iter()
            .map(|stream| {
                let gate = Gate::default();
                self.gates().insert(stream.key.clone(), gate.clone());
                gate
            })
            .collect();
        if let Some(line) = handled.line {
            outbox.send(line).await;
        }
        for (stream, gate) in handled.streams.into_iter().zip(gates) {
            tokio::spawn(self.clone().forward(stream, gate, outbox.clone()));
        }
    }

    fn gates(&self) -> std::sync::MutexGuard<'_, HashMap<String, Gate>> {
        self.gates.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn forward(self: Arc<Self>, mut stream: Subscription, gate: Gate, outbox: Outbox) {
        while let Some(notification) = stream.notifications.recv().await {
            let stopped = gate.lock().await;
            if *stopped || !outbox.send(notification.get().to_owned()).await {
                break;
            }
        }
        self.gates().remove(&stream.key);
    }

    /// Subscriptions whose notifications are being forwarded now.
    pub fn open_subscriptions(&self) -> usize {
        self.gates().len()
    }

    /// The reply line for one input frame (None when nothing is owed: notifications) and the
    /// subscriptions it opened.
    pub async fn handle(&self, frame: Frame) -> Handled {
        let (line, streams) = self.handle_frame(frame).await;
        Handled { line, streams }
    }

    async fn handle_frame(&self, frame: Frame) -> (Option<String>, Vec<Subscription>) {
        match frame {
            Frame::TooLong { bytes } => (
                Some(reply_error(
                    Value::Null,
                    code::INVALID_REQUEST,
                    "Invalid request: line too long",
                    json!({"reason": format!("the line has {bytes} bytes, over the configured maximum (worker.max_line_bytes)")}),
                )),
                Vec::new(),
            ),
            Frame::Line(bytes) => self.handle_line(&bytes).await,
        }
    }

    async fn handle_line(&self, bytes: &[u8]) -> (Option<String>, Vec<Subscription>) {
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => {
                return one(reply_error(
                    Value::Null,
                    code::PARSE_ERROR,
                    "Parse error: invalid UTF-8",
                    json!({"reason": format!("invalid UTF-8 at byte {}", error.valid_up_to())}),
                ));
            }
        };
        let parsed: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(error) => {
                return one(reply_error(
                    Value::Null,
                    code::PARSE_ERROR,
                    "Parse error",
                    json!({"reason": error.to_string()}),
                ));
            }
        };
        match parsed {
            Value::Array(items) if items.is_empty() => one(reply_error(
                Value::Null,
                code::INVALID_REQUEST,
                "Invalid request: empty batch",
                json!({"reason": "a batch must contain at least one request"}),
            )),
            Value::Array(items) => {
                let replies =
                    futures::future::join_all(items.into_iter().map(|item| self.handle_one(item)))
                        .await;
                let mut lines = Vec::new();
                let mut streams = Vec::new();
                for reply in replies {
                    lines.extend(reply.line);
                    streams.extend(reply.stream);
                }
                (
                    (!lines.is_empty()).then(|| format!("[{}]", lines.join(","))),
                    streams,
                )
            }
            single => {
                let reply = self.handle_one(single).await;
                (reply.line, reply.stream.into_iter().collect())
            }
        }
    }

    async fn handle_one(&self, request: Value) -> One {
        let Value::Object(mut object) = request else {
            return One::line(Some(invalid(
                Value::Null,
                "a request must be a JSON object",
            )));
        };
        let id = object.get("id").cloned();
        let reply_id = match &id {
            None | Some(Value::Null | Value::String(_)) => id.clone().unwrap_or(Value::Null),
            Some(Value::Number(n)) if n.is_u64() => id.clone().unwrap_or(Value::Null),
            Some(_) => {
                return One::line(Some(invalid(
                    Value::Null,
                    "`id` must be a string, a non-negative integer or null",
                )));
            }
        };
        if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return One::line(Some(invalid(reply_id, "`jsonrpc` must be \"2.0\"")));
        }
        let Some(method) = object
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            return One::line(Some(invalid(reply_id, "`method` must be a string")));
        };
        if let Some(params) = object.get("params")
            && !(params.is_object() || params.is_array())
        {
            return One::line(Some(invalid(
                reply_id,
                "`params` must be an object or an array",
            )));
        }
        let is_notification = id.is_none();
        if !self.methods.contains(method.as_str()) {
            return One::line((!is_notification).then(|| {
                reply_error(
                    reply_id,
                    code::METHOD_NOT_FOUND,
                    "Method not found",
                    json!({"method": method, "reason": "no such method; call `initialize` for the tool list"}),
                )
            }));
        }
        if is_notification {
            // jsonrpsee only runs requests with an id: lend it one and drop the reply.
            object.insert("id".into(), Value::from(0));
        }
        if self.unsubscribe.contains(method.as_str()) {
            // jsonrpsee reads the id from a one-element array; accept `{"subscription": id}` too.
            let key = match object.get("params") {
                Some(Value::Array(items)) => items.first().cloned(),
                Some(Value::Object(named)) => named.get("subscription").cloned(),
                _ => None,
            };
            if let Some(key) = key {
                let gate = self.gates().get(&key.to_string()).cloned();
                if let Some(gate) = gate {
                    *gate.lock().await = true;
                }
                object.insert("params".into(), Value::Array(vec![key]));
            }
        }
        let text = Value::Object(normalise(object)).to_string();
        let call = AssertUnwindSafe(self.module.raw_json_request(&text, SUBSCRIPTION_BUFFER))
            .catch_unwind();
        let mut stream = None;
        let reply = match call.await {
            Ok(Ok((response, notifications))) => {
                let line = response.get().to_owned();
                if self.subscribe.contains(method.as_str()) && !is_notification {
                    // The result of a successful subscribe call is the subscription id.
                    let key = serde_json::from_str::<Value>(&line)
                        .ok()
                        .and_then(|reply| reply.get("result").map(Value::to_string));
                    stream = key.map(|key| Subscription { key, notifications });
                }
                line
            }
            Ok(Err(error)) => invalid(reply_id, &error.to_string()),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                tracing::error!(%method, panic = %what, "handler panicked");
                reply_error(
                    reply_id,
                    code::INTERNAL,
                    "Internal error",
                    json!({"reason": format!("the `{method}` handler failed: {what}")}),
                )
            }
        };
        One {
            line: (!is_notification).then_some(reply),
            stream,
        }
    }
}

fn one(line: String) -> (Option<String>, Vec<Subscription>) {
    (Some(line), Vec::new())
}

/// Drops members JSON-RPC does not define, so jsonrpsee's stricter parsing cannot refuse
/// a request that the spec allows.
fn normalise(mut object: Map<String, Value>) -> Map<String, Value> {
    object.retain(|key, _| matches!(key.as_str(), "jsonrpc" | "id" | "method" | "params"));
    object
}

fn invalid(id: Value, reason: &str) -> String {
    reply_error(
        id,
        code::INVALID_REQUEST,
        "Invalid request",
        json!({"reason": reason}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::from_str;

    fn dispatcher() -> Dispatcher<()> {
        let mut module = RpcModule::new(());
        module
            .register_method("echo", |params, _, _| {
                params.as_str().unwrap_or("null").to_owned()
            })
            .unwrap();
        module
            .register_method(
                "boom",
                |_, _, _| -> Result<(), jsonrpsee::types::ErrorObjectOwned> { panic!("kaboom") },
            )
            .unwrap();
        module
            .register_async_method("async_boom", |_, _, _| async move {
                if true {
                    panic!("async kaboom");
                }
                Ok::<(), jsonrpsee::types::ErrorObjectOwned>(())
            })
            .unwrap();
        Dispatcher::new(module)
    }

    async fn reply(input: &str) -> Option<Value> {
        dispatcher()
            .handle(Frame::Line(input.as_bytes().to_vec()))
            .await
            .line
            .map(|line| from_str(&line).unwrap())
    }

    #[tokio::test]
    async fn table_of_envelopes() {
        let cases: &[(&str, Option<(i32, Value)>)] = &[
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"echo","params":{"a":1}}"#,
                None,
            ),
            (r#"{"jsonrpc":"2.0","method":"echo"}"#, None),
            (r#"{"jsonrpc":"2.0","method":"missing"}"#, None),
            (r#"{"id":1,"method":"echo"}"#, Some((-32600, json!(1)))),
            (
                r#"{"jsonrpc":"1.0","id":"x","method":"echo"}"#,
                Some((-32600, json!("x"))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":2,"method":5}"#,
                Some((-32600, json!(2))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":{"a":1},"method":"echo"}"#,
                Some((-32600, Value::Null)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":3,"method":"echo","params":"x"}"#,
                Some((-32600, json!(3))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":4,"method":"missing"}"#,
                Some((-32601, json!(4))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":5,"method":"boom"}"#,
                Some((-32603, json!(5))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":6,"method":"async_boom"}"#,
                Some((-32603, json!(6))),
            ),
            (
                r#"{"jsonrpc":"2.0","id":7,"method":"echo""#,
                Some((-32700, Value::Null)),
            ),
            ("42", Some((-32600, Value::Null))),
            ("[]", Some((-32600, Value::Null))),
        ];
        for (input, expected) in cases {
            let got = reply(input).await;
            match expected {
                None if input.contains("\"id\"") => {
                    let got = got.unwrap_or_else(|| panic!("{input}: no reply"));
                    assert!(got.get("result").is_some(), "{input}: {got}");
                }
                None => assert!(got.is_none(), "{input}: a notification got {got:?}"),
                Some((code, id)) => {
                    let got = got.unwrap_or_else(|| panic!("{input}: no reply"));
                    assert_eq!(got["error"]["code"], *code, "{input}: {got}");
                    assert_eq!(got["id"], *id, "{input}: {got}");
                    assert!(got["error"]["data"].is_object(), "{input}: {got}");
                }
            }
        }
    }

    #[tokio::test]
    async fn batches_answer_requests_only_in_one_array() {
        let got = reply(
            r#"[{"jsonrpc":"2.0","id":1,"method":"echo"},{"jsonrpc":"2.0","method":"echo"},{"jsonrpc":"2.0","id":2,"method":"missing"},7]"#,
        )
        .await
        .unwrap();
        let items = got.as_array().unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0]["id"], 1);
        assert_eq!(items[1]["error"]["code"], -32601);
        assert_eq!(items[2]["error"]["code"], -32600);
        assert!(
            reply(r#"[{"jsonrpc":"2.0","method":"echo"}]"#)
                .await
                .is_none()
        );
    }

    #[tokio::test]
    async fn invalid_utf8_and_long_lines() {
        let d = dispatcher();
        let got: Value = from_str(
            &d.handle(Frame::Line(vec![b'{', 0xff, b'}']))
                .await
                .line
                .unwrap(),
        )
        .unwrap();
        assert_eq!(got["error"]["code"], -32700);
        let got: Value =
            from_str(&d.handle(Frame::TooLong { bytes: 99 }).await.line.unwrap()).unwrap();
        assert_eq!(got["error"]["code"], -32600);
    }
}
