//! However the worker is told to stop (stdin EOF, `shutdown`, SIGTERM, SIGINT, its client
//! killed), every job ends, every session dir goes, pending replies are flushed, and it exits 0.

use crate::common;
use common::*;
use opencode_worker::protocol::table::{self, Method};
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
    let waiting = worker.request(table::DispatchJob::NAME, spec);
    let shutdown = worker.request(table::Shutdown::NAME, json!({}));
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
    let second = spawn_serve(first.base.path());
    let own_prefix = |path: &std::path::PathBuf| path.join(".lock").exists();
    eventually("the abandoned dir is swept", || {
        let left = first.leftover_anything();
        left.len() == 1 && own_prefix(&left[0])
    });
    drop(second);
}

/// Two running jobs that ignore SIGTERM and leave a `setsid` grandchild, two queued, each
/// dispatched with a long wait: the ids of the four dispatch calls.
fn start_stubborn_jobs(worker: &mut Worker, wait_ms: u64) -> Vec<u64> {
    let ids: Vec<u64> = (0..4)
        .map(|i| {
            let mut spec = json!({
                "job_id": format!("stubborn-{i}"),
                "command": "trap '' TERM; setsid sleep 3000 & sleep 3001",
                "wait_ms": wait_ms,
            });
            worker.mark(&mut spec);
            worker.request(table::DispatchJob::NAME, spec)
        })
        .collect();
    eventually("two jobs with their grandchildren are up", || {
        worker.leftover_processes().len() >= 4
    });
    ids
}

#[test]
fn every_way_to_stop_ends_running_and_queued_jobs_as_worker_shutdown() {
    for how in ["shutdown", "SIGTERM", "SIGINT", "SIGHUP"] {
        let mut worker = Worker::start_with(&["worker.max_concurrent_sessions=2"]);
        let ids = start_stubborn_jobs(&mut worker, 60_000);
        match how {
            "shutdown" => {
                let id = worker.request(table::Shutdown::NAME, json!({}));
                assert_eq!(worker.reply_to(id)["result"], json!({}));
            }
            signal => {
                let number = match signal {
                    "SIGTERM" => libc::SIGTERM,
                    "SIGINT" => libc::SIGINT,
                    _ => libc::SIGHUP,
                };
                unsafe { libc::kill(worker.child.id() as i32, number) };
            }
        }
        let started = Instant::now();
        for id in ids {
            let job = &worker.reply_to(id)["result"];
            assert_eq!(
                (&job["status"], &job["reason"]),
                (&json!("killed"), &json!("worker_shutdown")),
                "{how}: {job}"
            );
        }
        let status = worker.wait_exit(EXIT_BOUND).expect("exits");
        eprintln!(
            "{how} -> every owed reply and exit in {:?}",
            started.elapsed()
        );
        assert!(status.success(), "{how}: {status:?}");
        assert_nothing_left(&worker, how);
    }
}

#[test]
fn after_stdin_eof_the_requests_already_read_are_served_and_their_waits_honoured() {
    let mut worker = Worker::start_with(&["worker.max_concurrent_sessions=2"]);
    let ids = start_stubborn_jobs(&mut worker, 1500);
    // Sent and then EOF at once: the worker must answer it, not refuse it as shutting down.
    let mut spec = json!({"job_id": "late", "command": "echo late", "wait_ms": 100});
    worker.mark(&mut spec);
    let late = worker.request(table::DispatchJob::NAME, spec);
    worker.close_stdin();
    for id in ids {
        let job = &worker.reply_to(id)["result"];
        // The wait ran its full length: the job was still there, running or queued.
        assert!(
            matches!(job["status"].as_str(), Some("running" | "queued")),
            "{job}"
        );
    }
    let late = worker.reply_to(late);
    assert_eq!(late["result"]["status"], "queued", "{late}");
    let status = worker.wait_exit(EXIT_BOUND).expect("exits after the waits");
    assert!(status.success(), "{status:?}");
    assert_nothing_left(&worker, "stdin EOF after waits");
}

#[test]
fn the_readme_pipe_returns_the_result_every_time() {
    let line = r#"{"jsonrpc":"2.0","id":1,"method":"worker_dispatch_job","params":{"command":"echo hi","wait_ms":5000}}"#;
    let base = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for _ in 0..20 {
        let mut child = std::process::Command::new(BIN)
            .args([
                "--set",
                &format!("session.base_dir={}", base.path().display()),
            ])
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            writeln!(stdin, "{line}").unwrap();
        }
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        let reply: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        results.push((
            reply["result"]["status"].clone(),
            reply["result"]["stdout"].clone(),
        ));
    }
    let want = (json!("finished"), json!("hi\n"));
    assert!(results.iter().all(|got| *got == want), "{results:?}");
    assert!(std::fs::read_dir(base.path()).unwrap().next().is_none());
}
