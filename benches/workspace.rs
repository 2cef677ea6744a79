//! Workspaces side by side in one run: the start cost of a job (`true`) without a workspace and
//! in `read`, `write` and `overlay`, and `cargo test` of one small built crate directly on the
//! host, in `overlay` and in `write` (ratio to the host), and a 10k-file tree with no
//! workspace, in `overlay` and in the copy fallback (`workspace.overlay = "copy"`), each job
//! editing one file. Wall time per dispatch (`wait_ms` reply), p50 and p90.
//!
//! `cargo bench --bench workspace` (BENCH_JOBS=N for sample size; cargo must be on PATH).

use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::Client;

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

fn job(client: &mut Client, spec: Value) -> (Duration, Value) {
    let start = Instant::now();
    let reply = client.call("worker_dispatch_job", spec);
    let took = start.elapsed();
    let job = reply["result"].clone();
    assert!(job["status"] == "finished", "{reply}");
    if job["changes"]["files"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
    {
        client.call("worker_discard_changes", json!({"job_id": job["job_id"]}));
    }
    (took, job)
}

fn row(name: &str, mut samples: Vec<Duration>, base: Option<f64>) -> f64 {
    samples.sort();
    let p50 = percentile(&samples, 0.5);
    let ratio = base.map_or(String::new(), |b| format!("{:6.2}x", p50 / b));
    println!(
        "{name:<34} {:>5} {p50:>9.2} {:>9.2} {ratio}",
        samples.len(),
        percentile(&samples, 0.9)
    );
    p50
}

fn krate(dir: &Path) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"krate\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("src/lib.rs"),
        "pub fn two() -> u32 { 2 }\n#[cfg(test)]\nmod t {\n    #[test]\n    fn ok() { assert_eq!(super::two(), 2); }\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join(".gitignore"), "target/\n").unwrap();
}

/// `dirs` x `files` small text files, plus an ignored `target/` the copy skips.
fn tree(dir: &Path, dirs: usize, files: usize) {
    std::fs::create_dir_all(dir.join("target/debug")).unwrap();
    std::fs::write(dir.join(".gitignore"), "target/\n").unwrap();
    for d in 0..dirs {
        let sub = dir.join(format!("d{d}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..files {
            std::fs::write(
                sub.join(format!("f{f}.txt")),
                format!("line {d} {f}\n").repeat(8),
            )
            .unwrap();
        }
        std::fs::write(dir.join(format!("target/debug/o{d}")), vec![0u8; 4096]).unwrap();
    }
}

fn copy_fallback(jobs: usize, scratch: &Path) {
    let project = scratch.join("tree");
    let (dirs, files) = (100, 100);
    tree(&project, dirs, files);
    let settings = |copy: bool| {
        let mut list = vec![
            format!("workspace.root={}", project.display()),
            "policy.mode=off".into(),
        ];
        if copy {
            list.push("workspace.overlay=copy".into());
        }
        list
    };
    let mut overlay = Client::start(&settings(false));
    overlay.call("initialize", json!({}));
    let mut copy = Client::start(&settings(true));
    copy.call("initialize", json!({}));
    println!(
        "\n{:<34} {:>5} {:>9} {:>9}",
        format!("{}-file tree, edit one file", dirs * files),
        "n",
        "p50 ms",
        "p90 ms"
    );
    let edit = "mkdir -p d7 && echo edit >> d7/f7.txt";
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); 3];
    let mut degraded = Value::Null;
    let mut phases: Vec<(f64, f64)> = Vec::new();
    for _ in 0..jobs {
        samples[0].push(job(&mut overlay, json!({"command": edit, "wait_ms": 600000})).0);
        let spec = json!({"command": edit, "workspace": {"mode": "overlay"}, "wait_ms": 600000});
        samples[1].push(job(&mut overlay, spec.clone()).0);
        let (took, result) = job(&mut copy, spec);
        samples[2].push(took);
        degraded = result["changes"]["degraded"].clone();
        let metric = |name: &str| result["metrics"][name].as_f64().unwrap_or(0.0);
        phases.push((metric("prepare_ms"), metric("collect_ms")));
    }
    let base = row("no workspace", samples.remove(0), None);
    row("overlay (overlayfs)", samples.remove(0), Some(base));
    row("overlay, copy fallback", samples.remove(0), Some(base));
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "copy fallback p50: prepare (the copy) {:.1} ms, collect (the change set) {:.1} ms\n{degraded}",
        median(phases.iter().map(|p| p.0).collect()),
        median(phases.iter().map(|p| p.1).collect()),
    );
}

fn main() {
    let benching = std::env::args().any(|arg| arg == "--bench");
    let jobs: usize = std::env::var("BENCH_JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if benching { 100 } else { 5 });
    let scratch = tempfile::tempdir_in("/var/tmp").unwrap();
    let project = scratch.path().join("krate");
    krate(&project);
    let host_cargo = |project: &Path| {
        let start = Instant::now();
        let out = Command::new("cargo")
            .args(["test", "--offline", "-q"])
            .current_dir(project)
            .output()
            .expect("cargo on PATH");
        assert!(out.status.success(), "{out:?}");
        start.elapsed()
    };
    host_cargo(&project);
    let mut client = Client::start(&[
        format!("workspace.root={}", project.display()),
        "policy.mode=off".into(),
    ]);
    client.call("initialize", json!({}));

    println!(
        "{:<34} {:>5} {:>9} {:>9}",
        "job start (`true`)", "n", "p50 ms", "p90 ms"
    );
    let modes = [
        ("no workspace", json!(null)),
        ("read", json!({"mode": "read"})),
        ("write", json!({"mode": "write"})),
        ("overlay", json!({"mode": "overlay"})),
    ];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); modes.len()];
    for _ in 0..jobs {
        for (index, (_, workspace)) in modes.iter().enumerate() {
            let mut spec = json!({"command": "true", "wait_ms": 60000});
            if !workspace.is_null() {
                spec["workspace"] = workspace.clone();
            }
            samples[index].push(job(&mut client, spec).0);
        }
    }
    let mut base = None;
    for ((name, _), samples) in modes.iter().zip(samples) {
        let p50 = row(name, samples, base);
        base = base.or(Some(p50));
    }

    let runs = (jobs / 10).max(3);
    println!(
        "\n{:<34} {:>5} {:>9} {:>9}",
        "cargo test (built crate)", "n", "p50 ms", "p90 ms"
    );
    let host: Vec<Duration> = (0..runs).map(|_| host_cargo(&project)).collect();
    let host_p50 = row("host", host, None);
    for mode in ["overlay", "write"] {
        let samples = (0..runs)
            .map(|_| {
                job(
                    &mut client,
                    json!({"command": "cargo test --offline -q", "workspace": {"mode": mode},
                           "wait_ms": 600000}),
                )
                .0
            })
            .collect();
        row(mode, samples, Some(host_p50));
    }
    let (took, edited) = job(
        &mut client,
        json!({"command": "echo '// edit' >> src/lib.rs && cargo test --offline -q",
               "workspace": {"mode": "overlay"}, "wait_ms": 600000}),
    );
    println!(
        "overlay, one edit then cargo test: {:.1} ms (incremental: only the crate rebuilds; \
         ignored changes {})",
        took.as_secs_f64() * 1e3,
        edited["changes"]["ignored"]
    );
    drop(client);
    copy_fallback((jobs / 10).max(5), scratch.path());
}
