//! Per-job cost of each layer, measured end to end (prepare + spawn `/bin/true` + wait +
//! release), against the floor and bubblewrap. Run with
//! `cargo test --release --lib sandbox::bench -- --ignored --nocapture`.

use super::cgroup::{Cgroups, Layout};
use super::host::Inner;
use super::tests::Fixture;
use super::*;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

const RUNS: usize = 400;

fn variant(fx: &Fixture, change: impl FnOnce(&mut Inner)) -> Host {
    let mut host = Host::probe(&fx.config());
    if let Some(inner) = Arc::get_mut(&mut host.inner) {
        change(inner);
    }
    host
}

fn no(why: &str) -> Result<(), String> {
    Err(why.into())
}

fn bare(inner: &mut Inner) {
    inner.landlock = Err("off".into());
    inner.seccomp = no("off");
    inner.ns.user = no("off");
    inner.ns.mount = no("off");
    inner.ns.net = no("off");
    inner.ns.ipc = no("off");
    inner.ns.pid = no("off");
    inner.root = false;
    inner.cgroups = Cgroups::new(Layout::default());
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn measure(name: &str, mut one: impl FnMut()) -> f64 {
    for _ in 0..20 {
        one();
    }
    let mut times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            one();
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let p50 = percentile(&times, 0.5);
    println!(
        "{name:<44} p50 {p50:6.2} ms  p99 {:6.2} ms  {:5.0} jobs/s",
        percentile(&times, 0.99),
        1000.0 / (times.iter().sum::<f64>() / times.len() as f64)
    );
    p50
}

fn job(host: &Host, req: &JobRequest) {
    let sandbox = Arc::new(JobSandbox::prepare(host, req).expect("prepare"));
    let inner = sandbox.clone();
    let mut command = Command::new("/bin/true");
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: async-signal-safe hook.
    unsafe {
        command.pre_exec(move || {
            libc::setsid();
            inner.enter_in_child()
        });
    }
    let mut child = command.spawn().expect("spawn");
    sandbox.attach(child.id()).expect("attach");
    let status = child.wait().expect("wait");
    assert!(status.success());
    sandbox.kill_all();
}

#[test]
#[ignore = "benchmark: run explicitly with --release --ignored --nocapture"]
fn layer_costs() {
    let fx = Fixture::new_in(std::path::Path::new("/var/tmp"));
    let open = fx.request(true);
    let none = fx.request(false);
    let floor = measure("floor: Command /bin/true", || {
        let status = Command::new("/bin/true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("spawn");
        assert!(status.success());
    });
    measure("pre_exec(setsid) only", || {
        let mut command = Command::new("/bin/true");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: async-signal-safe hook.
        unsafe {
            command.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        assert!(command.status().expect("spawn").success());
    });
    let host = variant(&fx, bare);
    measure("sandbox with every layer off", || job(&host, &open));
    let host = variant(&fx, |i| {
        let cgroups = std::mem::replace(&mut i.cgroups, Cgroups::new(Layout::default()));
        bare(i);
        i.cgroups = cgroups;
    });
    measure("cgroups only (pooled leaves, limits written)", || {
        let mut req = open.clone();
        req.memory_bytes = Some(1 << 30);
        req.pids = Some(256);
        req.cpu_cores = Some(1.0);
        job(&host, &req)
    });
    for keep in ["v2", "memory", "pids", "cpu"] {
        let host = variant(&fx, |i| {
            let mut cgroups = std::mem::replace(&mut i.cgroups, Cgroups::new(Layout::default()));
            bare(i);
            let l = &mut cgroups.layout;
            let (v2, memory, pids, cpu) = (
                l.v2.take(),
                l.memory_v1.take(),
                l.pids_v1.take(),
                l.cpu_v1.take(),
            );
            match keep {
                "v2" => l.v2 = v2,
                "memory" => l.memory_v1 = memory,
                "pids" => l.pids_v1 = pids,
                _ => l.cpu_v1 = cpu,
            }
            i.cgroups = cgroups;
        });
        let mut req = open.clone();
        req.memory_bytes = Some(1 << 30);
        req.pids = Some(256);
        req.cpu_cores = Some(1.0);
        measure(&format!("cgroup {keep} leaf only"), || job(&host, &req));
    }
    let host = variant(&fx, |i| {
        let landlock = i.landlock.clone();
        bare(i);
        i.landlock = landlock;
    });
    measure("Landlock only", || job(&host, &open));
    let host = variant(&fx, |i| {
        bare(i);
        i.seccomp = Ok(());
    });
    measure("seccomp only", || job(&host, &open));
    let host = variant(&fx, |i| {
        bare(i);
        i.ns.user = Ok(());
    });
    measure("user namespace only", || job(&host, &open));
    let host = variant(&fx, |i| {
        bare(i);
        i.ns.user = Ok(());
        i.ns.net = Ok(());
    });
    measure("user + network namespace", || job(&host, &none));
    let host = variant(&fx, |i| {
        bare(i);
        i.ns.user = Ok(());
        i.ns.mount = Ok(());
    });
    measure("user + mount namespace (tmpfs /tmp, /run)", || {
        job(&host, &none)
    });
    let host = variant(&fx, |i| {
        bare(i);
        i.ns.user = Ok(());
        i.ns.pid = Ok(());
    });
    measure("user + PID namespace (relay fork)", || job(&host, &none));
    let host = Host::probe(&fx.config());
    let mut limited = none.clone();
    limited.memory_bytes = Some(1 << 30);
    limited.pids = Some(256);
    limited.cpu_cores = Some(1.0);
    let full = measure("full standard, network none, limits", || {
        job(&host, &limited)
    });
    let mut limited_open = limited.clone();
    limited_open.network_open = true;
    measure("full standard, network open, limits", || {
        job(&host, &limited_open)
    });
    let mut strict = limited.clone();
    strict.profile = Profile::Strict;
    measure("full strict (adds PID namespace)", || job(&host, &strict));
    if std::path::Path::new("/usr/bin/bwrap").exists() {
        measure("bwrap --unshare-all --ro-bind / / true", || {
            let status = Command::new("/usr/bin/bwrap")
                .args([
                    "--unshare-all",
                    "--ro-bind",
                    "/",
                    "/",
                    "--dev",
                    "/dev",
                    "/bin/true",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("bwrap");
            assert!(status.success());
        });
    }
    println!("full standard p50 / floor p50 = {:.2}x", full / floor);
}
