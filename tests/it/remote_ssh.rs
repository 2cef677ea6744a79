//! Remote workers through the real OpenSSH client and real sshd hosts: on 127.0.0.1, and as
//! several hosts each in its own network namespace. The sidecar under test is the real binary
//! with a `workers` list; each host's only key is forced to run the worker.

use crate::common;
use opencode_worker::protocol::table::{self, Method};

use common::Worker;
use common::sshd::{SshHost, netns_hosts};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Keepalives of 1 s x 3: a silent host is lost within a few seconds, not the default 15.
fn entry(host: &SshHost) -> Value {
    let mut entry = host.worker_entry();
    entry["alive_interval_secs"] = json!(1);
    entry["alive_count_max"] = json!(3);
    entry
}

fn sidecar(hosts: &[&SshHost]) -> Worker {
    let workers: Vec<Value> = hosts.iter().map(|h| entry(h)).collect();
    let setting = format!("workers={}", Value::Array(workers));
    let mut w = Worker::start_full(&[setting.as_str(), "policy.mode=off"], &[]);
    wait_links(&mut w, |links| links.iter().all(|l| l == "up"));
    w
}

fn links(w: &mut Worker) -> Vec<String> {
    let metrics = w.call(table::GetMetrics::NAME, json!({}));
    metrics["fleet"]["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["link"].as_str().unwrap().to_owned())
        .collect()
}

fn wait_links(w: &mut Worker, wanted: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + common::PATIENCE;
    loop {
        let now = links(w);
        if wanted(&now) {
            return;
        }
        assert!(Instant::now() < deadline, "links never got there: {now:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn worker_of(w: &mut Worker, job_id: &str) -> String {
    w.call(table::GetStatus::NAME, json!({"job_id": job_id}))["worker"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_job_runs_on_the_remote_with_files_output_artifacts_cancel_and_timeout() {
    let host = SshHost::loopback("lo");
    let mut w = sidecar(&[&host]);
    assert_eq!(
        host.worker_processes().len(),
        1,
        "one remote worker per link"
    );
    let job = w.dispatch(json!({
        "command": "cat in.txt; echo to-err >&2; sha256sum in.txt | cut -c1-8 > $OUTPUT_DIR/sum.txt",
        "files": {"in.txt": "remote input\n"},
        "wait_ms": 30000
    }));
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(job["worker"], "lo");
    assert_eq!(job["stdout"], "remote input\n");
    assert_eq!(job["stderr"], "to-err\n");
    assert_eq!(job["artifacts"][0]["path"], "sum.txt", "{job}");
    assert_eq!(job["artifacts"][0]["size"], 9);

    let long = w.dispatch(json!({"command": "echo begin; sleep 60"}));
    let id = long["job_id"].as_str().unwrap().to_owned();
    w.wait_status(&id, "running");
    let cancelled = w.call(
        table::CancelJob::NAME,
        json!({"job_id": id, "reason": "test"}),
    );
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");

    let timed =
        w.dispatch(json!({"command": "sleep 60", "limits": {"timeout": 500}, "wait_ms": 30000}));
    assert_eq!(timed["status"], "timeout", "{timed}");
    assert_eq!(timed["reason"], "timeout");

    w.close_stdin();
    assert!(w.wait_exit(common::PATIENCE).is_some_and(|s| s.success()));
    common::eventually("the remote worker exited with the link", || {
        host.worker_processes().is_empty()
    });
    assert!(w.leftover_processes().is_empty());
}

#[test]
fn a_host_killed_mid_job_loses_its_jobs_and_the_pool_keeps_working() {
    let mut hosts = netns_hosts("k", 2, &["--set", "worker.max_concurrent_sessions=1"]);
    let mut w = sidecar(&[&hosts[0], &hosts[1]]);
    for i in 0..2 {
        w.dispatch(json!({"job_id": format!("run{i}"), "command": "echo started; sleep 60"}));
    }
    w.dispatch(json!({"job_id": "queued", "command": "echo moved"}));
    w.wait_status("run0", "running");
    w.wait_status("run1", "running");
    let mut placed = vec![worker_of(&mut w, "run0"), worker_of(&mut w, "run1")];
    placed.sort();
    assert_eq!(placed, ["k0", "k1"], "one job per host");
    assert_eq!(
        w.call(table::GetStatus::NAME, json!({"job_id": "queued"}))["status"],
        "queued"
    );

    let victim = if worker_of(&mut w, "run0") == "k0" {
        "run0"
    } else {
        "run1"
    };
    let survivor = if victim == "run0" { "run1" } else { "run0" };
    let killed_at = Instant::now();
    hosts[0].kill();
    let lost = w.wait_ended(victim);
    eprintln!("worker_lost after the host died: {:?}", killed_at.elapsed());
    assert_eq!(lost["status"], "failed", "{lost}");
    assert_eq!(lost["reason"], "worker_lost", "{lost}");
    assert_eq!(
        w.call(table::GetStatus::NAME, json!({"job_id": survivor}))["status"],
        "running",
        "the other host is unaffected"
    );
    wait_links(&mut w, |links| links[0] != "up");
    // The queued job never left the sidecar; it runs when the surviving host has room.
    assert_eq!(
        w.call(table::GetStatus::NAME, json!({"job_id": "queued"}))["status"],
        "queued"
    );
    w.call(table::CancelJob::NAME, json!({"job_id": survivor}));
    let moved = w.wait_ended("queued");
    assert_eq!(moved["status"], "finished", "{moved}");
    assert_eq!(moved["worker"], "k1");
    let out = w.call(table::CollectOutput::NAME, json!({"job_id": "queued"}));
    assert_eq!(out["stdout"]["data"], "moved\n");

    // The host comes back and the sidecar reconnects on its own.
    hosts[0].restart();
    wait_links(&mut w, |links| links.iter().all(|l| l == "up"));
    let back = w.dispatch(json!({"command": "echo back", "worker": "k0", "wait_ms": 30000}));
    assert_eq!(back["stdout"], "back\n", "{back}");
}

#[test]
fn a_network_cut_is_noticed_by_keepalives_and_the_host_comes_back() {
    let hosts = netns_hosts("c", 2, &[]);
    let mut w = sidecar(&[&hosts[0], &hosts[1]]);
    let job = w.dispatch(json!({"command": "sleep 60", "worker": "c0"}));
    let id = job["job_id"].as_str().unwrap().to_owned();
    w.wait_status(&id, "running");
    let cut_at = Instant::now();
    hosts[0].cut_network();
    let lost = w.wait_ended(&id);
    eprintln!(
        "worker_lost after the cut: {:?} (keepalive 1 s x 3)",
        cut_at.elapsed()
    );
    assert_eq!(lost["reason"], "worker_lost", "{lost}");
    let other = w.dispatch(json!({"command": "echo fine", "worker": "c1", "wait_ms": 30000}));
    assert_eq!(
        other["stdout"], "fine\n",
        "the rest of the pool keeps working"
    );
    hosts[0].restore_network();
    wait_links(&mut w, |links| links.iter().all(|l| l == "up"));
    let again = w.dispatch(json!({"command": "echo again", "worker": "c0", "wait_ms": 30000}));
    assert_eq!(again["stdout"], "again\n", "{again}");
}
