//! The benches' client: the real binary over real pipes, through the tests' one JSON-RPC client,
//! reading replies in the bench's own thread so a round trip has no thread hop in it.
#![allow(dead_code)]

#[path = "../../tests/common/rpc.rs"]
mod rpc;

use opencode_worker::protocol::table::{Method, Shutdown};
use rpc::{Lines, Rpc};
use serde_json::{Value, json};
use std::process::{Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_opencode-worker");

/// The binary the client starts: `OCW_BENCH_BIN` names another build to measure with the same
/// harness (an A/B of two binaries), else the one cargo built with the bench.
pub fn worker_binary() -> String {
    std::env::var("OCW_BENCH_BIN").unwrap_or_else(|_| BIN.to_owned())
}

pub struct Client {
    pub child: std::process::Child,
    rpc: Rpc,
}

impl Client {
    pub fn start(settings: &[String]) -> Client {
        let mut command = Command::new(worker_binary());
        command.arg("serve").env("RUST_LOG", "error");
        for setting in settings {
            command.arg("--set").arg(setting);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn worker");
        let rpc = Rpc::direct(
            "worker",
            child.stdin.take().unwrap(),
            child.stdout.take().unwrap(),
            Lines::ProtocolOnly,
        );
        Client { child, rpc }
    }

    pub fn send(&mut self, method: &str, params: Value) -> u64 {
        self.rpc.request(method, params)
    }

    /// The next line, which must be a successful reply (one request is in flight at a time).
    pub fn receive(&mut self) -> Value {
        let value = self.rpc.next_line();
        assert!(value.get("result").is_some(), "{value}");
        value
    }

    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params);
        self.receive()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.send(Shutdown::NAME, json!({}));
        let _ = self.child.wait();
    }
}
