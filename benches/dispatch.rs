//! Dispatch latency and throughput through the real binary and its stdio protocol, measured
//! side by side with the floor (a bare `std::process::Command` spawn of `/bin/true`) in the same
//! run, so the ratio holds on whatever machine runs it.
//!
//! Each sandboxed profile runs twice, cold (`isolation.warm_slots=0`: the sandbox is built in
//! the job's start) and warm (prepared sandboxes kept ready), with the worker's own phase
//! split and, for the warm rows, how its jobs started and what the idle pool holds.
//!
//! `cargo bench --bench dispatch` (BENCH_JOBS=N to change the sample size; OCW_BENCH_BIN=PATH
//! measures another build of the binary with the same harness).

use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::Client;

struct Summary {
    p50: f64,
    p90: f64,
    p99: f64,
}

fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let at = |q: f64| {
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1].as_secs_f64() * 1e3
    };
    Summary {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
    }
}

fn job(argv: &[&str]) -> Value {
    json!({"argv": argv, "wait_ms": 60000})
}

/// One bare spawn and wait of `/bin/true`: the floor.
fn bare_spawn() -> Duration {
    let t = Instant::now();
    let status = Command::new("/bin/true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    t.elapsed()
}

fn floor(jobs: usize) -> (Summary, f64) {
    let mut samples = Vec::with_capacity(jobs);
    let start = Instant::now();
    for _ in 0..jobs {
        samples.push(bare_spawn());
    }
    (
        summarize(samples),
        jobs as f64 / start.elapsed().as_secs_f64(),
    )
}

/// bubblewrap with every namespace, as its users run it; None when it is not installed.
fn bwrap(jobs: usize) -> Option<(Summary, f64)> {
    let path = ["/usr/bin/bwrap", "/usr/local/bin/bwrap"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let run = || {
        Command::new(path)
            .args([
                "--unshare-all",
                "--die-with-parent",
                "--ro-bind",
                "/",
                "/",
                "--dev",
                "/dev",
                "--proc",
                "/proc",
                "/bin/true",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()
            .filter(|status| status.success())
    };
    run()?;
    let mut samples = Vec::with_capacity(jobs);
    let start = Instant::now();
    for _ in 0..jobs {
        let t = Instant::now();
        run()?;
        samples.push(t.elapsed());
    }
    Some((
        summarize(samples),
        jobs as f64 / start.elapsed().as_secs_f64(),
    ))
}

/// One job at a time, each after one bare spawn: the floor beside the row sees the same load
/// (the machine's load can change several-fold between rows). Returns the row, its jobs/s and
/// its floor.
fn sequential(client: &mut Client, jobs: usize, spec: &Value) -> (Summary, f64, Summary) {
    let mut samples = Vec::with_capacity(jobs);
    let mut floor = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        floor.push(bare_spawn());
        let t = Instant::now();
        let reply = client.call("worker_dispatch_job", spec.clone());
        assert_eq!(reply["result"]["status"], "finished", "{reply}");
        samples.push(t.elapsed());
    }
    let busy: Duration = samples.iter().sum();
    (
        summarize(samples),
        jobs as f64 / busy.as_secs_f64(),
        summarize(floor),
    )
}

/// Keeps `concurrency` dispatches in flight until `jobs` have completed.
fn throughput(client: &mut Client, jobs: usize, concurrency: usize, spec: &Value) -> f64 {
    let start = Instant::now();
    let mut sent = 0;
    let mut done = 0;
    while sent < concurrency.min(jobs) {
        client.send("worker_dispatch_job", spec.clone());
        sent += 1;
    }
    while done < jobs {
        let reply = client.receive();
        assert_eq!(reply["result"]["status"], "finished", "{reply}");
        done += 1;
        if sent < jobs {
            client.send("worker_dispatch_job", spec.clone());
            sent += 1;
        }
    }
    jobs as f64 / start.elapsed().as_secs_f64()
}

fn status_round_trip(client: &mut Client, rounds: usize) -> Summary {
    let job = client.call(
        "worker_dispatch_job",
        json!({"job_id": "bench-status", "argv": ["/bin/true"], "wait_ms": 60000}),
    );
    assert_eq!(job["result"]["status"], "finished");
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        client.call("worker_get_status", json!({"job_id": "bench-status"}));
        samples.push(t.elapsed());
    }
    summarize(samples)
}

/// The p50 of each phase the worker times, from its own metrics (warm-up jobs included).
fn phase_p50s(client: &mut Client) -> String {
    let metrics = client.call("worker_get_metrics", json!({}));
    let latency = &metrics["result"]["latency_ms"];
    [
        "queue", "prepare", "spawn", "execute", "collect", "destroy", "total",
    ]
    .iter()
    .filter_map(|phase| {
        latency[phase]["p50"]
            .as_f64()
            .map(|p50| format!("{phase} {p50:.3}"))
    })
    .collect::<Vec<_>>()
    .join(", ")
}

/// How the worker's jobs started and what its idle sandboxes hold.
fn warm_pool(client: &mut Client) -> String {
    let metrics = client.call("worker_get_metrics", json!({}));
    let pool = &metrics["result"]["warm_sandboxes"];
    if pool.is_null() {
        return "not reported".into();
    }
    let n = |key: &str| pool[key].as_u64().map_or("-".into(), |v| v.to_string());
    let idle_mib = pool["idle_memory_bytes"].as_u64().map_or("-".into(), |b| {
        format!("{:.1}", b as f64 / (1 << 20) as f64)
    });
    format!(
        "started_warm {}, started_on_demand {}, started_cold {}, ready {}/{}, idle_memory {} MiB",
        n("started_warm"),
        n("started_on_demand"),
        n("started_cold"),
        n("ready"),
        n("configured"),
        idle_mib
    )
}

fn row(name: &str, summary: &Summary, rate: f64, floor: &Summary) {
    println!(
        "| {name:<62} | {:>7.3} | {:>7.3} | {:>7.3} | {:>8.0} | {:>9.3} | {:>8.2}x |",
        summary.p50,
        summary.p90,
        summary.p99,
        rate,
        floor.p50,
        summary.p50 / floor.p50
    );
}

fn main() {
    // `cargo test --benches` runs bench targets with --bench absent: keep that quick.
    let benching = std::env::args().any(|arg| arg == "--bench");
    let jobs: usize = std::env::var("BENCH_JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if benching { 2000 } else { 20 });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "dispatch bench: {jobs} jobs per row, {cores} CPUs, binary {}",
        common::worker_binary()
    );

    let (floor_summary, floor_rate) = floor(jobs);
    let bases: Vec<(&str, String)> = {
        let mut bases = vec![(
            "system temp dir",
            std::env::temp_dir().display().to_string(),
        )];
        if std::path::Path::new("/dev/shm").is_dir() {
            bases.push(("tmpfs /dev/shm", "/dev/shm".into()));
        }
        bases
    };

    println!();
    println!(
        "| {:<62} | p50 ms  | p90 ms  | p99 ms  | jobs/s   | floor p50 | p50/floor |",
        "variant (worker rows: each job beside one bare spawn)"
    );
    println!(
        "|{}|---------|---------|---------|----------|-----------|-----------|",
        "-".repeat(64)
    );
    row(
        "floor: Command::new(\"/bin/true\").status()",
        &floor_summary,
        floor_rate,
        &floor_summary,
    );
    if let Some((summary, rate)) = bwrap(jobs) {
        row(
            "bwrap --unshare-all /bin/true",
            &summary,
            rate,
            &floor_summary,
        );
    }
    let mut rates = Vec::new();
    let mut phases = Vec::new();
    let mut pools = Vec::new();
    // (label, base dir, extra settings, spec): the isolation rows use the default base dir.
    let variants: Vec<(String, String, Vec<&str>, Value)> = {
        let mut variants = Vec::new();
        for (label, base) in &bases {
            variants.push((
                format!("argv /bin/true, isolation none, warm ({label})"),
                base.clone(),
                vec!["isolation.profile=\"none\""],
                job(&["/bin/true"]),
            ));
        }
        let temp = bases[0].1.clone();
        // Each sandboxed profile twice: every sandbox built in the job's start, and started
        // from prepared (warm) ones.
        let profiles = [
            ("standard, network none", job(&["/bin/true"])),
            (
                "standard, network open",
                json!({"argv": ["/bin/true"], "network": "open", "wait_ms": 60000}),
            ),
            (
                "strict, network none",
                json!({"argv": ["/bin/true"], "isolation": "strict", "wait_ms": 60000}),
            ),
        ];
        for (profile, spec) in profiles {
            for (start, setting) in [
                ("cold", "isolation.warm_slots=0"),
                ("warm", "isolation.warm_slots=2"),
            ] {
                variants.push((
                    format!("argv /bin/true, {profile}, {start}"),
                    temp.clone(),
                    vec![setting],
                    spec.clone(),
                ));
            }
        }
        variants.push((
            "sh -c true, standard, network none, warm".into(),
            temp,
            vec!["isolation.warm_slots=2"],
            json!({"command": "true", "wait_ms": 60000}),
        ));
        variants
    };
    for (index, (label, base, extra, spec)) in variants.iter().enumerate() {
        let mut settings = vec![
            format!("session.base_dir={base}"),
            "worker.max_concurrent_sessions=8".to_string(),
        ];
        settings.extend(extra.iter().map(|s| s.to_string()));
        let mut client = Client::start(&settings);
        client.call("initialize", json!({}));
        // Warm up the worker's allocator, page cache, cgroup pool and thread pool.
        sequential(&mut client, 50.min(jobs), spec);
        let (summary, rate, beside) = sequential(&mut client, jobs, spec);
        row(&format!("worker {label}"), &summary, rate, &beside);
        // Where a sequential job's time goes inside the worker, before the concurrent runs
        // mix their phases in.
        phases.push((label.clone(), phase_p50s(&mut client)));
        if label.starts_with("argv") {
            let by_concurrency: Vec<(usize, f64)> = [1, 2, 8]
                .iter()
                .map(|&c| (c, throughput(&mut client, jobs, c, spec)))
                .collect();
            rates.push((label.clone(), by_concurrency));
        }
        if extra
            .iter()
            .any(|s| s.starts_with("isolation.warm_slots=") && !s.ends_with("=0"))
        {
            pools.push((label.clone(), warm_pool(&mut client)));
        }
        if index == 0 {
            let status = status_round_trip(&mut client, jobs);
            println!(
                "| {:<62} | {:>7.3} | {:>7.3} | {:>7.3} | {:>8} | {:>9} | {:>9} |",
                "worker_get_status round trip", status.p50, status.p90, status.p99, "-", "-", "-"
            );
        }
    }
    println!();
    println!("worker phases, p50 ms of the sequential run (worker_get_metrics latency_ms):");
    for (label, line) in phases {
        println!("  {label}: {line}");
    }
    println!();
    println!("warm pool after each warm row (worker_get_metrics warm_sandboxes):");
    for (label, line) in pools {
        println!("  {label}: {line}");
    }
    // The load may have changed while the rows ran: the floor again, for comparison.
    let (floor_after, _) = floor(jobs);
    println!();
    println!(
        "floor again at the end: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms",
        floor_after.p50, floor_after.p90, floor_after.p99
    );
    println!();
    println!("throughput (jobs/s; floor at c=1: {floor_rate:.0}):");
    for (label, by_concurrency) in rates {
        let line: Vec<String> = by_concurrency
            .iter()
            .map(|(c, rate)| format!("c={c}: {rate:.0}"))
            .collect();
        println!("  {label}: {}", line.join(", "));
    }
}
