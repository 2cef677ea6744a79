//! Jobs through the real binary: results, files, artifacts, limits, cancel, the pool's cap and
//! FIFO queue, retention, and that every session leaves nothing behind.

use crate::common;
use crate::warm::{Slots, assert_start_agrees, cold_and_warm};
use base64::Engine;
use common::*;
use opencode_worker::protocol::table::{self, Method};
use serde_json::json;

#[test]
fn a_job_runs_in_its_session_with_files_env_cwd_and_stdin() {
    let mut worker = Worker::start();
    let script = "#!/bin/sh\necho \"script ran in $(pwd)\"\n";
    let job = worker.dispatch(json!({
        "command": "./tools/run.sh; cat data/in.txt; printf %s \"$GREETING\"; cat; echo out > \"$OUTPUT_DIR/result.txt\"; printf '\\377' > \"$OUTPUT_DIR/bin.dat\"",
        "files": {
            "tools/run.sh": {"content": script, "executable": true},
            "data/in.txt": "from a file\n",
            "./blob.bin": {"content": base64::engine::general_purpose::STANDARD.encode([0u8, 1, 2]), "encoding": "base64"},
        },
        "env": {"GREETING": "hello from env\n"},
        "stdin": "from stdin\n",
        "wait_ms": 20000,
    }));
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(job["phase"], "done");
    assert_eq!(job["exit_code"], 0);
    let stdout = job["stdout"].as_str().unwrap();
    assert!(stdout.contains("script ran in /"), "{stdout}");
    assert!(
        stdout.contains("/work\n"),
        "the work dir is the cwd: {stdout}"
    );
    assert!(
        stdout.contains("from a file\nhello from env\nfrom stdin\n"),
        "{stdout}"
    );
    let artifacts = job["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 2, "{job}");
    assert_eq!(artifacts[0]["path"], "bin.dat");
    assert_eq!(artifacts[0]["encoding"], "base64");
    assert_eq!(artifacts[0]["content"], "/w==");
    assert_eq!(artifacts[1]["path"], "result.txt");
    assert_eq!(artifacts[1]["content"], "out\n");
    assert_eq!(artifacts[1]["size"], 4);
    let metrics = &job["metrics"];
    for key in [
        "prepare_ms",
        "spawn_ms",
        "execute_ms",
        "collect_ms",
        "destroy_ms",
        "total_ms",
    ] {
        assert!(metrics[key].as_f64().is_some(), "{key} missing: {metrics}");
    }
    assert!(metrics["limits"]["timeout"].as_u64().unwrap() > 0);
    worker.assert_no_session_dirs();
}

#[test]
fn cwd_is_created_inside_the_work_dir() {
    let mut worker = Worker::start();
    let job = worker.dispatch(json!({"argv": ["pwd"], "cwd": "sub/dir", "wait_ms": 20000}));
    assert!(
        job["stdout"].as_str().unwrap().ends_with("/work/sub/dir\n"),
        "{job}"
    );
}

#[test]
fn the_environment_is_scrubbed() {
    // The secrets are in the worker's own environment; no job may see them.
    let mut worker = Worker::start_full(
        &[],
        &[
            ("GITHUB_TOKEN", "s3cret-token"),
            ("SSH_AUTH_SOCK", "/tmp/agent.sock"),
            ("AWS_SECRET_ACCESS_KEY", "k"),
        ],
    );
    let job = worker.dispatch(json!({"command": "env", "wait_ms": 20000}));
    let env = job["stdout"].as_str().unwrap();
    assert!(env.contains("HOME="), "{env}");
    assert!(env.contains("OUTPUT_DIR="), "{env}");
    assert!(!env.contains("RUST_LOG"), "worker variables leak: {env}");
    // Toolchain homes (CARGO_HOME, RUSTUP_HOME) pass on purpose; cargo's per-build ones must not.
    assert!(
        !env.contains("CARGO_PKG") && !env.contains("CARGO_MANIFEST_DIR"),
        "worker variables leak: {env}"
    );
    for secret in ["s3cret-token", "agent.sock", "AWS_SECRET"] {
        assert!(!env.contains(secret), "{secret} leaked: {env}");
    }
}

#[test]
fn failures_are_told_apart() {
    let mut worker = Worker::start();
    let job = worker.dispatch(json!({"command": "echo partial; exit 7", "wait_ms": 20000}));
    assert_eq!(
        (
            job["status"].as_str(),
            job["reason"].as_str(),
            job["exit_code"].as_i64()
        ),
        (Some("failed"), Some("exit_code"), Some(7))
    );
    assert_eq!(job["stdout"], "partial\n");

    let job = worker.dispatch(json!({"argv": ["./no-such-tool"], "wait_ms": 20000}));
    assert_eq!(
        (job["status"].as_str(), job["reason"].as_str()),
        (Some("failed"), Some("spawn_error")),
        "{job}"
    );
    assert!(job["message"].as_str().unwrap().contains("./no-such-tool"));

    let job = worker.dispatch(json!({"command": "kill -SEGV $$", "wait_ms": 20000}));
    assert_eq!(
        (
            job["status"].as_str(),
            job["reason"].as_str(),
            job["signal"].as_i64()
        ),
        (Some("failed"), Some("signal"), Some(11)),
        "{job}"
    );
    worker.assert_no_session_dirs();
}

fn timeout_kills_a_job_that_ignores_sigterm_and_keeps_its_output(slots: Slots) {
    let mut worker = slots.start_with(&["session.kill_grace_ms=200"]);
    let job = worker.dispatch(json!({
        "command": "trap '' TERM; echo before; sleep 30; echo after",
        "limits": {"timeout": 300},
        "wait_ms": 20000,
    }));
    assert_eq!(job["status"], "timeout", "{job}");
    assert_eq!(job["reason"], "timeout");
    assert_start_agrees(&mut worker, &job);
    assert_eq!(
        job["signal"], 9,
        "SIGTERM was ignored, so SIGKILL ended it: {job}"
    );
    assert_eq!(job["stdout"], "before\n");
    eventually("no job process left", || {
        worker.leftover_processes().is_empty()
    });
    worker.assert_no_session_dirs();
}

#[test]
fn cancel_a_running_job_then_again() {
    let mut worker = Worker::start_with(&["session.kill_grace_ms=300"]);
    worker.dispatch(json!({"job_id": "victim", "command": "echo started; sleep 30"}));
    eventually("the job is running and has written", || {
        let out = worker.call(table::CollectOutput::NAME, json!({"job_id": "victim"}));
        out["stdout"]["data"] == "started\n"
    });
    let job = worker.call(
        table::CancelJob::NAME,
        json!({"job_id": "victim", "reason": "user changed their mind"}),
    );
    assert_eq!(job["status"], "cancelled", "{job}");
    assert_eq!(job["reason"], "cancelled");
    assert_eq!(job["message"], "user changed their mind");
    let again = worker.call(table::CancelJob::NAME, json!({"job_id": "victim"}));
    assert_eq!(again["status"], "cancelled");
    assert_eq!(
        again["message"], "user changed their mind",
        "idempotent: the first end stays"
    );
    assert!(worker.leftover_processes().is_empty());
    let out = worker.call(table::CollectOutput::NAME, json!({"job_id": "victim"}));
    assert_eq!(out["stdout"]["data"], "started\n");
}

#[test]
fn cap_fifo_queue_busy_and_cancel_of_a_queued_job() {
    let mut worker =
        Worker::start_with(&["worker.max_concurrent_sessions=1", "worker.max_queued=3"]);
    worker.dispatch(json!({"job_id": "first", "command": "sleep 0.5"}));
    for id in ["q1", "q2", "q3"] {
        let job = worker.dispatch(
            json!({"job_id": id, "command": "sleep 0.05; echo ran > \"$OUTPUT_DIR/ran\""}),
        );
        assert_eq!(job["status"], "queued", "{job}");
    }
    let busy = worker.call_err(table::DispatchJob::NAME, json!({"command": "true"}));
    assert_eq!(busy["code"], -32003);
    assert_eq!(busy["data"], json!({"active": 1, "queued": 3, "limit": 3}));

    let cancelled = worker.call(table::CancelJob::NAME, json!({"job_id": "q2"}));
    assert_eq!(cancelled["status"], "cancelled");
    assert!(
        cancelled.get("started_at").is_none(),
        "a queued job never starts: {cancelled}"
    );

    let q1 = worker.wait_ended("q1");
    let q3 = worker.wait_ended("q3");
    let first = worker.wait_ended("first");
    assert_eq!(q1["status"], "finished");
    assert_eq!(q3["status"], "finished");
    let at = |job: &serde_json::Value, key: &str| job[key].as_str().unwrap().to_owned();
    assert!(
        at(&first, "ended_at") <= at(&q1, "started_at"),
        "the cap held"
    );
    assert!(
        at(&q1, "started_at") < at(&q3, "started_at"),
        "FIFO: q1 before q3"
    );
    let q2 = worker.call(table::CollectOutput::NAME, json!({"job_id": "q2"}));
    assert!(
        q2["artifacts"].as_array().is_none_or(|a| a.is_empty()),
        "the cancelled job never ran: {q2}"
    );
}

fn output_limit_kills_and_keeps_what_fit(slots: Slots) {
    let mut worker = slots.start_with(&[]);
    let job =
        worker.dispatch(json!({"command": "yes", "limits": {"output": 1000}, "wait_ms": 20000}));
    assert_eq!(job["status"], "killed", "{job}");
    assert_eq!(job["reason"], "output_limit");
    assert_start_agrees(&mut worker, &job);
    assert_eq!(job["stdout"].as_str().unwrap().len(), 1000);
    assert_eq!(job["stdout_truncated"], true);
    assert!(job["stdout_bytes"].as_u64().unwrap() > 1000);
}

#[test]
fn output_is_paged_and_readable_while_running() {
    let mut worker = Worker::start();
    worker.dispatch(json!({"job_id": "live", "command": "echo first; sleep 30"}));
    eventually("first line visible while running", || {
        let out = worker.call(table::CollectOutput::NAME, json!({"job_id": "live"}));
        out["status"] == "running"
            && out["stdout"]["data"] == "first\n"
            && out["stdout"]["eof"] == false
    });
    worker.call(table::CancelJob::NAME, json!({"job_id": "live"}));

    let job = worker.dispatch(json!({"job_id": "big", "command": "seq 1 20000", "wait_ms": 20000}));
    let total = job["stdout_bytes"].as_u64().unwrap();
    let mut text = String::new();
    let mut offset = 0;
    let mut pages = 0;
    loop {
        let out = worker.call(table::CollectOutput::NAME, json!({"job_id": "big", "stream_offset": offset, "max_bytes": 40000, "include_artifacts": false}));
        let page = &out["stdout"];
        text.push_str(page["data"].as_str().unwrap());
        offset = page["next_offset"].as_u64().unwrap();
        pages += 1;
        if page["eof"] == true {
            break;
        }
        assert!(pages < 100);
    }
    assert_eq!(text.len() as u64, total);
    assert_eq!(pages, total.div_ceil(40000));
    assert!(text.starts_with("1\n2\n") && text.ends_with("19999\n20000\n"));
}

#[test]
fn a_symlink_in_output_is_never_followed() {
    let mut worker = Worker::start();
    let job = worker.dispatch(json!({
        "command": "ln -s /etc/passwd \"$OUTPUT_DIR/passwd\"; ln -s / \"$OUTPUT_DIR/root\"; echo mine > \"$OUTPUT_DIR/real.txt\"",
        "wait_ms": 20000,
    }));
    let paths: Vec<&str> = job["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["real.txt"], "{job}");
}

#[test]
fn a_background_process_cannot_hold_the_job_open() {
    let mut worker = Worker::start();
    let job = worker.dispatch(json!({"command": "sleep 30 & echo started", "wait_ms": 20000}));
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(job["stdout"], "started\n");
    eventually("the background sleep died with its job", || {
        worker.leftover_processes().is_empty()
    });
}

#[test]
fn list_metrics_and_retention_add_up() {
    let mut worker = Worker::start_with(&["worker.retain_jobs=3"]);
    for (id, command) in [
        ("a", "true"),
        ("b", "false"),
        ("c", "true"),
        ("d", "exit 3"),
    ] {
        worker.dispatch(json!({"job_id": id, "command": command, "wait_ms": 20000}));
    }
    let error = worker.call_err(table::GetStatus::NAME, json!({"job_id": "a"}));
    assert_eq!(error["code"], -32001, "the oldest left retention");
    let listed = worker.call(table::ListSessions::NAME, json!({}));
    let ids: Vec<&str> = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["b", "c", "d"]);
    let failed = worker.call(table::ListSessions::NAME, json!({"status": "failed"}));
    assert_eq!(failed["sessions"].as_array().unwrap().len(), 2);
    worker.call_err(
        table::DispatchJob::NAME,
        json!({"command": "true", "limits": {"pids": 0}}),
    );

    let metrics = worker.call(table::GetMetrics::NAME, json!({}));
    let jobs = &metrics["jobs"];
    assert_eq!(jobs["dispatched"], 4);
    assert_eq!(jobs["rejected"], 1);
    assert_eq!(jobs["by_status"]["finished"], 2);
    assert_eq!(jobs["by_status"]["failed"], 2);
    assert_eq!(jobs["by_reason"]["exit_code"], 2);
    assert_eq!(metrics["retained"], 3);
    assert_eq!(metrics["active_sessions"], 0);
    assert_eq!(metrics["latency_ms"]["total"]["count"], 4);
    assert!(metrics["latency_ms"]["spawn"]["p50"].as_f64().unwrap() > 0.0);
    assert!(metrics["host"]["cpus"].as_u64().unwrap() >= 1);
    assert!(metrics["host"]["memory_total_bytes"].as_u64().unwrap() > 0);
}

// The kill semantics hold whichever way the job's sandbox started.
cold_and_warm!(
    timeout_kills_a_job_that_ignores_sigterm_and_keeps_its_output,
    output_limit_kills_and_keeps_what_fit,
);
