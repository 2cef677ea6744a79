//! Everything JSON-RPC 2.0 asks of a server that jsonrpsee's `raw_json_request` does not do:
//! parse errors, envelope validation, batches, notifications, and turning a handler panic into
//! an error reply instead of silence.

use super::Frame;
use crate::error::{code, protocol_error};
use crate::worker::Worker;
use futures::FutureExt;
use jsonrpsee::RpcModule;
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use std::panic::AssertUnwindSafe;

/// Subscription channel capacity handed to jsonrpsee (it panics on 0).
const SUBSCRIPTION_BUFFER: usize = 64;

pub struct Dispatcher {
    module: RpcModule<Worker>,
    methods: HashSet<&'static str>,
}

fn reply_error(id: Value, code: i32, message: &str, data: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": protocol_error(code, message, data)}).to_string()
}

impl Dispatcher {
    pub fn new(module: RpcModule<Worker>) -> Self {
        let methods = module.method_names().collect();
        Dispatcher { module, methods }
    }

    /// The reply line for one input frame, or None when nothing is owed (notifications).
    pub async fn handle(&self, frame: Frame) -> Option<String> {
        match frame {
            Frame::TooLong { bytes } => Some(reply_error(
                Value::Null,
                code::INVALID_REQUEST,
                "Invalid request: line too long",
                json!({"reason": format!("the line has {bytes} bytes, over the configured maximum (worker.max_line_bytes)")}),
            )),
            Frame::Line(bytes) => self.handle_line(&bytes).await,
        }
    }

    async fn handle_line(&self, bytes: &[u8]) -> Option<String> {
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => {
                return Some(reply_error(
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
                return Some(reply_error(
                    Value::Null,
                    code::PARSE_ERROR,
                    "Parse error",
                    json!({"reason": error.to_string()}),
                ));
            }
        };
        match parsed {
            Value::Array(items) if items.is_empty() => Some(reply_error(
                Value::Null,
                code::INVALID_REQUEST,
                "Invalid request: empty batch",
                json!({"reason": "a batch must contain at least one request"}),
            )),
            Value::Array(items) => {
                let replies = futures::future::join_all(items.into_iter().map(|item| self.handle_one(item))).await;
                let replies: Vec<String> = replies.into_iter().flatten().collect();
                (!replies.is_empty()).then(|| format!("[{}]", replies.join(",")))
            }
            single => self.handle_one(single).await,
        }
    }

    async fn handle_one(&self, request: Value) -> Option<String> {
        let Value::Object(mut object) = request else {
            return Some(invalid(Value::Null, "a request must be a JSON object"));
        };
        let id = object.get("id").cloned();
        let reply_id = match &id {
            None | Some(Value::Null | Value::String(_)) => id.clone().unwrap_or(Value::Null),
            Some(Value::Number(n)) if n.is_u64() => id.clone().unwrap_or(Value::Null),
            Some(_) => return Some(invalid(Value::Null, "`id` must be a string, a non-negative integer or null")),
        };
        if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Some(invalid(reply_id, "`jsonrpc` must be \"2.0\""));
        }
        let Some(method) = object.get("method").and_then(Value::as_str).map(str::to_owned) else {
            return Some(invalid(reply_id, "`method` must be a string"));
        };
        if let Some(params) = object.get("params")
            && !(params.is_object() || params.is_array())
        {
            return Some(invalid(reply_id, "`params` must be an object or an array"));
        }
        let is_notification = id.is_none();
        if !self.methods.contains(method.as_str()) {
            return (!is_notification).then(|| {
                reply_error(
                    reply_id,
                    code::METHOD_NOT_FOUND,
                    "Method not found",
                    json!({"method": method, "reason": "no such method; call `initialize` for the tool list"}),
                )
            });
        }
        if is_notification {
            // jsonrpsee only runs requests with an id: lend it one and drop the reply.
            object.insert("id".into(), Value::from(0));
        }
        let text = Value::Object(normalise(object)).to_string();
        let call = AssertUnwindSafe(self.module.raw_json_request(&text, SUBSCRIPTION_BUFFER)).catch_unwind();
        let reply = match call.await {
            Ok(Ok((response, _subscription))) => response.get().to_owned(),
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
        (!is_notification).then_some(reply)
    }
}

/// Drops members JSON-RPC does not define, so jsonrpsee's stricter parsing cannot refuse
/// a request that the spec allows.
fn normalise(mut object: Map<String, Value>) -> Map<String, Value> {
    object.retain(|key, _| matches!(key.as_str(), "jsonrpc" | "id" | "method" | "params"));
    object
}

fn invalid(id: Value, reason: &str) -> String {
    reply_error(id, code::INVALID_REQUEST, "Invalid request", json!({"reason": reason}))
}
