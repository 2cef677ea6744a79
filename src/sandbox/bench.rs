//! Per-job cost of each layer, measured end to end (prepare + spawn `/bin/true` + wait +
//! release), against the floor and bubblewrap. The variants run interleaved, one job each in
//! turn, so load from other processes on the machine falls on all of them alike. Run with
//! `cargo test --release --lib sandbox::bench -- --ignored --nocapture`.

use super::cgroup::{Cgroups, Layout};
use super::host::Inner;
use super::tests::Fixture;
use super::*;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

const ROUNDS: usize = 300;
const WARM_UP: usize = 20;

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

/// Every layer off, then `enable` turns some back on (it sees the probed values first).
fn only(fx: &Fixture, enable: impl FnOnce(&mut Inner, Saved)) -> Host {
    variant(fx, |i| {
        let saved = Saved {
            cgroups: std::mem::replace(&mut i.cgroups, Cgroups::new(Layout::default())),
            landlock: i.landlock.clone(),
        };
        bare(i);
        enable(i, saved);
    })
}

struct Saved {
    cgroups: Cgroups,
    landlock: Result<u32, String>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn plain(pre_exec: bool) {
    let mut command = Command::new("/bin/true");
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if pre_exec {
        // SAFETY: async-signal-safe hook.
        unsafe {
            command.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
    }
    assert!(command.status().expect("spawn").success());
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

fn bwrap() {
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
}

#[test]
#[ignore = "benchmark: run explicitly with --release --ignored --nocapture"]
fn layer_costs() {
    let fx = Fixture::new_in(std::path::Path::new("/var/tmp"));
    let open = fx.request(true);
    let none = fx.request(false);
    let mut limited = none.clone();
    limited.memory_bytes = Some(1 << 30);
    limited.pids = Some(256);
    limited.cpu_cores = Some(1.0);
    let mut limited_open = limited.clone();
    limited_open.network_open = true;
    let mut strict = limited.clone();
    strict.profile = Profile::Strict;

    let off = variant(&fx, bare);
    let cgroups = only(&fx, |i, saved| i.cgroups = saved.cgroups);
    let landlock = only(&fx, |i, saved| i.landlock = saved.landlock);
    let seccomp = only(&fx, |i, _| i.seccomp = Ok(()));
    let user = only(&fx, |i, _| i.ns.user = Ok(()));
    let user_net = only(&fx, |i, _| {
        i.ns.user = Ok(());
        i.ns.net = Ok(());
    });
    let user_mount = only(&fx, |i, _| {
        i.ns.user = Ok(());
        i.ns.mount = Ok(());
    });
    let user_pid = only(&fx, |i, _| {
        i.ns.user = Ok(());
        i.ns.pid = Ok(());
    });
    let full = Host::probe(&fx.config());
    let no_ipc = variant(&fx, |i| i.ns.ipc = no("off"));
    let no_mount = variant(&fx, |i| i.ns.mount = no("off"));
    let no_pid = variant(&fx, |i| i.ns.pid = no("off"));
    let has_bwrap = std::path::Path::new("/usr/bin/bwrap").exists();

    type Run<'a> = Box<dyn Fn() + 'a>;
    let mut variants: Vec<(&str, Run)> = vec![
        ("floor: Command /bin/true", Box::new(|| plain(false))),
        ("pre_exec(setsid) only", Box::new(|| plain(true))),
        (
            "sandbox with every layer off",
            Box::new(|| job(&off, &open)),
        ),
        (
            "cgroups only (4 single-use leaves, limits)",
            Box::new(|| job(&cgroups, &limited_open)),
        ),
        ("Landlock only", Box::new(|| job(&landlock, &open))),
        ("seccomp only", Box::new(|| job(&seccomp, &open))),
        ("user namespace only", Box::new(|| job(&user, &open))),
        (
            "user + network namespace (per job)",
            Box::new(|| job(&user_net, &none)),
        ),
        (
            "user + mount namespace",
            Box::new(|| job(&user_mount, &none)),
        ),
        ("user + PID namespace", Box::new(|| job(&user_pid, &none))),
        (
            "FULL standard, network none, limits",
            Box::new(|| job(&full, &limited)),
        ),
        (
            "  same without the IPC namespace",
            Box::new(|| job(&no_ipc, &limited)),
        ),
        (
            "  same without the mount namespace",
            Box::new(|| job(&no_mount, &limited)),
        ),
        (
            "  same without the PID namespace",
            Box::new(|| job(&no_pid, &limited)),
        ),
        (
            "FULL standard, network open, limits",
            Box::new(|| job(&full, &limited_open)),
        ),
        (
            "FULL strict (adds PID namespace)",
            Box::new(|| job(&full, &strict)),
        ),
    ];
    if has_bwrap {
        variants.push(("bwrap --unshare-all --ro-bind / /", Box::new(bwrap)));
    }
    // OCW_BENCH_ONLY=seccomp,floor keeps the variants whose name contains one of the words.
    if let Ok(only) = std::env::var("OCW_BENCH_ONLY") {
        variants.retain(|(name, _)| only.split(',').any(|w| name.contains(w)));
    }
    let mut times = vec![Vec::with_capacity(ROUNDS); variants.len()];
    for round in 0..WARM_UP + ROUNDS {
        for (i, (_, run)) in variants.iter().enumerate() {
            let started = Instant::now();
            run();
            if round >= WARM_UP {
                times[i].push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    let mut floor = 0.0;
    for ((name, _), times) in variants.iter().zip(times.iter_mut()) {
        times.sort_by(f64::total_cmp);
        let p50 = percentile(times, 0.5);
        if floor == 0.0 {
            floor = p50;
        }
        println!(
            "{name:<40} p50 {p50:6.2} ms  p90 {:6.2} ms  {:4.1}x floor",
            percentile(times, 0.9),
            p50 / floor
        );
    }
}
