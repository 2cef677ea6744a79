//! A client for the event stream: keeps every line in the order the worker wrote it, so tests
//! can tell what came before and after a reply.
#![allow(dead_code)]

use crate::common::Worker;
use opencode_worker::protocol::events;
use opencode_worker::protocol::table::{self, Method};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub struct Client {
    pub w: Worker,
    /// Every notification, in arrival order.
    pub notes: Vec<Value>,
}

impl Client {
    pub fn new(w: Worker) -> Client {
        Client {
            w,
            notes: Vec::new(),
        }
    }

    fn read_one(&mut self) -> Value {
        let line = self.w.next_line();
        if line.get("id").is_none() {
            assert_eq!(line["method"], "worker_job_event", "{line}");
            self.notes.push(line.clone());
        }
        line
    }

    /// The whole reply (result or error), recording notifications that arrive meanwhile.
    pub fn call_raw(&mut self, method: &str, params: Value) -> Value {
        let id = self.w.request(method, params);
        loop {
            let line = self.read_one();
            if line.get("id") == Some(&json!(id)) {
                return line;
            }
            assert!(line.get("id").is_none(), "reply to another call: {line}");
        }
    }

    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let reply = self.call_raw(method, params.clone());
        reply
            .get("result")
            .cloned()
            .unwrap_or_else(|| panic!("{method} {params}: {reply}"))
    }

    pub fn dispatch(&mut self, mut spec: Value) -> Value {
        self.w.mark(&mut spec);
        self.call(table::DispatchJob::NAME, spec)
    }

    pub fn subscribe(&mut self, job_id: &str, after_seq: Option<u64>) -> Value {
        let mut params = json!({"job_id": job_id});
        if let Some(after) = after_seq {
            params["after_seq"] = json!(after);
        }
        self.call(events::SUBSCRIBE_METHOD, params)
    }

    /// Events of one subscription received so far.
    pub fn events(&self, sub: &Value) -> Vec<Value> {
        self.notes
            .iter()
            .filter(|n| &n["params"]["subscription"] == sub)
            .map(|n| n["params"]["result"].clone())
            .collect()
    }

    fn ended(&self, sub: &Value) -> bool {
        self.events(sub).iter().any(|e| e["kind"] == "end")
    }

    /// Reads until every subscription has had its `end` event; returns each one's events.
    pub fn until_end(&mut self, subs: &[Value]) -> Vec<Vec<Value>> {
        while !subs.iter().all(|s| self.ended(s)) {
            self.read_one();
        }
        subs.iter().map(|s| self.events(s)).collect()
    }

    /// Reads until the subscription has at least `n` events.
    pub fn until_count(&mut self, sub: &Value, n: usize) -> Vec<Value> {
        while self.events(sub).len() < n {
            self.read_one();
        }
        self.events(sub)
    }
}

/// Checks the stream of one job: seqs contiguous from `first`, states in lifecycle order,
/// output offsets contiguous per stream, one `end` last. Returns (stdout, stderr) bytes.
pub fn check_stream(events: &[Value], first: u64) -> (Vec<u8>, Vec<u8>) {
    let mut expected_seq = first;
    let mut out = BTreeMap::from([("stdout", Vec::new()), ("stderr", Vec::new())]);
    let order = ["init", "prepare", "execute", "collect", "destroy", "done"];
    let mut last_phase = 0;
    let mut lagged = false;
    for (i, event) in events.iter().enumerate() {
        if event["kind"] == "lagged" {
            // Stands for the events first_missed_seq..=seq.
            assert_eq!(
                event["first_missed_seq"], expected_seq,
                "gap at {i}: {event}"
            );
            expected_seq = event["seq"].as_u64().unwrap();
        }
        assert_eq!(event["seq"], expected_seq, "gap at {i}: {event}");
        expected_seq += 1;
        match event["kind"].as_str().unwrap() {
            "state" => {
                let phase = order
                    .iter()
                    .position(|p| *p == event["phase"])
                    .unwrap_or_else(|| panic!("{event}"));
                assert!(phase >= last_phase, "phase went back: {event}");
                last_phase = phase;
            }
            kind @ ("stdout" | "stderr") => {
                let buf = out.get_mut(kind).unwrap();
                if !lagged {
                    assert_eq!(event["offset"], buf.len() as u64, "offset: {event}");
                }
                let bytes = decode(event);
                assert_eq!(event["bytes"], bytes.len() as u64);
                buf.extend(bytes);
            }
            "end" => {
                assert_eq!(i, events.len() - 1, "end is last");
                assert_eq!(event["job"]["phase"], "done");
            }
            "lagged" => {
                lagged = true;
                let missed = event["missed_events"].as_u64().unwrap();
                assert_eq!(
                    event["first_missed_seq"].as_u64().unwrap() + missed - 1,
                    event["seq"].as_u64().unwrap()
                );
            }
            other => panic!("unknown kind {other}"),
        }
    }
    assert_eq!(events.last().unwrap()["kind"], "end");
    (out.remove("stdout").unwrap(), out.remove("stderr").unwrap())
}

pub fn decode(event: &Value) -> Vec<u8> {
    use base64::Engine;
    let data = event["data"].as_str().unwrap();
    match event["encoding"].as_str().unwrap() {
        "utf8" => data.as_bytes().to_vec(),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
        other => panic!("encoding {other}"),
    }
}
