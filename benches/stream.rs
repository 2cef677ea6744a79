//! Streaming throughput: bytes per second from a job's stdout to the client through
//! `worker_subscribe_job` notifications, against `cat`-like delivery of the same bytes through a
//! plain pipe, in one run (interleaved rounds, so machine load hits both alike).
//!
//! `cargo bench --bench stream` (BENCH_STREAM_MIB=N for the size, default 256; BENCH_ROUNDS=N).

use serde::Deserialize;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_opencode-worker");

fn producer(bytes: u64) -> String {
    format!("yes 'the quick brown fox jumps over the lazy dog 0123456789' | head -c {bytes}")
}

/// The floor: the same producer, its stdout read through a pipe by this process.
fn pipe_round(bytes: u64) -> f64 {
    let start = Instant::now();
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(producer(bytes))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    child.wait().unwrap();
    assert_eq!(total, bytes);
    total as f64 / start.elapsed().as_secs_f64()
}

#[derive(Deserialize)]
struct Note<'a> {
    #[serde(borrow)]
    params: Params<'a>,
}
#[derive(Deserialize)]
struct Params<'a> {
    #[serde(borrow)]
    result: Event<'a>,
}
#[derive(Deserialize)]
struct Event<'a> {
    kind: &'a str,
    #[serde(default)]
    bytes: u64,
    #[serde(default)]
    missed_bytes: Option<u64>,
}

struct Worker {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    next: u64,
}

impl Worker {
    fn start() -> Worker {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(["--set", "governance.maximums.output=64GiB"])
            .args(["--set", "session.output_keep_bytes=1MiB"])
            .args(["--set", "worker.event_history_bytes=16MiB"])
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        Worker {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::with_capacity(256 * 1024, child.stdout.take().unwrap()),
            child,
            next: 0,
        }
    }

    fn send(&mut self, method: &str, params: Value) {
        self.next += 1;
        let line = json!({"jsonrpc": "2.0", "id": self.next, "method": method, "params": params});
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn line(&mut self, buf: &mut String) {
        buf.clear();
        self.stdout.read_line(buf).unwrap();
    }

    /// (delivered bytes per second, delivered, missed)
    fn round(&mut self, bytes: u64) -> (f64, u64, u64) {
        let start = Instant::now();
        let job_id = format!("s{}", self.next);
        self.send(
            "worker_dispatch_job",
            json!({"job_id": job_id, "command": producer(bytes), "limits": {"output": "32GiB", "timeout": 600000}}),
        );
        let mut buf = String::new();
        self.line(&mut buf);
        self.send("worker_subscribe_job", json!({"job_id": job_id}));
        self.line(&mut buf);
        assert!(buf.contains("\"result\""), "{buf}");
        let (mut delivered, mut missed) = (0u64, 0u64);
        loop {
            self.line(&mut buf);
            let note: Note = serde_json::from_str(&buf).expect("notification");
            match note.params.result.kind {
                "stdout" => delivered += note.params.result.bytes,
                "lagged" => missed += note.params.result.missed_bytes.unwrap_or(0),
                "end" => break,
                _ => {}
            }
        }
        let rate = delivered as f64 / start.elapsed().as_secs_f64();
        (rate, delivered, missed)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo test --all-targets` runs bench targets without --bench: keep that a quick check.
    let benching = std::env::args().any(|arg| arg == "--bench");
    let mib: u64 = std::env::var("BENCH_STREAM_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 256 } else { 4 });
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 3 } else { 1 });
    let bytes = mib << 20;
    let mut worker = Worker::start();
    let (mut pipe, mut stream) = (Vec::new(), Vec::new());
    let (mut delivered, mut missed) = (0u64, 0u64);
    for _ in 0..rounds {
        pipe.push(pipe_round(bytes));
        let (rate, d, m) = worker.round(bytes);
        stream.push(rate);
        delivered += d;
        missed += m;
    }
    drop(worker.stdin);
    let _ = worker.child.wait();
    let (pipe, stream) = (median(pipe), median(stream));
    println!("stream bench: {mib} MiB per round, {rounds} rounds (median)");
    println!(
        "  pipe (sh producer -> this process):          {:8.1} MiB/s",
        pipe / 1048576.0
    );
    println!(
        "  worker (job stdout -> JSON-RPC notification): {:8.1} MiB/s",
        stream / 1048576.0
    );
    println!("  ratio worker/pipe: {:.3}", stream / pipe);
    println!(
        "  delivered {delivered} B, announced missed {missed} B ({:.2}% lagged)",
        100.0 * missed as f64 / (delivered + missed).max(1) as f64
    );
}
