//! The benches' client: the real binary over real pipes, one request at a time.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_opencode-worker");

pub struct Client {
    pub child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    next_id: u64,
}

impl Client {
    pub fn start(settings: &[String]) -> Client {
        let mut command = Command::new(BIN);
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
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Client {
            child,
            stdin,
            stdout,
            next_id: 0,
        }
    }

    pub fn send(&mut self, method: &str, params: Value) -> u64 {
        self.next_id += 1;
        let line =
            json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params});
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        self.next_id
    }

    pub fn receive(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let value: Value = serde_json::from_str(&line).expect("reply");
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
        let _ = self.send("shutdown", json!({}));
        let _ = self.child.wait();
    }
}
