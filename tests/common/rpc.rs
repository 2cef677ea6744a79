//! The one JSON-RPC client of the tests and benches: one message per line over a child's stdin
//! and stdout, whether the child is the worker itself or an ssh client in front of one. Replies
//! are matched by id; what arrives meanwhile is kept for whoever asks for it.
#![allow(dead_code)]

use opencode_worker::protocol::table::Method;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, ChildStdout};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// Generous: only there so a broken build fails instead of hanging CI.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub struct Rpc {
    /// Whose lines these are, in panic messages.
    what: String,
    stdin: Option<ChildStdin>,
    lines: Source,
    eof: bool,
    pending: HashMap<String, Value>,
    unmatched: Vec<Value>,
    next_id: u64,
    /// More to say when something goes wrong (an ssh client's stderr).
    context: Box<dyn Fn() -> String + Send>,
}

/// Where lines come from. `None` is EOF.
enum Source {
    /// A reader thread, so a wait can time out.
    Thread(Receiver<Option<Value>>),
    /// Read in the caller's thread: no hop between threads on the way (the benches time
    /// round trips), and no timeout.
    Direct(BufReader<ChildStdout>, Lines),
}

/// What the reader does with a line that is not JSON.
#[derive(Clone, Copy)]
pub enum Lines {
    /// The worker's stdout carries only the protocol: anything else fails the test.
    ProtocolOnly,
    /// Kept as `{"not_json_rpc": line}` (an ssh client may print a banner).
    Tolerant,
}

impl Rpc {
    pub fn new(what: &str, stdin: ChildStdin, stdout: ChildStdout, lines: Lines) -> Rpc {
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(Some(parse(line, lines))).is_err() {
                    return;
                }
            }
            let _ = tx.send(None);
        });
        Rpc::with_source(what, stdin, Source::Thread(rx))
    }

    /// Reads in the caller's thread: waits have no timeout, and nothing stands between the
    /// reply and its reader (for timing round trips).
    pub fn direct(what: &str, stdin: ChildStdin, stdout: ChildStdout, lines: Lines) -> Rpc {
        Rpc::with_source(what, stdin, Source::Direct(BufReader::new(stdout), lines))
    }

    fn with_source(what: &str, stdin: ChildStdin, lines: Source) -> Rpc {
        Rpc {
            what: what.to_owned(),
            stdin: Some(stdin),
            lines,
            eof: false,
            pending: HashMap::new(),
            unmatched: Vec::new(),
            next_id: 1,
            context: Box::new(String::new),
        }
    }

    /// Adds `context()` to every panic message.
    pub fn with_context(mut self, context: impl Fn() -> String + Send + 'static) -> Rpc {
        self.context = Box::new(context);
        self
    }

    fn fail(&self, why: String) -> ! {
        panic!("{}: {why}{}", self.what, (self.context)())
    }

    pub fn send_raw(&mut self, line: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        let written = stdin
            .write_all(line)
            .and_then(|()| stdin.write_all(b"\n"))
            .and_then(|()| stdin.flush());
        if let Err(error) = written {
            self.fail(format!("writing to stdin failed: {error}"));
        }
    }

    /// Sends a request and returns its id without waiting.
    pub fn request(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_raw(line.to_string().as_bytes());
        id
    }

    /// The next line before `deadline` (a direct source waits without one).
    fn recv(&mut self, deadline: Instant) -> Result<Option<Value>, RecvTimeoutError> {
        match &mut self.lines {
            Source::Thread(rx) => {
                rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            }
            Source::Direct(reader, lines) => {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => Ok(None),
                    Ok(_) => Ok(Some(parse(line.trim_end_matches('\n').to_owned(), *lines))),
                }
            }
        }
    }

    fn receive(&mut self, deadline: Instant, waiting_for: &str) -> Value {
        match self.recv(deadline) {
            Ok(Some(value)) => value,
            Ok(None) | Err(RecvTimeoutError::Disconnected) => {
                self.eof = true;
                self.fail(format!("stdout closed before {waiting_for}"))
            }
            Err(RecvTimeoutError::Timeout) => {
                self.fail(format!("no {waiting_for} within {PATIENCE:?}"))
            }
        }
    }

    /// The next line, whatever it answers.
    pub fn next_line(&mut self) -> Value {
        if !self.unmatched.is_empty() {
            return self.unmatched.remove(0);
        }
        self.receive(Instant::now() + PATIENCE, "a line")
    }

    pub fn reply_to(&mut self, id: u64) -> Value {
        let key = id.to_string();
        if let Some(value) = self.pending.remove(&key) {
            return value;
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.receive(deadline, &format!("the reply to {id}"));
            match value.get("id").map(Value::to_string) {
                Some(got) if got == key => return value,
                Some(got) if got != "null" => {
                    self.pending.insert(got, value);
                }
                _ => self.unmatched.push(value),
            }
        }
    }

    /// Full reply (result or error) of one call.
    pub fn call_raw(&mut self, method: &str, params: Value) -> Value {
        let id = self.request(method, params);
        self.reply_to(id)
    }

    /// The `result` of one call; panics with the error when there is one.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let reply = self.call_raw(method, params.clone());
        match reply.get("result") {
            Some(result) => result.clone(),
            None => self.fail(format!("{method} {params} failed: {reply}")),
        }
    }

    /// The `error` of one call; panics when it succeeded.
    pub fn call_err(&mut self, method: &str, params: Value) -> Value {
        let reply = self.call_raw(method, params.clone());
        match reply.get("error") {
            Some(error) => error.clone(),
            None => self.fail(format!("{method} {params} unexpectedly succeeded: {reply}")),
        }
    }

    /// One method of the table, typed both ways: the method name is the table's.
    pub fn request_typed<M: Method>(&mut self, params: &M::Params) -> M::Result {
        let params = serde_json::to_value(params).expect("params serialize");
        let result = self.call(M::NAME, params);
        serde_json::from_value(result.clone())
            .unwrap_or_else(|e| panic!("{} answered {result} that does not parse: {e}", M::NAME))
    }

    /// Waits for EOF on stdout; lines before it are dropped. How long it took.
    pub fn wait_eof(&mut self, patience: Duration) -> Duration {
        let start = Instant::now();
        while !self.eof {
            match self.recv(start + patience) {
                Ok(Some(_)) => {}
                Ok(None) | Err(RecvTimeoutError::Disconnected) => self.eof = true,
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(format!("no EOF on stdout within {patience:?}"))
                }
            }
        }
        start.elapsed()
    }

    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }
}

fn parse(line: String, lines: Lines) -> Value {
    match (serde_json::from_str::<Value>(&line), lines) {
        (Ok(value), _) => value,
        (Err(e), Lines::ProtocolOnly) => panic!("worker wrote a non-JSON line {line:?}: {e}"),
        (Err(_), Lines::Tolerant) => json!({ "not_json_rpc": line }),
    }
}
