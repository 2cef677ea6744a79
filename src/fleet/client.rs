//! A JSON-RPC client over one byte stream pair (a remote worker behind `ssh`): calls matched to
//! replies by id, and `worker_job_event` notifications routed to their subscription.
//!
//! A subscription is registered by the reader itself when it reads the subscribe reply, before
//! it reads the next line, so no event that follows the reply can be missed.

use crate::protocol::{EVENT_METHOD, JobEventNotification, SUBSCRIBE_METHOD};
use crate::rpc::{Frame, LineReader};
use crate::sync::lock;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Replies carry a whole output page or artifact set; the remote bounds them, this only stops
/// a broken peer from growing a line without end.
const MAX_REPLY_BYTES: usize = 256 * 1024 * 1024;

/// What a call can end in besides a result.
#[derive(Debug, Clone)]
pub enum CallError {
    /// The remote answered with a JSON-RPC error; passed on to our client as it is.
    Rpc {
        code: i32,
        message: String,
        data: Option<Value>,
    },
    /// The connection ended before the reply came.
    Lost(String),
}

pub type Events = mpsc::UnboundedReceiver<crate::protocol::JobEvent>;

enum Waiter {
    Call(oneshot::Sender<Result<Value, CallError>>),
    Subscribe(
        oneshot::Sender<Result<Value, CallError>>,
        mpsc::UnboundedSender<crate::protocol::JobEvent>,
    ),
}

pub struct Connection {
    outgoing: mpsc::UnboundedSender<String>,
    waiters: Mutex<HashMap<u64, Waiter>>,
    subscriptions: Mutex<HashMap<String, mpsc::UnboundedSender<crate::protocol::JobEvent>>>,
    next_id: AtomicU64,
    closed: CancellationToken,
    why: Mutex<Option<String>>,
}

impl Connection {
    /// Starts the reader and writer tasks. The connection closes when either side of the
    /// stream ends or `close` is called.
    pub fn start<R, W>(reader: R, writer: W) -> std::sync::Arc<Connection>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (outgoing, lines) = mpsc::unbounded_channel();
        let connection = std::sync::Arc::new(Connection {
            outgoing,
            waiters: Mutex::new(HashMap::new()),
            subscriptions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: CancellationToken::new(),
            why: Mutex::new(None),
        });
        tokio::spawn(write_lines(connection.clone(), lines, writer));
        tokio::spawn(read_lines(connection.clone(), reader));
        connection
    }

    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Why the connection ended, once it has.
    pub fn why(&self) -> String {
        lock(&self.why)
            .clone()
            .unwrap_or_else(|| "connection closed".into())
    }

    /// Ends the connection: every call waiting gets `Lost`, every subscription ends.
    pub fn close(&self, why: impl Into<String>) {
        {
            let mut slot = lock(&self.why);
            if slot.is_none() {
                *slot = Some(why.into());
            }
        }
        self.closed.cancel();
        let why = self.why();
        let waiters: Vec<Waiter> = lock(&self.waiters).drain().map(|(_, w)| w).collect();
        for waiter in waiters {
            let reply = match waiter {
                Waiter::Call(reply) | Waiter::Subscribe(reply, _) => reply,
            };
            let _ = reply.send(Err(CallError::Lost(why.clone())));
        }
        lock(&self.subscriptions).clear();
    }

    fn send(&self, method: &str, params: Value, waiter: impl FnOnce(u64) -> Waiter) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.waiters).insert(id, waiter(id));
        let line =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
                .to_string();
        if self.outgoing.send(line).is_err() || self.is_closed() {
            // The reader may already have failed everyone else; make sure this one hears too.
            if let Some(Waiter::Call(reply) | Waiter::Subscribe(reply, _)) =
                lock(&self.waiters).remove(&id)
            {
                let _ = reply.send(Err(CallError::Lost(self.why())));
            }
        }
        id
    }

    /// An untyped call, for requests the table cannot express (tests of refusals); everything
    /// else goes through `request`.
    pub(crate) async fn call(&self, method: &str, params: Value) -> Result<Value, CallError> {
        let (reply, answer) = oneshot::channel();
        self.send(method, params, |_| Waiter::Call(reply));
        answer
            .await
            .unwrap_or_else(|_| Err(CallError::Lost(self.why())))
    }

    /// A call of one method of the table, typed both ways.
    pub async fn request<M: crate::protocol::table::Method>(
        &self,
        params: &M::Params,
    ) -> Result<M::Result, CallError> {
        let params = serde_json::to_value(params).map_err(|error| CallError::Rpc {
            code: crate::error::code::INTERNAL,
            message: format!("{} params did not serialize: {error}", M::NAME),
            data: None,
        })?;
        self.call_as(M::NAME, params).await
    }

    /// A typed call: the reply's `result` decoded as `T`.
    async fn call_as<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, CallError> {
        let value = self.call(method, params).await?;
        serde_json::from_value(value).map_err(|error| CallError::Rpc {
            code: crate::error::code::INTERNAL,
            message: format!("the remote worker's reply to {method} did not parse: {error}"),
            data: None,
        })
    }

    /// Follows a job's events on the remote; the channel ends after the `end` event or when
    /// the connection closes.
    pub async fn subscribe(&self, job_id: &str, after_seq: u64) -> Result<Events, CallError> {
        let (reply, answer) = oneshot::channel();
        let (events, receiver) = mpsc::unbounded_channel();
        self.send(
            SUBSCRIBE_METHOD,
            serde_json::json!({"job_id": job_id, "after_seq": after_seq}),
            |_| Waiter::Subscribe(reply, events),
        );
        answer
            .await
            .unwrap_or_else(|_| Err(CallError::Lost(self.why())))?;
        Ok(receiver)
    }

    fn on_line(&self, line: &[u8]) {
        let Ok(message) = serde_json::from_slice::<Value>(line) else {
            tracing::warn!(
                line = %String::from_utf8_lossy(&line[..line.len().min(200)]),
                "remote worker sent a line that is not JSON"
            );
            return;
        };
        if message.get("method").and_then(Value::as_str) == Some(EVENT_METHOD) {
            let Some(params) = message.get("params").cloned() else {
                return;
            };
            match serde_json::from_value::<JobEventNotification>(params) {
                Ok(note) => {
                    let key = note.subscription.to_string();
                    let is_end =
                        matches!(note.result.body, crate::protocol::JobEventBody::End { .. });
                    let mut subscriptions = lock(&self.subscriptions);
                    if let Some(events) = subscriptions.get(&key) {
                        let _ = events.send(note.result);
                    }
                    if is_end {
                        subscriptions.remove(&key);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "remote worker sent an event that did not parse")
                }
            }
            return;
        }
        let Some(id) = message.get("id").and_then(Value::as_u64) else {
            tracing::warn!(%message, "remote worker sent a message with no id we know");
            return;
        };
        let Some(waiter) = lock(&self.waiters).remove(&id) else {
            return;
        };
        let outcome = match (message.get("result"), message.get("error")) {
            (Some(result), None) => Ok(result.clone()),
            (_, Some(error)) => Err(CallError::Rpc {
                code: error
                    .get("code")
                    .and_then(Value::as_i64)
                    .unwrap_or(crate::error::code::INTERNAL as i64) as i32,
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("remote error")
                    .to_owned(),
                data: error.get("data").cloned(),
            }),
            (None, None) => Err(CallError::Rpc {
                code: crate::error::code::INTERNAL,
                message: "the remote worker's reply has neither result nor error".into(),
                data: None,
            }),
        };
        match waiter {
            Waiter::Call(reply) => {
                let _ = reply.send(outcome);
            }
            Waiter::Subscribe(reply, events) => {
                if let Ok(subscription) = &outcome {
                    lock(&self.subscriptions).insert(subscription.to_string(), events);
                }
                let _ = reply.send(outcome);
            }
        }
    }
}

async fn read_lines<R: AsyncRead + Unpin>(connection: std::sync::Arc<Connection>, reader: R) {
    let mut lines = LineReader::new(
        BufReader::with_capacity(256 * 1024, reader),
        MAX_REPLY_BYTES,
    );
    let why = loop {
        let frame = tokio::select! {
            _ = connection.closed.cancelled() => return,
            frame = lines.next() => frame,
        };
        match frame {
            Ok(Some(Frame::Line(line))) => connection.on_line(&line),
            Ok(Some(Frame::TooLong { bytes })) => {
                break format!("the remote worker sent a line of {bytes} bytes, over the limit");
            }
            Ok(None) => break "the remote worker's output ended".to_owned(),
            Err(error) => break format!("reading from the remote worker failed: {error}"),
        }
    };
    connection.close(why);
}

async fn write_lines<W: AsyncWrite + Unpin>(
    connection: std::sync::Arc<Connection>,
    mut lines: mpsc::UnboundedReceiver<String>,
    writer: W,
) {
    let mut writer = tokio::io::BufWriter::new(writer);
    loop {
        let line = tokio::select! {
            _ = connection.closed.cancelled() => break,
            line = lines.recv() => line,
        };
        let Some(mut line) = line else { break };
        let mut failed = writer.write_all(line.as_bytes()).await.is_err()
            || writer.write_all(b"\n").await.is_err();
        // Lines queued together go out in one write.
        while !failed && let Ok(next) = lines.try_recv() {
            line = next;
            failed = writer.write_all(line.as_bytes()).await.is_err()
                || writer.write_all(b"\n").await.is_err();
        }
        if failed || writer.flush().await.is_err() {
            connection.close("writing to the remote worker failed");
            return;
        }
    }
    // Closing the remote's stdin is how it learns we are done: it stops its jobs and exits.
    let _ = writer.shutdown().await;
}
