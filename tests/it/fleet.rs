//! Routing across workers through the real binary. The SSH client is replaced by a test double
//! (a script that runs the remote worker directly), so routing, requeueing and loss can be
//! driven precisely: killing the double is a host vanishing. The real `ssh`/`sshd` hop is
//! covered in `remote_ssh.rs`.

use crate::common;
use crate::stream_util;

use common::{BIN, Worker, eventually};
use opencode_worker::protocol::table::{self, Method};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A "host": a script standing in for `ssh`, running the remote worker with its own dirs.
struct FakeHost {
    name: String,
    dir: tempfile::TempDir,
}

impl FakeHost {
    fn new(name: &str, sessions: usize) -> FakeHost {
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            "#!/bin/sh\necho $$ > {dir}/pid\nexec {BIN} serve --set session.base_dir={dir}/sessions --set worker.max_concurrent_sessions={sessions}\n",
            dir = dir.path().display()
        );
        let path = dir.path().join("ssh");
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeHost {
            name: name.into(),
            dir,
        }
    }

    fn entry(&self, labels: &[&str]) -> Value {
        json!({"kind": "ssh", "name": self.name, "host": self.name, "program": self.dir.path().join("ssh"),
               "labels": labels, "max_concurrent": 8, "alive_interval_secs": 1})
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The host vanishes: its worker dies without a word.
    fn kill(&self) {
        let pid = self.pid().expect("the host was started");
        // SAFETY: plain kill(2) on a pid this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }

    /// The host's worker hangs: alive, its pipes open, answering nothing.
    fn freeze(&self) {
        let pid = self.pid().expect("the host was started");
        // SAFETY: plain kill(2) on a pid this test started.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
    }

    fn alive(&self) -> bool {
        self.pid()
            .is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
    }

    fn sessions(&self) -> PathBuf {
        self.dir.path().join("sessions")
    }
}

/// Whatever the test did to it (frozen, killed, left running), the host's worker does not
/// outlive the test: a stopped one is resumed and told to stop, and that it is gone is checked.
impl Drop for FakeHost {
    fn drop(&mut self) {
        let Some(pid) = self.pid() else { return };
        if !running(pid) {
            return;
        }
        // SAFETY: plain kill(2) on a pid this test started.
        unsafe {
            libc::kill(pid, libc::SIGCONT);
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + common::PATIENCE;
        while running(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if running(pid) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            if !std::thread::panicking() {
                panic!("host {}: its worker {pid} survived SIGTERM", self.name);
            }
        }
    }
}

/// Alive and not a zombie waiting to be reaped.
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

fn fleet(workers: Value, extra: &[&str]) -> Worker {
    let workers = format!("workers={workers}");
    let mut settings = vec![workers.as_str(), "policy.mode=off"];
    settings.extend_from_slice(extra);
    let mut w = Worker::start_full(&settings, &[]);
    // Wait until every remote is connected, so placement is deterministic.
    let mut last = Value::Null;
    let up = common::poll_until("every remote is up", || {
        let metrics = w.call(table::GetMetrics::NAME, json!({}));
        let workers = metrics["fleet"]["workers"].as_array().unwrap().clone();
        last = metrics;
        workers.iter().all(|w| w["link"] == "up").then_some(())
    });
    assert!(up.is_some(), "remotes never came up: {last}");
    w
}

fn worker_of(job: &Value) -> String {
    job["worker"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn jobs_run_on_the_named_or_labelled_worker_with_output_and_artifacts() {
    let big = FakeHost::new("big", 2);
    let mut w = fleet(
        json!([{"kind": "local", "labels": ["small"]}, big.entry(&["gpu"])]),
        &[],
    );
    let job = w.dispatch(json!({
        "command": "echo out; echo err >&2; printf 'é\\377' > $OUTPUT_DIR/bin.dat; echo hi > $OUTPUT_DIR/a.txt",
        "labels": ["gpu"], "wait_ms": 20000
    }));
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(worker_of(&job), "big");
    assert_eq!(job["stdout"], "out\n");
    assert_eq!(job["stderr"], "err\n");
    let artifacts = job["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 2, "{job}");
    let collected = w.call(
        table::CollectOutput::NAME,
        json!({"job_id": job["job_id"], "max_bytes": 2}),
    );
    assert_eq!(collected["stdout"]["data"], "ou");
    assert_eq!(collected["stdout"]["next_offset"], 2);
    assert_eq!(collected["stdout"]["kept_bytes"], 4);

    let local = w.dispatch(json!({"command": "echo here", "worker": "local", "wait_ms": 20000}));
    assert_eq!(worker_of(&local), "local");
    assert_eq!(local["stdout"], "here\n");

    let error = w.call_err(
        table::DispatchJob::NAME,
        json!({"command": "true", "worker": "nowhere"}),
    );
    assert_eq!(error["code"], -32602, "{error}");
    assert_eq!(error["data"]["field"], "worker");
    let error = w.call_err(
        table::DispatchJob::NAME,
        json!({"command": "true", "labels": ["gpu", "small"]}),
    );
    assert_eq!(error["code"], -32602, "{error}");
    assert_eq!(error["data"]["field"], "labels");

    // A remote's own refusal comes back as it is, naming the worker.
    let error = w.call_err(
        table::DispatchJob::NAME,
        json!({"command": "true", "worker": "big", "limits": {"memory": "1000GiB"}}),
    );
    assert_eq!(error["code"], -32004, "{error}");
    assert_eq!(error["data"]["worker"], "big");

    // Ids are unique across workers.
    let error = w.call_err(
        table::DispatchJob::NAME,
        json!({"command": "true", "job_id": job["job_id"]}),
    );
    assert_eq!(error["code"], -32005, "{error}");

    let listed = w.call(table::ListSessions::NAME, json!({}));
    let workers: Vec<String> = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(worker_of)
        .collect();
    assert_eq!(workers, ["big", "local"], "{listed}");
}

#[test]
fn load_spreads_and_the_fleet_queues_what_no_worker_has_room_for() {
    let a = FakeHost::new("a", 1);
    let b = FakeHost::new("b", 1);
    let mut w = fleet(json!([a.entry(&[]), b.entry(&[])]), &[]);
    let metrics = w.call(table::GetMetrics::NAME, json!({}));
    for worker in metrics["fleet"]["workers"].as_array().unwrap() {
        assert_eq!(worker["capacity"], 1, "the remote's own cap wins: {worker}");
    }
    // Jobs run sandboxed (no view of this test's /tmp), so a long sleep and a cancel pace them.
    for i in 0..2 {
        w.dispatch(json!({"job_id": format!("j{i}"), "command": "sleep 30"}));
    }
    w.dispatch(json!({"job_id": "j2", "command": "echo done"}));
    w.wait_status("j0", "running");
    w.wait_status("j1", "running");
    let placed: Vec<String> = ["j0", "j1"]
        .iter()
        .map(|id| worker_of(&w.call(table::GetStatus::NAME, json!({"job_id": id}))))
        .collect();
    let mut sorted = placed.clone();
    sorted.sort();
    assert_eq!(sorted, ["a", "b"], "one job per worker");
    let third = w.call(table::GetStatus::NAME, json!({"job_id": "j2"}));
    assert_eq!(third["status"], "queued", "{third}");
    assert!(
        third.get("worker").is_none(),
        "no worker has it yet: {third}"
    );
    let metrics = w.call(table::GetMetrics::NAME, json!({"format": "prometheus"}));
    assert_eq!(metrics["fleet"]["pending"], 1, "{metrics}");
    let text = metrics["text"].as_str().unwrap();
    for line in [
        "opencode_worker_fleet_pending_jobs 1",
        "opencode_worker_fleet_worker_up{worker=\"a\"} 1",
        "opencode_worker_fleet_worker_running_jobs{worker=\"b\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }

    w.call(table::CancelJob::NAME, json!({"job_id": "j0"}));
    let job = w.wait_ended("j2");
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(worker_of(&job), placed[0], "j2 took the slot j0 left");
    let collected = w.call(table::CollectOutput::NAME, json!({"job_id": "j2"}));
    assert_eq!(collected["stdout"]["data"], "done\n");
    w.call(table::CancelJob::NAME, json!({"job_id": "j1"}));
}

#[test]
fn a_lost_host_fails_its_jobs_worker_lost_and_queued_jobs_move() {
    let a = FakeHost::new("a", 1);
    let b = FakeHost::new("b", 1);
    let mut w = fleet(json!([a.entry(&["x"]), b.entry(&["x"])]), &[]);
    for i in 0..2 {
        w.dispatch(json!({"job_id": format!("j{i}"), "command": "echo started; sleep 30", "labels": ["x"]}));
    }
    w.dispatch(json!({"job_id": "j2", "command": "echo moved", "labels": ["x"]}));
    assert_eq!(
        w.call(table::GetStatus::NAME, json!({"job_id": "j2"}))["status"],
        "queued"
    );
    w.wait_status("j0", "running");
    w.wait_status("j1", "running");
    let on_a = ["j0", "j1"]
        .into_iter()
        .find(|id| worker_of(&w.call(table::GetStatus::NAME, json!({"job_id": id}))) == "a")
        .unwrap();
    // Wait until its output has come back, so the lost job shows what it wrote.
    eventually("output of the job on a copied", || {
        w.call(table::GetStatus::NAME, json!({"job_id": on_a}))["stdout_bytes"] == 8
    });
    let lost_at = Instant::now();
    a.kill();
    let lost = w.wait_ended(on_a);
    let noticed = lost_at.elapsed();
    assert_eq!(lost["status"], "failed", "{lost}");
    assert_eq!(lost["reason"], "worker_lost", "{lost}");
    assert!(lost["message"].as_str().unwrap().contains("`a`"), "{lost}");
    eprintln!("worker_lost noticed after {noticed:?}");
    let collected = w.call(table::CollectOutput::NAME, json!({"job_id": on_a}));
    assert_eq!(collected["stdout"]["data"], "started\n", "{collected}");
    assert_eq!(collected["reason"], "worker_lost");

    // The queued job never left this process: it runs on the first worker with room (a,
    // once it is back: b is still busy).
    let moved = w.wait_ended("j2");
    assert_eq!(moved["status"], "finished", "{moved}");
    assert_eq!(moved["stdout"], Value::Null, "status carries no bodies");
    let on_b = if on_a == "j0" { "j1" } else { "j0" };
    let survivor = w.call(table::GetStatus::NAME, json!({"job_id": on_b}));
    assert_eq!(survivor["status"], "running", "b is unaffected: {survivor}");
    w.call(table::CancelJob::NAME, json!({"job_id": on_b}));
    let metrics = w.call(table::GetMetrics::NAME, json!({}));
    let a_metrics = &metrics["fleet"]["workers"][0];
    assert_eq!(a_metrics["lost"], 1, "{metrics}");
    // The link comes back by itself: a restarted host takes jobs again.
    eventually("a reconnected", || {
        let metrics = w.call(table::GetMetrics::NAME, json!({}));
        metrics["fleet"]["workers"][0]["link"] == "up"
            && metrics["fleet"]["workers"][0]["connects"] == 2
    });
    let again = w.dispatch(json!({"command": "echo back", "worker": "a", "wait_ms": 20000}));
    assert_eq!(again["stdout"], "back\n", "{again}");
}

#[test]
fn a_remote_worker_that_stops_answering_is_lost_like_a_dead_host() {
    let a = FakeHost::new("a", 1);
    let mut w = fleet(json!([a.entry(&[])]), &[]);
    let job = w.dispatch(json!({"command": "sleep 60"}));
    let id = job["job_id"].as_str().unwrap().to_owned();
    w.wait_status(&id, "running");
    a.freeze();
    let lost = w.wait_ended(&id);
    assert_eq!(lost["reason"], "worker_lost", "{lost}");
    assert!(
        lost["message"].as_str().unwrap().contains("heartbeat"),
        "{lost}"
    );
}

#[test]
fn results_outlive_the_host_that_produced_them() {
    let a = FakeHost::new("a", 1);
    let mut w = fleet(json!([a.entry(&[])]), &[]);
    let job = w.dispatch(json!({
        "command": "seq 1 20000; echo art > $OUTPUT_DIR/r.txt", "wait_ms": 20000
    }));
    assert_eq!(job["status"], "finished", "{job}");
    a.kill();
    eventually("a noticed down", || {
        w.call(table::GetMetrics::NAME, json!({}))["fleet"]["workers"][0]["link"] != "up"
    });
    let status = w.call(table::GetStatus::NAME, json!({"job_id": job["job_id"]}));
    assert_eq!(status["status"], "finished");
    let collected = w.call(
        table::CollectOutput::NAME,
        json!({"job_id": job["job_id"], "max_bytes": 16777216}),
    );
    let expected: String = (1..=20000).map(|i| format!("{i}\n")).collect();
    assert_eq!(collected["stdout"]["data"], expected.as_str());
    assert_eq!(collected["stdout"]["eof"], true);
    assert_eq!(collected["artifacts"][0]["content"], "art\n");
}

#[test]
fn cancel_timeout_and_streaming_cross_the_hop() {
    let a = FakeHost::new("a", 2);
    let mut c = stream_util::Client::new(fleet(json!([a.entry(&[])]), &[]));
    let job = c.dispatch(json!({"command": "echo begin; sleep 30"}));
    let id = job["job_id"].as_str().unwrap().to_owned();
    let sub = c.subscribe(&id, None);
    c.w.wait_status(&id, "running");
    eventually("output copied", || {
        c.call(table::GetStatus::NAME, json!({"job_id": id}))["stdout_bytes"] == 6
    });
    let cancelled = c.call(
        table::CancelJob::NAME,
        json!({"job_id": id, "reason": "enough"}),
    );
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["worker"], "a");
    let events = c.until_end(&[sub]).remove(0);
    let (out, _) = stream_util::check_stream(&events, 1);
    assert_eq!(out, b"begin\n");
    let end = events.last().unwrap();
    assert_eq!(end["kind"], "end");
    assert_eq!(end["job"]["status"], "cancelled");

    let timed =
        c.dispatch(json!({"command": "sleep 30", "limits": {"timeout": 300}, "wait_ms": 20000}));
    assert_eq!(timed["status"], "timeout", "{timed}");
    assert_eq!(timed["worker"], "a");
    assert!(c.w.leftover_processes().is_empty());
}

#[test]
fn stopping_the_sidecar_stops_the_remotes_and_leaves_nothing() {
    let a = FakeHost::new("a", 2);
    let mut w = fleet(json!([{"kind": "local"}, a.entry(&[])]), &[]);
    let job = w.dispatch(json!({"command": "sleep 30", "worker": "a"}));
    w.wait_status(job["job_id"].as_str().unwrap(), "running");
    assert!(a.alive());
    w.close_stdin();
    let status = w.wait_exit(common::PATIENCE).expect("the sidecar exits");
    assert!(status.success(), "{status}");
    eventually("the remote worker exited", || !a.alive());
    eventually("no job process left", || w.leftover_processes().is_empty());
    eventually("no remote session dir left", || {
        std::fs::read_dir(a.sessions())
            .map(|dirs| dirs.count() == 0)
            .unwrap_or(true)
    });
}

#[test]
fn a_bad_workers_config_names_the_entry() {
    for (workers, needle) in [
        (
            json!([{"kind": "ssh", "name": "a", "host": "-oProxyCommand=x"}]),
            "workers[0].host",
        ),
        (
            json!([{"kind": "local"}, {"kind": "local", "name": "b"}]),
            "at most one `local`",
        ),
        (
            json!([{"kind": "ssh", "name": "a", "host": "h"}, {"kind": "ssh", "name": "a", "host": "i"}]),
            "used twice",
        ),
        (json!([{"kind": "ftp", "name": "a"}]), "workers"),
    ] {
        let output = std::process::Command::new(BIN)
            .args(["serve", "--set", &format!("workers={workers}")])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{workers}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{workers}: {stderr}");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn a_workspace_job_never_goes_to_a_remote_worker() {
    let far = FakeHost::new("far", 2);
    let project = tempfile::tempdir_in("/var/tmp").unwrap();
    let root = format!("workspace.root={}", project.path().display());
    let mut w = fleet(
        json!([{"kind": "local", "name": "here"}, far.entry(&["gpu"])]),
        &[root.as_str()],
    );
    for spec in [
        json!({"command": "true", "workspace": {"mode": "read"}, "worker": "far"}),
        json!({"command": "true", "workspace": {"mode": "read"}, "labels": ["gpu"]}),
    ] {
        let error = w.call_err(table::DispatchJob::NAME, spec.clone());
        assert_eq!(error["code"], -32602, "{spec}: {error}");
        assert_eq!(error["data"]["field"], "workspace", "{spec}: {error}");
    }
    for _ in 0..3 {
        let job = w.call(
            table::DispatchJob::NAME,
            json!({"command": "pwd", "workspace": {"mode": "read"}, "wait_ms": 30000}),
        );
        assert_eq!(worker_of(&job), "here", "{job}");
    }
}

/// A fleet checks a spec the way the lone worker does, before it routes or queues it: a job
/// that would have to wait for a slot is still refused at once, not failed later.
#[test]
fn an_invalid_spec_that_would_queue_is_refused_at_once_like_the_lone_worker_does() {
    let far = FakeHost::new("far", 1);
    let mut w = fleet(
        json!([{"kind": "local", "name": "here", "max_concurrent": 1}, far.entry(&[])]),
        &[],
    );
    let mut solo = Worker::start_walls(&[], &[]);
    w.dispatch(json!({"job_id": "busy", "command": "sleep 30", "worker": "here"}));
    w.wait_status("busy", "running");
    let invalid = [
        (json!({"command": "true", "cwd": "../out"}), -32602, "cwd"),
        (
            json!({"command": "true", "argv": ["true"]}),
            -32602,
            "command",
        ),
        (
            json!({"argv": ["true"], "env": {"A=B": "x"}}),
            -32602,
            "env.A=B",
        ),
        (
            json!({"argv": ["true"], "wait_ms": u64::MAX}),
            -32602,
            "wait_ms",
        ),
        (
            json!({"argv": ["true"], "files": {"/abs": "x"}}),
            -32006,
            "files./abs",
        ),
    ];
    for (index, (spec, code, field)) in invalid.into_iter().enumerate() {
        let mut routed = spec.clone();
        routed["worker"] = json!("here");
        routed["job_id"] = json!(format!("bad{index}"));
        let error = w.call_err(table::DispatchJob::NAME, routed.clone());
        assert_eq!(error["code"], code, "{routed}: {error}");
        assert_eq!(error["data"]["field"], field, "{routed}: {error}");
        let lone = solo.call_err(table::DispatchJob::NAME, spec.clone());
        assert_eq!(
            (&lone["code"], &lone["data"]["field"]),
            (&error["code"], &error["data"]["field"]),
            "the fleet answers {spec} as the lone worker does: {lone} vs {error}"
        );
        let status = w.call_raw(
            table::GetStatus::NAME,
            json!({"job_id": format!("bad{index}")}),
        );
        assert_eq!(
            status["error"]["code"], -32001,
            "nothing was queued: {status}"
        );
    }
    let metrics = w.request_typed::<table::GetMetrics>(&Default::default());
    assert_eq!(metrics.fleet.expect("a fleet").pending, 0);
    w.call(table::CancelJob::NAME, json!({"job_id": "busy"}));
}

/// The pool keeps the book of local jobs, the fleet only holds what waits for a worker: a job
/// queued in the fleet takes the local slot a job sent straight to the pool leaves.
#[test]
fn a_local_slot_freed_by_a_direct_job_takes_the_fleets_queued_job() {
    let far = FakeHost::new("far", 1);
    let mut w = fleet(
        json!([{"kind": "local", "name": "here", "max_concurrent": 1}, far.entry(&[])]),
        &[],
    );
    // Only `here` may run it: it goes straight to the pool.
    w.dispatch(json!({"job_id": "direct", "command": "sleep 30", "worker": "here"}));
    w.dispatch(json!({"job_id": "remote", "command": "sleep 30", "worker": "far"}));
    w.wait_status("direct", "running");
    w.wait_status("remote", "running");
    // Either worker may run it; both are full, so the fleet holds it.
    w.dispatch(json!({"job_id": "waiting", "command": "echo placed"}));
    let metrics = w.request_typed::<table::GetMetrics>(&Default::default());
    let fleet = metrics.fleet.expect("a fleet");
    assert_eq!(fleet.pending, 1, "{fleet:?}");
    let here = fleet.workers.iter().find(|m| m.name == "here").unwrap();
    assert_eq!(
        here.running, 1,
        "the pool's job counts on its member: {here:?}"
    );
    w.call(table::CancelJob::NAME, json!({"job_id": "direct"}));
    let job = w.wait_ended("waiting");
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(worker_of(&job), "here", "{job}");
    w.call(table::CancelJob::NAME, json!({"job_id": "remote"}));
}
