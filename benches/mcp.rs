//! Dispatch-to-result latency of a `true` job through `opencode-worker mcp` (a `tools/call` of
//! worker_dispatch_job with wait_ms) against `opencode-worker serve` (the JSON-RPC call), in one
//! run: two worker processes side by side, calls interleaved so machine load hits both alike.
//! Both clients write one line and read lines until the reply, so the difference is the server
//! side: rmcp's framing and dispatch, the in-process call, and the rendered text.
//!
//! `cargo bench --bench mcp` (BENCH_ROUNDS=N, default 300).

mod common;

use common::{BIN, Client};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

struct McpClient {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl McpClient {
    fn start(base: &std::path::Path) -> McpClient {
        let mut child = Command::new(BIN)
            .arg("mcp")
            .arg("--set")
            .arg(format!("session.base_dir={}", base.display()))
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn worker mcp");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut client = McpClient {
            child,
            stdin,
            stdout,
            next_id: 0,
        };
        client.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "bench", "version": "0"}}),
        );
        client.write(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        client
    }

    fn write(&mut self, message: Value) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.write(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let mut line = String::new();
            self.stdout.read_line(&mut line).unwrap();
            let reply: Value = serde_json::from_str(&line).expect("a JSON line");
            if reply["id"] == id {
                return reply["result"].clone();
            }
        }
    }
}

impl Drop for McpClient {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.wait();
    }
}

const JOB: &str = "true";

fn through_mcp(client: &mut McpClient) -> Duration {
    let start = Instant::now();
    let result = client.request(
        "tools/call",
        json!({"name": "worker_dispatch_job", "arguments": {"command": JOB, "wait_ms": 30000}}),
    );
    let took = start.elapsed();
    assert_eq!(
        result["structuredContent"]["status"], "finished",
        "{result}"
    );
    took
}

fn through_serve(client: &mut Client) -> Duration {
    let start = Instant::now();
    let reply = client.call(
        "worker_dispatch_job",
        json!({"command": JOB, "wait_ms": 30000}),
    );
    let took = start.elapsed();
    assert_eq!(reply["result"]["status"], "finished", "{reply}");
    took
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[at].as_secs_f64() * 1000.0
}

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mcp_base = tempfile::tempdir().unwrap();
    let serve_base = tempfile::tempdir().unwrap();
    let mut mcp = McpClient::start(mcp_base.path());
    let mut serve = Client::start(&[format!("session.base_dir={}", serve_base.path().display())]);
    for _ in 0..20 {
        through_mcp(&mut mcp);
        through_serve(&mut serve);
    }
    let (mut by_mcp, mut by_serve) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first, so neither always follows the other's cleanup.
        if round % 2 == 0 {
            by_mcp.push(through_mcp(&mut mcp));
            by_serve.push(through_serve(&mut serve));
        } else {
            by_serve.push(through_serve(&mut serve));
            by_mcp.push(through_mcp(&mut mcp));
        }
    }
    by_mcp.sort();
    by_serve.sort();
    println!("dispatch-to-result of `{JOB}` with wait_ms, {rounds} interleaved rounds");
    println!("{:<8} {:>9} {:>9}", "surface", "p50 ms", "p90 ms");
    for (name, samples) in [("serve", &by_serve), ("mcp", &by_mcp)] {
        println!(
            "{name:<8} {:>9.3} {:>9.3}",
            percentile(samples, 0.5),
            percentile(samples, 0.9)
        );
    }
    println!(
        "ratio mcp/serve: p50 {:.3}, p90 {:.3}",
        percentile(&by_mcp, 0.5) / percentile(&by_serve, 0.5),
        percentile(&by_mcp, 0.9) / percentile(&by_serve, 0.9)
    );
}
