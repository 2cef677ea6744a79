//! The only place MCP touches the JSON-RPC surface: the tool table `initialize` lists, and the
//! worker's own method module, called in-process. Tool calls therefore run exactly the handlers
//! `serve` runs (same decoding, same errors, same routing through the fleet). When the method
//! table moves, these two functions are what to re-point.

use crate::fleet::Fleet;
use crate::protocol::{SUBSCRIBE_METHOD, ToolDescriptor};
use futures::FutureExt;
use jsonrpsee::RpcModule;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The tools, with their schemas, exactly as `initialize` lists them.
pub fn tools() -> Vec<ToolDescriptor> {
    crate::protocol::tools::tool_descriptors()
}

/// Events of a subscription waiting to be read; the subscription ends when this is dropped.
const EVENT_BUFFER: usize = 64;

pub struct Methods {
    module: RpcModule<Fleet>,
}

impl Methods {
    pub fn new(fleet: Arc<Fleet>) -> Self {
        Methods {
            module: crate::rpc::build_module(fleet),
        }
    }

    /// Calls `method` with named `params`: its result, or its JSON-RPC error object
    /// (`code`, `message`, `data`). A panicking handler answers -32603 as `serve` does.
    pub async fn call(&self, method: &str, params: &Value) -> Result<Value, Value> {
        self.request(method, params, 1)
            .await
            .map(|(result, _)| result)
    }

    /// Opens `worker_subscribe_job` for `job_id`: each item is one `worker_job_event`
    /// notification's `params.result`.
    pub async fn follow(&self, job_id: &str) -> Result<mpsc::Receiver<Value>, Value> {
        let (_, mut raw) = self
            .request(SUBSCRIBE_METHOD, &json!({ "job_id": job_id }), EVENT_BUFFER)
            .await?;
        let (events, rx) = mpsc::channel(EVENT_BUFFER);
        tokio::spawn(async move {
            while let Some(notification) = raw.recv().await {
                let Ok(mut value) = serde_json::from_str::<Value>(notification.get()) else {
                    continue;
                };
                let event = value["params"]["result"].take();
                if events.send(event).await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }

    async fn request(
        &self,
        method: &str,
        params: &Value,
        buffer: usize,
    ) -> Result<(Value, mpsc::Receiver<Box<RawValue>>), Value> {
        let request = json!({"jsonrpc": "2.0", "id": 0, "method": method, "params": params});
        let call = AssertUnwindSafe(self.module.raw_json_request(&request.to_string(), buffer))
            .catch_unwind()
            .await;
        let (reply, stream) = match call {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => return Err(internal(error.to_string())),
            Err(_) => return Err(internal(format!("the {method} handler panicked"))),
        };
        let mut reply: Value =
            serde_json::from_str(reply.get()).map_err(|e| internal(e.to_string()))?;
        match reply.get_mut("error") {
            Some(error) => Err(error.take()),
            None => Ok((reply["result"].take(), stream)),
        }
    }
}

fn internal(reason: String) -> Value {
    json!({"code": crate::error::code::INTERNAL, "message": format!("internal error: {reason}"), "data": {"reason": reason}})
}
