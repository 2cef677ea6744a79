//! However the worker is told to stop (stdin EOF, `shutdown`, SIGTERM, SIGINT, its client
//! killed), every job ends, every session dir goes, pending replies are flushed, and it exits 0.

mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// The contract says 2 s; the bound here is loose because CI machines are shared.
const EXIT_BOUND: Duration = Duration::from_secs(10);

fn start_busy_worker() -> Worker {
    let mut worker = Worker::start_with(&["worker.max_concurrent_sessions=2"]);
    worker.dispatch(json!({"job_id": "plain", "command": "sleep 30"}));
    worker.dispatch(json!({"job_id": "stubborn", "command": "trap '' TERM; sleep 30"}));
    worker.dispatch(json!({"job_id": "escaper", "command": "sleep 30 & sleep 30"}));
    worker.dispatch(json!({"job_id": "queued", "command": "sleep 30"}));
    worker.wait_status("plain", "running");
    worker.wait_status("stubborn", "running");
    eventually("job processes are up", || {
        worker.leftover_processes().len() >= 2
    });
    worker
}

fn assert_nothing_left(worker: &Worker, how: &str) {
    eventually(&format!("{how}: no job process left"), || {
        worker.leftover_processes().is_empty()
    });
    assert!(
        worker.leftover_anything().is_empty(),
        "{how}: {:?}",
        worker.leftover_anything()
    );
}

#[test]
fn stdin_eof_with_jobs_running() {
    let mut worker = start_busy_worker();
    let started = Instant::now();
    worker.close_stdin();
    let status = worker.wait_exit(EXIT_BOUND).expect("exits after stdin EOF");
    eprintln!("stdin EOF -> exit in {:?}", started.elapsed());
    assert!(status.success(), "{status:?}");
    assert_nothing_left(&worker, "stdin EOF");
}

#[test]
fn shutdown_method_answers_flushes_waiters_and_exits() {
    let mut worker = start_busy_worker();
    let mut spec = json!({"command": "sleep 30", "wait_ms": 60000});
    worker.mark(&mut spec);
    let waiting = worker.request("worker_dispatch_job", spec);
    let shutdown = worker.request("shutdown", json!({}));
    assert_eq!(worker.reply_to(shutdown)["result"], json!({}));
    // The call that was waiting on its job is answered, not dropped.
    let waited = worker.reply_to(waiting);
    let outcome = waited
        .get("result")
        .map(|job| (job["status"].clone(), job["reason"].clone()));
    let refused = waited.get("error").map(|e| e["code"].clone());
    assert!(
        outcome == Some((json!("killed"), json!("worker_shutdown")))
            || refused == Some(json!(-32003)),
        "{waited}"
    );
    let status = worker.wait_exit(EXIT_BOUND).expect("exits after shutdown");
    assert!(status.success());
    assert_nothing_left(&worker, "shutdown");
}

#[test]
fn sigterm_and_sigint() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut worker = start_busy_worker();
        unsafe { libc::kill(worker.child.id() as i32, signal) };
        let status = worker.wait_exit(EXIT_BOUND).expect("exits on signal");
        assert!(status.success(), "signal {signal}: {status:?}");
        assert_nothing_left(&worker, "signal");
    }
}

#[test]
fn a_client_killed_with_sigkill_leaves_nothing() {
    let base = tempfile::tempdir().unwrap();
    let marker = format!("sigkill-client-{}", std::process::id());
    // A real client process that owns the worker's stdin, dispatches, then is SIGKILLed.
    let client = r#"
import subprocess, sys, json, time
bin, base, marker = sys.argv[1:4]
worker = subprocess.Popen([bin, "serve", "--set", "session.base_dir=" + base],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE)
for i in range(3):
    spec = {"command": "sleep 60", "env": {"OCW_TEST_MARKER": marker}}
    worker.stdin.write((json.dumps({"jsonrpc": "2.0", "id": i, "method": "worker_dispatch_job", "params": spec}) + "\n").encode())
    worker.stdin.flush()
    worker.stdout.readline()
print(worker.pid, flush=True)
time.sleep(600)
"#;
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut python = std::process::Command::new("python3")
        .args([
            "-c",
            client,
            BIN,
            &base.path().display().to_string(),
            &marker,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 is needed for this test");
    let stdout = python.stdout.take().unwrap();
    let mut python = KillOnDrop(python);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    let worker_pid: i32 = line.trim().parse().expect("worker pid");
    eventually("jobs running", || processes_with_marker(&marker).len() >= 3);
    python.0.kill().unwrap();
    python.0.wait().unwrap();
    eventually(
        "the worker exits once its client is gone",
        || unsafe { libc::kill(worker_pid, 0) } != 0,
    );
    eventually("no job process left", || {
        processes_with_marker(&marker).is_empty()
    });
    let left: Vec<_> = std::fs::read_dir(base.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_worker_killed_with_sigkill_takes_its_jobs_along_and_its_dir_is_swept_later() {
    let mut first = Worker::start();
    first.dispatch(json!({"job_id": "orphan-to-be", "argv": ["sleep", "60"]}));
    first.wait_status("orphan-to-be", "running");
    eventually("the job runs", || !first.leftover_processes().is_empty());
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    eventually("the job died with its worker", || {
        first.leftover_processes().is_empty()
    });
    assert!(
        !first.leftover_anything().is_empty(),
        "a SIGKILLed worker cannot clean up"
    );

    // The next worker on the same base finds the dir unlocked and removes it.
    let second = std::process::Command::new(BIN)
        .args([
            "serve",
            "--set",
            &format!("session.base_dir={}", first.base.path().display()),
        ])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let own_prefix = |path: &std::path::PathBuf| path.join(".lock").exists();
    eventually("the abandoned dir is swept", || {
        let left = first.leftover_anything();
        left.len() == 1 && own_prefix(&left[0])
    });
    drop(second);
}
