//! A real client for the real binary: spawns `opencode-worker` with piped stdio and speaks
//! JSON-RPC to it line by line, the way the plugin does.
#![allow(dead_code)]

pub mod rpc;
pub mod sshd;

use opencode_worker::protocol::table::{self, Method};
pub use rpc::PATIENCE;
use rpc::{Lines, Rpc};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_opencode-worker");

pub struct Worker {
    pub child: Child,
    rpc: Rpc,
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
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        Worker {
            child,
            rpc: Rpc::new("worker", stdin, stdout, Lines::ProtocolOnly),
            base,
            marker: format!(
                "m{}",
                std::process::id() as u64 * 1_000_000 + rand_u32() as u64
            ),
        }
    }

    pub fn send_raw(&mut self, line: &[u8]) {
        self.rpc.send_raw(line)
    }

    /// Sends a request and returns its id without waiting.
    pub fn request(&mut self, method: &str, params: Value) -> u64 {
        self.rpc.request(method, params)
    }

    /// The next line the worker writes, whatever it answers.
    pub fn next_line(&mut self) -> Value {
        self.rpc.next_line()
    }

    pub fn reply_to(&mut self, id: u64) -> Value {
        self.rpc.reply_to(id)
    }

    /// Full reply (result or error) of one call.
    pub fn call_raw(&mut self, method: &str, params: Value) -> Value {
        self.rpc.call_raw(method, params)
    }

    /// The `result` of one call; panics with the error when there is one.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.rpc.call(method, params)
    }

    /// The `error` of one call; panics when it succeeded.
    pub fn call_err(&mut self, method: &str, params: Value) -> Value {
        self.rpc.call_err(method, params)
    }

    /// One method of the table, typed both ways: the method name is the table's.
    pub fn request_typed<M: Method>(&mut self, params: &M::Params) -> M::Result {
        self.rpc.request_typed::<M>(params)
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
        self.rpc.close_stdin();
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
        self.rpc.close_stdin();
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

/// A bare `serve` on the session base `base`, stdin and stdout piped: for tests that drive
/// the transport itself (a client that never reads, the next worker on a dead one's base)
/// rather than through `Worker`.
pub fn spawn_serve(base: &Path) -> Child {
    Command::new(BIN)
        .args([
            "serve",
            "--set",
            &format!("session.base_dir={}", base.display()),
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the worker")
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
