//! Escape attempts the worker contains with its own governance, kernel sandbox or not: output
//! floods, secrets in the worker's environment, `files` path traversal, jobs that ignore
//! SIGTERM, files beyond the size limit, symlinks out of `output/`. Each is driven through the
//! real binary's stdio protocol, and the worker must stay healthy afterwards.
//!
//! Every scenario runs twice (`cold_and_warm!`): `cold_start::` with every sandbox built in its
//! job's start, `warm_start::` with prepared (warm) sandboxes.

use crate::common;
use crate::warm::{Slots, assert_start_agrees, cold_and_warm};
use common::*;
use opencode_worker::protocol::table::{self, Method};
use serde_json::{Value, json};

/// The worker still answers and runs jobs.
fn assert_healthy(worker: &mut Worker) {
    let job = worker.dispatch(json!({"command": "echo alive", "wait_ms": 20000}));
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(job["stdout"], "alive\n");
    assert_start_agrees(worker, &job);
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

fn a_one_gib_output_flood_is_cut_and_the_worker_stays_small(slots: Slots) {
    let mut worker = slots.start_walls(&[], &[]);
    let job = worker.dispatch(json!({
        "command": "head -c 1073741824 /dev/zero",
        "limits": {"output": 1048576},
        "wait_ms": 60000,
    }));
    assert_eq!(job["status"], "killed", "{}", job["status"]);
    assert_eq!(job["reason"], "output_limit");
    assert_start_agrees(&mut worker, &job);
    let hwm = vm_hwm_kib(worker.child.id());
    assert!(
        hwm < 200 * 1024,
        "worker peak RSS {hwm} KiB after a 1 GiB flood"
    );
    assert_healthy(&mut worker);
}

fn the_workers_secrets_never_reach_a_job(slots: Slots) {
    let mut worker = slots.start_walls(
        &[],
        &[
            ("GITHUB_TOKEN", "ghp_leaked_token"),
            ("AWS_SECRET_ACCESS_KEY", "aws_leaked_key"),
            ("OPENAI_API_KEY", "sk-leaked"),
            ("SSH_AUTH_SOCK", "/tmp/ssh-leak/agent.1"),
        ],
    );
    let job = worker.dispatch(json!({"command": "env; cat /proc/self/environ", "wait_ms": 20000}));
    let out = job["stdout"].as_str().unwrap_or_default();
    for secret in [
        "ghp_leaked",
        "aws_leaked",
        "sk-leaked",
        "ssh-leak",
        "SSH_AUTH_SOCK",
    ] {
        assert!(!out.contains(secret), "{secret} leaked: {out}");
    }
    assert_healthy(&mut worker);
}

fn files_cannot_traverse_out_of_the_work_dir(slots: Slots) {
    let mut worker = slots.start_walls(&[], &[]);
    for name in [
        "../escape.txt",
        "a/../../escape.txt",
        "/etc/escape.txt",
        "../../../../tmp/x",
    ] {
        let mut spec = json!({"command": "true", "files": {name: "x"}});
        worker.mark(&mut spec);
        let error = worker.call_err(table::DispatchJob::NAME, spec);
        assert_eq!(error["code"], -32006, "{name}: {error}");
    }
    assert!(!worker.base.path().join("escape.txt").exists());
    assert!(!std::path::Path::new("/etc/escape.txt").exists());
    assert_healthy(&mut worker);
}

fn a_job_that_ignores_sigterm_is_killed_at_its_timeout(slots: Slots) {
    let mut worker = slots.start_walls(&["session.kill_grace_ms=300"], &[]);
    let job = worker.dispatch(json!({
        "command": "trap '' TERM; while :; do sleep 1; done",
        "limits": {"timeout": 500},
        "wait_ms": 20000,
    }));
    assert_eq!(job["status"], "timeout", "{job}");
    assert_eq!(job["reason"], "timeout");
    assert_start_agrees(&mut worker, &job);
    eventually("no process of the job left", || {
        worker.leftover_processes().is_empty()
    });
    assert_healthy(&mut worker);
}

fn a_sparse_file_beyond_the_file_size_limit_fails(slots: Slots) {
    let mut worker = slots.start_walls(&[], &[]);
    let job = worker.dispatch(json!({
        "command": "truncate -s 4G big && echo made",
        "wait_ms": 20000,
    }));
    assert_ne!(job["status"], "finished", "{job}");
    assert!(!job["stdout"].as_str().unwrap_or_default().contains("made"));
    assert_healthy(&mut worker);
}

fn a_symlink_to_etc_shadow_in_output_does_not_leak_it(slots: Slots) {
    let mut worker = slots.start_walls(&[], &[]);
    let job = worker.dispatch(json!({
        "command": "ln -s /etc/shadow \"$OUTPUT_DIR/shadow\"; ln -s /etc/passwd \"$OUTPUT_DIR/passwd\"; echo ok > \"$OUTPUT_DIR/real.txt\"",
        "wait_ms": 20000,
    }));
    let artifacts = job["artifacts"].as_array().cloned().unwrap_or_default();
    for artifact in &artifacts {
        let content = artifact["content"].as_str().unwrap_or_default();
        assert!(!content.contains("root:"), "leaked through {artifact}");
    }
    let collected = worker.call(
        table::CollectOutput::NAME,
        json!({"job_id": job["job_id"], "include_artifacts": true}),
    );
    let text: Value = collected["artifacts"].clone();
    assert!(!text.to_string().contains("root:"), "{text}");
    assert_healthy(&mut worker);
}

fn passing_the_output_limit_right_before_exit_still_ends_output_limit(slots: Slots) {
    let mut worker = slots.start_walls(&["worker.max_concurrent_sessions=8"], &[]);
    // The job exits right after passing its cap: its end must not depend on which of the
    // exit and the pump's notice the runner sees first. Eight at a time, so the runner's
    // wake-ups interleave the way they do on a busy host.
    let mut ends = Vec::new();
    for _ in 0..12 {
        let ids: Vec<String> = (0..8)
            .map(|_| {
                let job = worker.dispatch(json!({
                    "command": "head -c 70000 /dev/zero",
                    "limits": {"output": 65536},
                }));
                job["job_id"].as_str().unwrap().to_owned()
            })
            .collect();
        for id in ids {
            let job = worker.wait_ended(&id);
            ends.push(format!("{}/{}", job["status"], job["reason"]));
        }
    }
    let wrong: Vec<&String> = ends
        .iter()
        .filter(|end| *end != "\"killed\"/\"output_limit\"")
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} runs: {wrong:?}",
        wrong.len(),
        ends.len()
    );
    let job = worker.dispatch(json!({
        "command": "head -c 65536 /dev/zero",
        "limits": {"output": 65536},
        "wait_ms": 20000,
    }));
    assert_eq!(
        job["status"], "finished",
        "exactly the cap is within it: {job}"
    );
    assert_healthy(&mut worker);
}

fn sparse_artifacts_are_collected_within_bounds(slots: Slots) {
    let mut worker = slots.start_walls(&["governance.max_file_size=4GiB"], &[]);
    let job = worker.dispatch(json!({
        "command": "for i in 1 2 3 4 5 6 7 8; do truncate -s 2G \"$OUTPUT_DIR/sparse$i\"; done; \
                    echo small > \"$OUTPUT_DIR/small.txt\"",
        "limits": {"timeout": 10000},
        "wait_ms": 120000,
    }));
    assert_eq!(job["status"], "finished", "{job}");
    let collect_ms = job["metrics"]["collect_ms"].as_f64().unwrap_or(-1.0);
    eprintln!("COLLECT of 8 sparse 2 GiB artifacts took {collect_ms} ms");
    let artifacts = job["artifacts"].as_array().cloned().unwrap_or_default();
    assert_eq!(artifacts.len(), 9, "{artifacts:?}");
    for artifact in &artifacts {
        if artifact["path"] == "small.txt" {
            assert_eq!(artifact["content"], "small\n", "{artifact}");
            assert!(artifact["sha256"].is_string(), "{artifact}");
        } else {
            // Past the hashing budget: listed with the exact size, no byte read.
            assert_eq!(artifact["size"], 2u64 << 30, "{artifact}");
            assert!(artifact.get("sha256").is_none(), "{artifact}");
        }
    }
    assert_healthy(&mut worker);
}

fn cancel_works_during_collect(slots: Slots) {
    let mut worker = slots.start_walls(&["governance.max_file_size=4GiB"], &[]);
    // Dense files within the hashing budget: COLLECT reads them for a while.
    let mut spec = json!({
        "command": "for i in 1 2 3 4; do head -c 60000000 /dev/urandom > \"$OUTPUT_DIR/blob$i\"; done",
        "limits": {"timeout": 60000},
    });
    worker.mark(&mut spec);
    let job = worker.call(table::DispatchJob::NAME, spec);
    let id = job["job_id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + PATIENCE;
    let in_collect = loop {
        let job = worker.call(table::GetStatus::NAME, json!({"job_id": id}));
        if job["phase"] == "collect" {
            break true;
        }
        if !matches!(job["status"].as_str(), Some("queued" | "running"))
            || std::time::Instant::now() > deadline
        {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    if !in_collect {
        eprintln!("SKIPPED: COLLECT ended before a poll saw it (a fast machine)");
        return;
    }
    let started = std::time::Instant::now();
    let reply = worker.call(table::CancelJob::NAME, json!({"job_id": id}));
    eprintln!("cancel during COLLECT answered in {:?}", started.elapsed());
    assert_eq!(reply["status"], "cancelled", "{reply}");
    assert_eq!(worker.wait_ended(&id)["status"], "cancelled");
    assert_healthy(&mut worker);
}

cold_and_warm!(
    a_one_gib_output_flood_is_cut_and_the_worker_stays_small,
    the_workers_secrets_never_reach_a_job,
    files_cannot_traverse_out_of_the_work_dir,
    a_job_that_ignores_sigterm_is_killed_at_its_timeout,
    a_sparse_file_beyond_the_file_size_limit_fails,
    a_symlink_to_etc_shadow_in_output_does_not_leak_it,
    passing_the_output_limit_right_before_exit_still_ends_output_limit,
    sparse_artifacts_are_collected_within_bounds,
    cancel_works_during_collect,
);
