//! Soak: N mixed jobs through the real binary at 8-16 requests in flight on one connection,
//! checking every reply, then what is left: lost replies, wrong outcomes, orphan processes,
//! leftover session dirs, and the worker's RSS and fd count along the way and after the
//! retention has expired.
//!
//! `cargo bench --bench soak` (SOAK_JOBS=N, default 2000; SOAK_IN_FLIGHT, default 12;
//! SOAK_RETAIN_SECS, default 20). Without `--bench` (as `cargo test --benches` runs it) it
//! does 40 jobs.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::BIN;

/// What a reply must show.
type Check = fn(&Value) -> Result<(), String>;

fn status_is(reply: &Value, status: &str, reason: Option<&str>) -> Result<(), String> {
    let job = &reply["result"];
    let got = (job["status"].as_str(), job["reason"].as_str());
    if got == (Some(status), reason) {
        Ok(())
    } else {
        Err(format!(
            "want {status}/{reason:?}, got {got:?}: {}",
            clip(reply)
        ))
    }
}

fn clip(value: &Value) -> String {
    let text = value.to_string();
    text.chars().take(300).collect()
}

/// One kind of job: its spec and what its (waited-for) reply must show.
fn kind(n: usize, marker: &str) -> (&'static str, Value, Check) {
    let env = json!({"OCW_TEST_MARKER": marker});
    let (name, mut spec, check): (&str, Value, Check) = match n % 10 {
        0 | 1 => ("ok", json!({"command": "echo ok"}), |r| {
            status_is(r, "finished", None)?;
            (r["result"]["stdout"] == "ok\n")
                .then_some(())
                .ok_or_else(|| format!("stdout: {}", clip(r)))
        }),
        2 => ("fail", json!({"command": "exit 3"}), |r| {
            status_is(r, "failed", Some("exit_code"))
        }),
        3 => (
            "timeout",
            json!({"command": "sleep 5", "limits": {"timeout": 300}}),
            |r| status_is(r, "timeout", Some("timeout")),
        ),
        4 => (
            "flood",
            json!({"command": "yes flood", "limits": {"output": "256KiB"}}),
            |r| status_is(r, "killed", Some("output_limit")),
        ),
        5 => (
            "memory bomb",
            json!({"command": "sh bomb.sh", "files": {"bomb.sh": "a=$(head -c 200000000 /dev/zero | tr '\\0' a)\n"},
                   "limits": {"memory": "48MiB"}}),
            |r| status_is(r, "killed", Some("memory_limit")),
        ),
        6 => (
            "fork bomb",
            json!({"command": "sh fork.sh", "files": {"fork.sh": "f() { f & f & wait; }; f\n"},
                   "limits": {"pids": 32, "timeout": 3000}}),
            |r| {
                let job = &r["result"];
                match (job["status"].as_str(), job["reason"].as_str()) {
                    (Some("killed"), Some("pids_limit")) | (Some("timeout"), Some("timeout")) => {
                        Ok(())
                    }
                    other => Err(format!("fork bomb ended {other:?}: {}", clip(r))),
                }
            },
        ),
        7 => (
            "grandchild",
            json!({"command": "setsid sleep 300 & sleep 300 & echo started"}),
            |r| status_is(r, "finished", None),
        ),
        8 => (
            "artifacts",
            json!({"command": "echo done > $OUTPUT_DIR/result.txt"}),
            |r| {
                status_is(r, "finished", None)?;
                let artifacts = r["result"]["artifacts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                artifacts
                    .iter()
                    .any(|a| a["path"] == "result.txt" && a["content"] == "done\n")
                    .then_some(())
                    .ok_or_else(|| format!("artifacts: {}", clip(r)))
            },
        ),
        _ => ("cancel", json!({"command": "sleep 30"}), |r| {
            status_is(r, "cancelled", Some("cancelled"))
        }),
    };
    spec["env"] = env;
    (name, spec, check)
}

fn proc_status(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn with_marker(marker: &str) -> usize {
    let needle = format!("OCW_TEST_MARKER={marker}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|entry| {
            std::fs::read(entry.path().join("environ")).is_ok_and(|environ| {
                environ
                    .split(|&b| b == 0)
                    .any(|var| var == needle.as_bytes())
            })
        })
        .count()
}

fn session_dirs(base: &std::path::Path) -> usize {
    let Ok(workers) = std::fs::read_dir(base) else {
        return 0;
    };
    workers
        .flatten()
        .filter_map(|w| std::fs::read_dir(w.path()).ok())
        .flat_map(|d| d.flatten())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            !name.starts_with(".spare-") && name != ".lock"
        })
        .count()
}

fn main() {
    let benching = std::env::args().any(|arg| arg == "--bench");
    let var = |name: &str, default: usize| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
    };
    let jobs = var("SOAK_JOBS", if benching { 2000 } else { 40 });
    let in_flight = var("SOAK_IN_FLIGHT", 12).clamp(1, 64);
    let retain_secs = var("SOAK_RETAIN_SECS", if benching { 20 } else { 2 });
    let base = tempfile::tempdir().unwrap();
    let marker = format!("soak{}", std::process::id());
    let mut child = Command::new(BIN)
        .arg("serve")
        .args([
            "--set",
            &format!("session.base_dir={}", base.path().display()),
        ])
        .args(["--set", "policy.mode=off"])
        .args(["--set", "worker.max_concurrent_sessions=4"])
        .args(["--set", &format!("worker.retain_secs={retain_secs}")])
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn worker");
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, replies) = mpsc::channel::<Value>();
    let reader = std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            if tx
                .send(serde_json::from_str(&line).expect("a JSON line"))
                .is_err()
            {
                break;
            }
        }
    });
    println!("soak: {jobs} jobs, {in_flight} in flight, worker pid {pid}, retain {retain_secs} s");
    let mut next_id = 0u64;
    let mut send = |stdin: &mut std::process::ChildStdin, method: &str, params: Value| {
        next_id += 1;
        let line = json!({"jsonrpc": "2.0", "id": next_id, "method": method, "params": params});
        writeln!(stdin, "{line}").unwrap();
        next_id
    };
    // id -> (job number, kind, check)
    let mut owed: HashMap<u64, (usize, &str, Option<Check>)> = HashMap::new();
    let mut wrong: Vec<String> = Vec::new();
    let mut by_kind: HashMap<&str, usize> = HashMap::new();
    let started = Instant::now();
    let mut curve = vec![(0usize, proc_status(pid, "VmRSS:"), fds(pid))];
    let sample_every = (jobs / 10).max(1);
    let (mut sent_jobs, mut done_jobs) = (0usize, 0usize);
    while done_jobs < jobs {
        while sent_jobs < jobs && owed.len() < in_flight {
            let (name, mut spec, check) = kind(sent_jobs, &marker);
            if name == "cancel" {
                let job_id = format!("{marker}-{sent_jobs}");
                spec["job_id"] = json!(job_id);
                let id = send(&mut stdin, "worker_dispatch_job", spec);
                // The cancel goes once the dispatch is answered: requests are served
                // concurrently, so one sent at once may overtake it (-32001).
                owed.insert(id, (sent_jobs, "cancel-dispatch", Some(check)));
            } else {
                spec["wait_ms"] = json!(60_000);
                let id = send(&mut stdin, "worker_dispatch_job", spec);
                owed.insert(id, (sent_jobs, name, Some(check)));
            }
            sent_jobs += 1;
        }
        stdin.flush().unwrap();
        let reply = match replies.recv_timeout(Duration::from_secs(120)) {
            Ok(reply) => reply,
            Err(_) => break,
        };
        let Some((n, name, check)) = reply["id"].as_u64().and_then(|id| owed.remove(&id)) else {
            wrong.push(format!("a reply nobody was owed: {}", clip(&reply)));
            continue;
        };
        let Some(check) = check else { continue };
        if name == "cancel-dispatch" {
            if reply.get("result").is_none() {
                wrong.push(format!("job {n} cancel-dispatch: {}", clip(&reply)));
                done_jobs += 1;
                continue;
            }
            let job_id = format!("{marker}-{n}");
            let id = send(
                &mut stdin,
                "worker_cancel_job",
                json!({"job_id": job_id, "reason": "soak"}),
            );
            stdin.flush().unwrap();
            owed.insert(id, (n, "cancel", Some(check)));
            continue;
        }
        *by_kind.entry(name).or_default() += 1;
        if let Err(why) = check(&reply) {
            wrong.push(format!("job {n} {name}: {why}"));
        }
        done_jobs += 1;
        if done_jobs % sample_every == 0 {
            let sample = (done_jobs, proc_status(pid, "VmRSS:"), fds(pid));
            // As it goes, so a long run that is stopped early still tells something.
            println!(
                "  {} jobs, {:.0} s: RSS {} KiB, {} fds, {} wrong",
                sample.0,
                started.elapsed().as_secs_f64(),
                sample.1,
                sample.2,
                wrong.len()
            );
            curve.push(sample);
        }
    }
    let elapsed = started.elapsed();
    let lost = owed.len();
    // Orphans and dirs: a cancel may answer before its job's DESTROY is over (its patience
    // is the kill grace plus 1 s), so give the last ones up to 10 s.
    let settle = Instant::now();
    while (with_marker(&marker) > 0 || session_dirs(base.path()) > 0)
        && settle.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let settled_ms = settle.elapsed().as_millis();
    let orphans = with_marker(&marker);
    let dirs = session_dirs(base.path());
    let rss_end = proc_status(pid, "VmRSS:");
    let hwm = proc_status(pid, "VmHWM:");
    // Retention expires lazily, on the next call after `retain_secs`.
    std::thread::sleep(Duration::from_secs(retain_secs as u64 + 1));
    send(&mut stdin, "worker_list_sessions", json!({}));
    let id = send(&mut stdin, "worker_get_metrics", json!({}));
    stdin.flush().unwrap();
    let mut retained = Value::Null;
    while let Ok(reply) = replies.recv_timeout(Duration::from_secs(30)) {
        if reply["id"] == id {
            retained = reply["result"]["retained"].clone();
            break;
        }
    }
    let (rss_expired, fds_expired) = (proc_status(pid, "VmRSS:"), fds(pid));
    drop(stdin);
    let status = child.wait().unwrap();
    let _ = reader.join();
    let dirs_after_exit = std::fs::read_dir(base.path()).map_or(0, |d| d.count());

    println!(
        "done: {done_jobs}/{jobs} jobs in {:.1} s ({:.1} jobs/s)",
        elapsed.as_secs_f64(),
        done_jobs as f64 / elapsed.as_secs_f64()
    );
    let mut kinds: Vec<_> = by_kind.into_iter().collect();
    kinds.sort();
    println!("by kind: {kinds:?}");
    println!(
        "lost {lost}, wrong {}, orphans {orphans}, leftover session dirs {dirs} ({settled_ms} ms after the last reply), left after exit {dirs_after_exit}, exit {status}",
        wrong.len()
    );
    for line in wrong.iter().take(10) {
        println!("  wrong: {line}");
    }
    println!("| jobs done | RSS KiB | fds |");
    println!("|---|---|---|");
    for (done, rss, fd) in &curve {
        println!("| {done} | {rss} | {fd} |");
    }
    println!(
        "end: RSS {rss_end} KiB (peak {hwm} KiB); after retention expired ({retained} retained): RSS {rss_expired} KiB, fds {fds_expired}"
    );
    let clean = lost == 0 && wrong.is_empty() && orphans == 0 && dirs == 0 && dirs_after_exit == 0;
    assert!(clean, "the soak found lost, wrong or leftover");
}
