//! Everything JSON-RPC 2.0 asks of a server that jsonrpsee's `raw_json_request` does not do:
//! parse errors, envelope validation, batches, notifications, ids of any JSON kind, a bound on
//! the requests in flight, and turning a handler panic into an error reply instead of silence.

use super::Frame;
use super::outbox::Outbox;
use crate::error::{code, protocol_error};
use futures::FutureExt;
use jsonrpsee::{MethodCallback, RpcModule};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Subscription channel capacity handed to jsonrpsee (it panics on 0). A full channel makes
/// the subscription wait; the forwarder empties it into the byte-bounded outbox.
const SUBSCRIPTION_BUFFER: usize = 16;

/// The id jsonrpsee sees when the client's id is one it would refuse (a negative or
/// fractional number, one past u64) or absent (a notification); the reply gets the client's.
const LENT_ID: &str = "0";

/// Shut when the client unsubscribes, so no notification of that subscription follows the
/// unsubscribe reply.
type Gate = Arc<tokio::sync::Mutex<bool>>;

/// How much one connection may ask for at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests read and not yet answered (each batch element counts).
    pub in_flight: usize,
    /// Most elements in one batch.
    pub batch: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            in_flight: 1024,
            batch: 500,
        }
    }
}

pub struct Dispatcher<Context> {
    module: RpcModule<Context>,
    methods: HashSet<&'static str>,
    subscribe: HashSet<&'static str>,
    unsubscribe: HashSet<&'static str>,
    gates: Mutex<HashMap<String, Gate>>,
    /// One permit per request in flight; the reader takes one before reading a line.
    in_flight: Arc<Semaphore>,
    limits: Limits,
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

/// `id` is the id's JSON text as the client sent it.
fn reply_error(id: &str, code: i32, message: &str, data: Value) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{}}}"#,
        protocol_error(code, message, data)
    )
}

impl<Context: Send + Sync + 'static> Dispatcher<Context> {
    pub fn new(module: RpcModule<Context>) -> Self {
        Self::with_limits(module, Limits::default())
    }

    pub fn with_limits(module: RpcModule<Context>, limits: Limits) -> Self {
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
        let limits = Limits {
            in_flight: limits.in_flight.clamp(1, Semaphore::MAX_PERMITS),
            batch: limits.batch.clamp(1, limits.in_flight.max(1)),
        };
        Dispatcher {
            module,
            methods,
            subscribe,
            unsubscribe,
            gates: Mutex::new(HashMap::new()),
            in_flight: Arc::new(Semaphore::new(limits.in_flight)),
            limits,
        }
    }

    /// A place for one more request; waits while `in_flight` requests are unanswered, which
    /// is what holds the reader back when the client stops reading replies.
    pub async fn admit(&self) -> OwnedSemaphorePermit {
        self.in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Requests in flight now (admitted, not yet answered).
    pub fn in_flight(&self) -> usize {
        self.limits.in_flight - self.in_flight.available_permits()
    }

    /// Handles one frame and writes what it produced through `outbox`: the reply first, then
    /// (on tasks of their own) the notifications of any subscription it opened. `admitted`
    /// (from `admit`) is held until the reply is queued; a batch takes one more per element.
    pub async fn serve(
        self: &Arc<Self>,
        frame: Frame,
        outbox: &Outbox,
        admitted: OwnedSemaphorePermit,
    ) {
        let mut held = admitted;
        let handled = self.handle_held(frame, &mut held).await;
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
        drop(held);
        for (stream, gate) in handled.streams.into_iter().zip(gates) {
            tokio::spawn(self.clone().forward(stream, gate, outbox.clone()));
        }
    }

    fn gates(&self) -> std::sync::MutexGuard<'_, HashMap<String, Gate>> {
        crate::sync::lock(&self.gates)
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
        let mut held = self.admit().await;
        self.handle_held(frame, &mut held).await
    }

    async fn handle_held(&self, frame: Frame, held: &mut OwnedSemaphorePermit) -> Handled {
        let (line, streams) = self.handle_frame(frame, held).await;
        Handled { line, streams }
    }

    async fn handle_frame(
        &self,
        frame: Frame,
        held: &mut OwnedSemaphorePermit,
    ) -> (Option<String>, Vec<Subscription>) {
        match frame {
            Frame::TooLong { bytes } => one(reply_error(
                "null",
                code::INVALID_REQUEST,
                "Invalid request: line too long",
                json!({"reason": format!("the line has {bytes} bytes, over the configured maximum (worker.max_line_bytes)")}),
            )),
            Frame::Line(bytes) => self.handle_line(&bytes, held).await,
        }
    }

    async fn handle_line(
        &self,
        bytes: &[u8],
        held: &mut OwnedSemaphorePermit,
    ) -> (Option<String>, Vec<Subscription>) {
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => {
                return one(reply_error(
                    "null",
                    code::PARSE_ERROR,
                    "Parse error: invalid UTF-8",
                    json!({"reason": format!("invalid UTF-8 at byte {}", error.valid_up_to())}),
                ));
            }
        };
        // Checks the syntax of the whole line without building it: elements stay borrowed text.
        let parsed: &RawValue = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(error) => {
                return one(reply_error(
                    "null",
                    code::PARSE_ERROR,
                    "Parse error",
                    json!({"reason": error.to_string()}),
                ));
            }
        };
        if !parsed.get().starts_with('[') {
            let reply = self.handle_one(parsed).await;
            return (reply.line, reply.stream.into_iter().collect());
        }
        let items: Vec<&RawValue> = match serde_json::from_str(parsed.get()) {
            Ok(items) => items,
            Err(error) => {
                return one(reply_error(
                    "null",
                    code::PARSE_ERROR,
                    "Parse error",
                    json!({"reason": error.to_string()}),
                ));
            }
        };
        if items.is_empty() {
            return one(reply_error(
                "null",
                code::INVALID_REQUEST,
                "Invalid request: empty batch",
                json!({"reason": "a batch must contain at least one request"}),
            ));
        }
        if items.len() > self.limits.batch {
            return one(reply_error(
                "null",
                code::INVALID_REQUEST,
                "Invalid request: batch too long",
                json!({
                    "field": "batch",
                    "limit": self.limits.batch,
                    "reason": format!("the batch has {} elements, over the maximum of {} (worker.max_batch); send it in parts", items.len(), self.limits.batch),
                }),
            ));
        }
        // Each element is a request in flight, against the same budget as single requests.
        if let Ok(more) = self
            .in_flight
            .clone()
            .acquire_many_owned(items.len() as u32 - 1)
            .await
        {
            held.merge(more);
        }
        let replies =
            futures::future::join_all(items.into_iter().map(|item| self.handle_one(item))).await;
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

    async fn handle_one(&self, request: &RawValue) -> One {
        let Ok(object) = serde_json::from_str::<BTreeMap<String, &RawValue>>(request.get()) else {
            return One::line(Some(invalid("null", "a request must be a JSON object")));
        };
        let id = object.get("id").map(|raw| raw.get());
        let reply_id = match id {
            None => "null",
            Some(raw) if is_valid_id(raw) => raw,
            Some(_) => {
                return One::line(Some(invalid(
                    "null",
                    "`id` must be a string, a number or null",
                )));
            }
        };
        if object
            .get("jsonrpc")
            .and_then(|raw| serde_json::from_str::<&str>(raw.get()).ok())
            != Some("2.0")
        {
            return One::line(Some(invalid(reply_id, "`jsonrpc` must be \"2.0\"")));
        }
        let Some(method) = object
            .get("method")
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
        else {
            return One::line(Some(invalid(reply_id, "`method` must be a string")));
        };
        let params = object.get("params").map(|raw| raw.get());
        if let Some(params) = params
            && !(params.starts_with('{') || params.starts_with('['))
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
        // jsonrpsee only runs requests with an id it can parse: lend it one, answer with ours.
        let lent = id.is_none_or(|raw| !jsonrpsee_takes(raw));
        let sent_id = if lent { LENT_ID } else { reply_id };
        // Borrowed: a request may be megabytes, copied once into jsonrpsee's text below.
        let mut params = params.map(std::borrow::Cow::Borrowed);
        if self.unsubscribe.contains(method.as_str()) {
            let key = match subscription_key(params.as_deref()) {
                Ok(key) => key,
                Err(reason) => {
                    return One::line((!is_notification).then(|| {
                        reply_error(
                            reply_id,
                            code::INVALID_PARAMS,
                            "Invalid params",
                            json!({"field": "subscription", "reason": reason}),
                        )
                    }));
                }
            };
            let gate = self.gates().get(&key.to_string()).cloned();
            if let Some(gate) = gate {
                *gate.lock().await = true;
            }
            // jsonrpsee reads the id from a one-element array.
            params = Some(std::borrow::Cow::Owned(format!("[{key}]")));
        }
        // `render`: a request option the tool handlers never see (see render::wire).
        let rendering = crate::render::wire::requested(&method, params.as_deref());
        if let Some(rendering) = &rendering {
            params = Some(std::borrow::Cow::Borrowed(rendering.params.as_str()));
        }
        let method_json = Value::from(method.as_str()).to_string();
        let text = match &params {
            Some(params) => format!(
                r#"{{"jsonrpc":"2.0","id":{sent_id},"method":{method_json},"params":{params}}}"#
            ),
            None => format!(r#"{{"jsonrpc":"2.0","id":{sent_id},"method":{method_json}}}"#),
        };
        let call = AssertUnwindSafe(self.module.raw_json_request(&text, SUBSCRIPTION_BUFFER))
            .catch_unwind();
        let mut stream = None;
        let reply = match call.await {
            Ok(Ok((response, notifications))) => {
                let line = response.get();
                if self.subscribe.contains(method.as_str()) && !is_notification {
                    // The result of a successful subscribe call is the subscription id.
                    let key = serde_json::from_str::<Value>(line)
                        .ok()
                        .and_then(|reply| reply.get("result").map(Value::to_string));
                    stream = key.map(|key| Subscription { key, notifications });
                }
                if lent && !is_notification {
                    with_id(line, reply_id)
                } else {
                    line.to_owned()
                }
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
        let reply = match &rendering {
            Some(rendering) => rendering.attach(&method, reply),
            None => reply,
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

/// JSON-RPC 2.0 ids: a string, a number or null.
fn is_valid_id(raw: &str) -> bool {
    raw == "null"
        || raw.starts_with('"')
        || (raw.starts_with(|c: char| c == '-' || c.is_ascii_digit())
            && serde_json::from_str::<&RawValue>(raw).is_ok())
}

/// Ids jsonrpsee parses itself: null, strings and u64 numbers.
fn jsonrpsee_takes(raw: &str) -> bool {
    raw == "null" || raw.starts_with('"') || raw.parse::<u64>().is_ok()
}

/// The reply jsonrpsee wrote for the lent id, with the client's id instead.
fn with_id(line: &str, id: &str) -> String {
    let Ok(mut members) = serde_json::from_str::<BTreeMap<String, &RawValue>>(line) else {
        return line.to_owned();
    };
    let Ok(id) = serde_json::from_str::<&RawValue>(id) else {
        return line.to_owned();
    };
    members.insert("id".into(), id);
    serde_json::to_string(&members).unwrap_or_else(|_| line.to_owned())
}

/// The subscription an unsubscribe names: `[id]` or `{"subscription": id}`, id the number
/// `worker_subscribe_job` answered.
fn subscription_key(params: Option<&str>) -> Result<u64, String> {
    let value: Value = params
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null);
    let key = match &value {
        Value::Array(items) if items.len() == 1 => &items[0],
        Value::Object(named) if named.len() == 1 && named.contains_key("subscription") => {
            &named["subscription"]
        }
        _ => {
            return Err(
                "pass `{\"subscription\": ID}` or `[ID]`, ID the number worker_subscribe_job answered"
                    .into(),
            );
        }
    };
    key.as_u64().ok_or_else(|| {
        format!("{key} is not a subscription id: pass the number worker_subscribe_job answered")
    })
}

fn invalid(id: &str, reason: &str) -> String {
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
    async fn ids_come_back_spelled_as_sent() {
        let d = dispatcher();
        for id in [
            "-1",
            "1.5",
            "18446744073709551616",
            "1e3",
            "-0",
            "7",
            "\"x\"",
        ] {
            for method in ["echo", "missing", "boom"] {
                let input = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}"}}"#);
                let line = d
                    .handle(Frame::Line(input.into_bytes()))
                    .await
                    .line
                    .unwrap();
                assert!(
                    line.contains(&format!(r#""id":{id}"#)),
                    "{id} {method}: {line}"
                );
            }
        }
    }

    #[tokio::test]
    async fn batch_length_is_bounded() {
        let d = Dispatcher::with_limits(
            dispatcher().module,
            Limits {
                in_flight: 8,
                batch: 3,
            },
        );
        let element = r#"{"jsonrpc":"2.0","id":1,"method":"echo"}"#;
        let over = format!("[{}]", [element; 4].join(","));
        let got: Value =
            from_str(&d.handle(Frame::Line(over.into_bytes())).await.line.unwrap()).unwrap();
        assert_eq!(got["error"]["code"], -32600);
        assert_eq!(got["error"]["data"]["limit"], 3);
        let at = format!("[{}]", [element; 3].join(","));
        let got: Value =
            from_str(&d.handle(Frame::Line(at.into_bytes())).await.line.unwrap()).unwrap();
        assert_eq!(got.as_array().unwrap().len(), 3);
        assert_eq!(d.in_flight(), 0, "every permit is given back");
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
