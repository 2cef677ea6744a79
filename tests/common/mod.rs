//! A real client for the real binary: spawns `opencode-worker` with piped stdio and speaks
//! JSON-RPC to it line by line, the way the plugin does.
#![allow(dead_code)]

pub mod sshd;

use opencode_worker::protocol::table::{self, Method};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_opencode-worker");
/// Generous: only there so a broken build fails instead of hanging CI.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub struct Worker {
    pub child: Child,
    stdin: Option<ChildStdin>,
    replies: Receiver<Value>,
    pending: HashMap<String, Value>,
    unmatched: Vec<Value>,
    next_id: u64,
    pub base: tempfile::TempDir,
    /// A value every test job carries in its environment, so leftovers can be found in /proc.
    pub marker: String,
}

impl Worker {
    pub fn start() -> Worker {
        Worker::start_with(&[])
    }

    /// `settings` are `--set key=value` overrides.
    pub fn start_with(settings: &[&str]) -> Worker {
        Worker::start_full(settings, &[])
    }

    /// A worker with the command policy off: for tests aimed at the kernel and governance
    /// walls behind the policy, not at the policy in front.
    pub fn start_walls(settings: &[&str], env: &[(&str, &str)]) -> Worker {
        let mut with_policy_off = vec!["policy.mode=off"];
        with_policy_off.extend_from_slice(settings);
        Worker::start_full(&with_policy_off, env)
    }

    /// Also sets variables in the worker's own environment.
    pub fn start_full(settings: &[&str], env: &[(&str, &str)]) -> Worker {
        let base = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .arg("--set")
            .arg(format!("session.base_dir={}", base.path().display()))
            .env(
                "RUST_LOG",
                std::env::var("TEST_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        command.envs(env.iter().copied());
        for setting in settings {
            command.arg("--set").arg(setting);
        }
        let mut child = command.spawn().expect("spawn opencode-worker");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, replies) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("worker wrote a non-JSON line {line:?}: {e}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Worker {
            child,
            stdin,
            replies,
            pending: HashMap::new(),
            unmatched: Vec::new(),
            next_id: 1,
            base,
            marker: format!(
                "m{}",
                std::process::id() as u64 * 1_000_000 + rand_u32() as u64
            ),
        }
    }

    pub fn send_raw(&mut self, line: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Sends a request and returns its id without waiting.
    pub fn request(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_raw(line.to_string().as_bytes());
        id
    }

    /// The next line the worker writes, whatever it answers.
    pub fn next_line(&mut self) -> Value {
        if !self.unmatched.is_empty() {
            return self.unmatched.remove(0);
        }
        match self.replies.recv_timeout(PATIENCE) {
            Ok(value) => value,
            Err(RecvTimeoutError::Timeout) => panic!("no reply within {PATIENCE:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("worker closed stdout"),
        }
    }

    pub fn reply_to(&mut self, id: u64) -> Value {
        let key = id.to_string();
        if let Some(value) = self.pending.remove(&key) {
            return value;
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let value = match self.replies.recv_timeout(left) {
                Ok(value) => value,
                Err(e) => panic!("no reply to {id}: {e:?}"),
            };
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
            None => panic!("{method} {params} failed: {reply}"),
        }
    }

    /// The `error` of one call; panics when it succeeded.
    pub fn call_err(&mut self, method: &str, params: Value) -> Value {
        let reply = self.call_raw(method, params.clone());
        match reply.get("error") {
            Some(error) => error.clone(),
            None => panic!("{method} {params} unexpectedly succeeded: {reply}"),
        }
    }

    /// One method of the table, typed both ways: the method name is the table's.
    pub fn request_typed<M: Method>(&mut self, params: &M::Params) -> M::Result {
        let params = serde_json::to_value(params).expect("params serialize");
        let result = self.call(M::NAME, params);
        serde_json::from_value(result.clone())
            .unwrap_or_else(|e| panic!("{} answered {result} that does not parse: {e}", M::NAME))
    }

    /// Dispatches a job that carries this worker's marker in its environment.
    pub fn dispatch(&mut self, mut spec: Value) -> Value {
        self.mark(&mut spec);
        self.call(table::DispatchJob::NAME, spec)
    }

    pub fn mark(&self, spec: &mut Value) {
        let env = spec
            .as_object_mut()
            .expect("spec is an object")
            .entry("env")
            .or_insert_with(|| json!({}));
        env["OCW_TEST_MARKER"] = json!(self.marker);
    }

    /// Polls until the job has ended.
    pub fn wait_ended(&mut self, job_id: &str) -> Value {
        let mut last = Value::Null;
        poll_until(&format!("job {job_id} ends"), || {
            let job = self.call(table::GetStatus::NAME, json!({"job_id": job_id}));
            let ended = !matches!(job["status"].as_str(), Some("queued" | "running"));
            last = job.clone();
            ended.then_some(job)
        })
        .unwrap_or_else(|| panic!("job {job_id} did not end: {last}"))
    }

    /// Polls until the job has `wanted` status. Requests are served concurrently, so a poll
    /// may overtake the dispatch that creates the job: "unknown job" means "not yet".
    pub fn wait_status(&mut self, job_id: &str, wanted: &str) -> Value {
        let mut last = Value::Null;
        poll_until(&format!("job {job_id} becomes {wanted}"), || {
            let reply = self.call_raw(table::GetStatus::NAME, json!({"job_id": job_id}));
            let found = match reply.get("result") {
                Some(job) => (job["status"] == wanted).then(|| job.clone()),
                None => {
                    assert_eq!(reply["error"]["code"], -32001, "{reply}");
                    None
                }
            };
            last = reply;
            found
        })
        .unwrap_or_else(|| panic!("job {job_id} never became {wanted}: {last}"))
    }

    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    pub fn wait_exit(&mut self, patience: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Session dirs (live or destroyed but not yet deleted) under this worker's private dir;
    /// the empty spares it keeps ready hold nothing of any job and are left out.
    pub fn leftover_dirs(&self) -> Vec<PathBuf> {
        let mut workers = Vec::new();
        collect_dirs(self.base.path(), &mut workers);
        let mut sessions = Vec::new();
        for dir in workers {
            collect_dirs(&dir, &mut sessions);
        }
        sessions.retain(|path| {
            !path.file_name().is_some_and(|name| {
                let name = name.to_string_lossy();
                name.starts_with(".spare-") || name == ".lock"
            })
        });
        sessions
    }

    /// Waits until no session dir is left (deletion finishes on a janitor thread).
    pub fn assert_no_session_dirs(&self) {
        eventually("every session dir deleted", || {
            self.leftover_dirs().is_empty()
        });
    }

    /// Anything at all under the configured base: after exit, nothing may remain.
    pub fn leftover_anything(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        collect_dirs(self.base.path(), &mut found);
        found
    }

    pub fn leftover_processes(&self) -> Vec<u32> {
        processes_with_marker(&self.marker)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stdin.take();
        if self.wait_exit(Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn collect_dirs(dir: &Path, found: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            found.push(entry.path());
        }
    }
}

/// Pids whose environment holds `OCW_TEST_MARKER=<marker>`.
pub fn processes_with_marker(marker: &str) -> Vec<u32> {
    let needle = format!("OCW_TEST_MARKER={marker}");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // Zombies have an empty environ; a zombie is already dead.
        if let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ"))
            && environ
                .split(|&b| b == 0)
                .any(|var| var == needle.as_bytes())
        {
            pids.push(pid);
        }
    }
    pids
}

/// Retries `check` until it is true or the patience runs out; cleanup is asynchronous.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    if poll_until(what, || check().then_some(())).is_none() {
        panic!("never happened: {what}");
    }
}

/// The one polling loop: `probe` every 20 ms until it answers, `None` once `PATIENCE` is spent.
/// No test asserts on how long it took (the machine may be busy).
pub fn poll_until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            eprintln!("gave up waiting after {PATIENCE:?}: {what}");
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    nanos ^ COUNTER.fetch_add(7919, std::sync::atomic::Ordering::Relaxed)
}
