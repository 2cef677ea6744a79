//! Escape attempts only the kernel sandbox (`src/sandbox`) contains, driven through the real
//! binary with the default profile: writes outside the session, reading credentials and other
//! sessions, the host's loopback, UDP, DNS and Unix sockets, fork and memory bombs, `setsid`
//! escapees, ptrace and signals to the worker; and the positive side, real toolchains working.
//!
//! Each test first asks `initialize` whether the worker runs jobs in the sandbox (its
//! `syscall_filter` layer is reported) and says SKIPPED otherwise, so this file can land before
//! the runner is wired to `JobSandbox`.
//!
//! Every scenario runs twice (`cold_and_warm!`): `cold_start::` with every sandbox built in its
//! job's start, `warm_start::` with prepared (warm) sandboxes.

use crate::common;
use crate::warm::{Slots, assert_start_agrees, cold_and_warm};
use common::*;
use opencode_worker::protocol::table::{self, Method};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A worker whose HOME is a fake home holding an ssh key, or None when jobs are not sandboxed.
struct Sandboxed {
    worker: Worker,
    home: tempfile::TempDir,
}

/// Where OpenCode, other agents and shells keep secrets, with a value a leak would show.
const PLANTED: &[(&str, &str)] = &[
    (".local/share/opencode/auth.json", "planted-opencode-key"),
    (
        ".config/opencode/opencode.json",
        "planted-opencode-config-key",
    ),
    (".claude/.credentials.json", "planted-claude-token"),
    (".codex/auth.json", "planted-codex-token"),
    (".bash_history", "export PLANTED_HISTORY_TOKEN=1"),
    (".local/share/fish/fish_history", "planted-fish-history"),
    (".python_history", "planted-python-history"),
    (".env", "PLANTED_ENV_FILE=1"),
    (".env.local", "PLANTED_ENV_LOCAL=1"),
];

fn sandboxed_worker(slots: Slots, settings: &[&str]) -> Option<Sandboxed> {
    // Outside /tmp: the job's private /tmp would hide it whatever the rules.
    let home = tempfile::tempdir_in("/var/tmp").expect("fake home");
    std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
    std::fs::write(
        home.path().join(".ssh/id_ed25519"),
        "-----BEGIN OPENSSH PRIVATE KEY-----",
    )
    .unwrap();
    std::fs::write(home.path().join("project.txt"), "project file").unwrap();
    for (path, secret) in PLANTED {
        let path = home.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, secret).unwrap();
    }
    let home_str = home.path().to_str().unwrap().to_owned();
    let settings = slots.with(settings);
    let mut worker = Worker::start_walls(&settings, &[("HOME", home_str.as_str())]);
    let init = worker.call(table::Initialize::NAME, json!({}));
    let layers = init["isolation"]["layers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let wired = layers.iter().any(|l| l["name"] == "syscall_filter");
    if !wired {
        eprintln!("SKIPPED: the runner does not run jobs in crate::sandbox yet: {layers:?}");
        return None;
    }
    slots.await_ready(&mut worker);
    Some(Sandboxed { worker, home })
}

fn layer_active(worker: &mut Worker, name: &str) -> bool {
    let init = worker.call(table::Initialize::NAME, json!({}));
    ["layers", "limits"].iter().any(|list| {
        init["isolation"][list].as_array().is_some_and(|l| {
            l.iter()
                .any(|l| l["name"] == name && l["state"] == "active")
        })
    })
}

fn run(worker: &mut Worker, command: &str) -> Value {
    worker.dispatch(json!({"command": command, "wait_ms": 30000}))
}

fn stdout(job: &Value) -> &str {
    job["stdout"].as_str().unwrap_or_default()
}

fn assert_healthy(worker: &mut Worker) {
    let job = run(worker, "echo alive");
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(stdout(&job), "alive\n");
    assert_start_agrees(worker, &job);
}

fn writes_outside_the_session_fail(slots: Slots) {
    let Some(Sandboxed { mut worker, home }) = sandboxed_worker(slots, &[]) else {
        return;
    };
    let marker = worker.marker.clone();
    let targets: Vec<PathBuf> = vec![
        home.path().join(format!("escaped-{marker}")),
        home.path().join("project.txt"),
        PathBuf::from(format!("/var/tmp/escaped-{marker}")),
        worker.base.path().join(format!("escaped-{marker}")),
        PathBuf::from(format!("/etc/escaped-{marker}")),
    ];
    for target in &targets {
        let job = run(&mut worker, &format!("echo pwned > {}", target.display()));
        // Under /tmp the write lands in the job's private tmpfs; elsewhere it is refused.
        if !target.starts_with("/tmp") {
            assert_eq!(job["status"], "failed", "{}: {job}", target.display());
            assert_eq!(job["reason"], "exit_code");
        }
    }
    for target in &targets {
        if target.ends_with("project.txt") {
            assert_eq!(std::fs::read_to_string(target).unwrap(), "project file");
        } else {
            assert!(!target.exists(), "{} was written", target.display());
        }
    }
    // /tmp is the job's own: writing works and nothing lands in the host's /tmp.
    let job = run(
        &mut worker,
        &format!("echo x > /tmp/escaped-{marker} && cat /tmp/escaped-{marker}"),
    );
    assert_eq!(job["status"], "finished", "{job}");
    assert!(!Path::new(&format!("/tmp/escaped-{marker}")).exists());
    assert_healthy(&mut worker);
}

fn ssh_keys_and_other_sessions_cannot_be_read(slots: Slots) {
    let Some(Sandboxed { mut worker, home }) = sandboxed_worker(slots, &[]) else {
        return;
    };
    let key = home.path().join(".ssh/id_ed25519");
    let job = run(
        &mut worker,
        &format!(
            "cat {}; ls {}",
            key.display(),
            home.path().join(".ssh").display()
        ),
    );
    assert_ne!(job["status"], "finished", "{job}");
    assert!(!stdout(&job).contains("PRIVATE KEY"), "{job}");
    assert!(!stdout(&job).contains("id_ed25519"), "{job}");
    let job = run(
        &mut worker,
        &format!("cat {}/project.txt", home.path().display()),
    );
    assert_eq!(
        stdout(&job),
        "project file",
        "the rest of the home stays readable: {job}"
    );

    // A second session that keeps a secret while it runs.
    let holder = worker.dispatch(json!({"command": "echo secret-of-a > mine; sleep 20"}));
    let holder_id = holder["job_id"].as_str().unwrap().to_owned();
    let session = worker.wait_status(&holder_id, "running")["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut secret = None;
    eventually("the holder wrote its secret", || {
        secret = find_file(worker.base.path(), "mine", 4);
        secret.is_some()
    });
    let secret = secret.unwrap();
    assert!(secret.to_string_lossy().contains(&session));
    let job = run(
        &mut worker,
        &format!(
            "cat {}; ls {}",
            secret.display(),
            secret.parent().unwrap().display()
        ),
    );
    assert!(!stdout(&job).contains("secret-of-a"), "{job}");
    assert!(!stdout(&job).contains("mine"), "{job}");
    worker.call(table::CancelJob::NAME, json!({"job_id": holder_id}));
    assert_healthy(&mut worker);
}

fn find_file(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
        if depth > 0
            && path.is_dir()
            && let Some(found) = find_file(&path, name, depth - 1)
        {
            return Some(found);
        }
    }
    None
}

fn network_none_reaches_no_host_service(slots: Slots) {
    let Some(Sandboxed { mut worker, .. }) = sandboxed_worker(slots, &[]) else {
        return;
    };
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let port = tcp.local_addr().unwrap().port();
    let udp = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
    udp.set_nonblocking(true).unwrap();
    // Where host daemons put their sockets; /run needs root, the test falls back to /tmp.
    let sockets = tempfile::Builder::new()
        .prefix("ocw-escape")
        .tempdir_in("/run")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let unix_path = sockets.path().join("daemon.sock");
    let unix = std::os::unix::net::UnixListener::bind(&unix_path).unwrap();
    unix.set_nonblocking(true).unwrap();
    let script = format!(
        r#"/usr/bin/python3 - <<'EOF'
import socket
def tcp(): socket.create_connection(('127.0.0.1', {port}), timeout=2)
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b'x', ('127.0.0.1', {port}))
def dns(): socket.getaddrinfo('example.com', 80)
def unix(): socket.socket(socket.AF_UNIX).connect('{unix}')
for name, fn in [('tcp', tcp), ('udp', udp), ('dns', dns), ('unix', unix)]:
    try:
        fn(); print(name, 'reached')
    except Exception as e:
        print(name, 'blocked', type(e).__name__)
EOF"#,
        unix = unix_path.display()
    );
    let job = run(&mut worker, &script);
    let out = stdout(&job);
    for name in ["tcp", "dns", "unix"] {
        assert!(out.contains(&format!("{name} blocked")), "{name}: {job}");
    }
    assert!(tcp.accept().is_err(), "the host TCP listener was reached");
    assert!(
        udp.recv(&mut [0u8; 4]).is_err(),
        "the host UDP socket got a datagram"
    );
    assert!(unix.accept().is_err(), "the host Unix socket was reached");
    assert_healthy(&mut worker);
}

fn a_setsid_grandchild_dies_with_its_job(slots: Slots) {
    let Some(Sandboxed { mut worker, .. }) = sandboxed_worker(slots, &[]) else {
        return;
    };
    let job = run(
        &mut worker,
        "setsid sleep 300 >/dev/null 2>&1 & nohup sleep 301 >/dev/null 2>&1 & (sleep 302 &) ; echo started",
    );
    assert_eq!(job["status"], "finished", "{job}");
    eventually("no process of the job outlives it", || {
        worker.leftover_processes().is_empty()
    });
    // And on cancel.
    let job = worker.dispatch(json!({"command": "setsid sleep 300 >/dev/null 2>&1 & sleep 300"}));
    let id = job["job_id"].as_str().unwrap().to_owned();
    worker.wait_status(&id, "running");
    eventually("the escapee started", || {
        !worker.leftover_processes().is_empty()
    });
    worker.call(table::CancelJob::NAME, json!({"job_id": id}));
    assert_eq!(worker.wait_ended(&id)["status"], "cancelled");
    eventually("cancel took the escapee too", || {
        worker.leftover_processes().is_empty()
    });
    assert_healthy(&mut worker);
}

fn ptrace_and_signals_cannot_reach_the_worker(slots: Slots) {
    let Some(Sandboxed { mut worker, .. }) = sandboxed_worker(slots, &[]) else {
        return;
    };
    let pid = worker.child.id();
    let script = format!(
        r#"kill -9 {pid}; kill -STOP {pid}; /usr/bin/python3 - <<'EOF'
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print('attach', libc.ptrace(16, {pid}, 0, 0), os.strerror(ctypes.get_errno()))
try:
    open('/proc/{pid}/mem', 'rb').read(1); print('mem readable')
except Exception as e:
    print('mem blocked')
EOF"#
    );
    let job = run(&mut worker, &script);
    assert!(stdout(&job).contains("attach -1"), "{job}");
    assert!(stdout(&job).contains("mem blocked"), "{job}");
    let job = run(&mut worker, &format!("cat /proc/{pid}/environ"));
    assert!(
        !stdout(&job).contains("HOME="),
        "the worker's environment leaked: {job}"
    );
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "the worker died"
    );
    assert_healthy(&mut worker);
}

fn a_fork_bomb_hits_the_pids_limit(slots: Slots) {
    let Some(Sandboxed { mut worker, .. }) = sandboxed_worker(slots, &[]) else {
        return;
    };
    let job = worker.dispatch(json!({
        "command": "bomb() { bomb | bomb & }; bomb; sleep 5",
        "limits": {"pids": 64, "timeout": 20000},
        "wait_ms": 30000,
    }));
    if layer_active(&mut worker, "pids") {
        assert_eq!(job["status"], "killed", "{job}");
        assert_eq!(job["reason"], "pids_limit", "{job}");
    }
    assert_start_agrees(&mut worker, &job);
    eventually("the bomb is gone", || {
        worker.leftover_processes().is_empty()
    });
    assert_healthy(&mut worker);
}

fn a_memory_bomb_hits_the_memory_limit(slots: Slots) {
    let Some(Sandboxed { mut worker, .. }) = sandboxed_worker(slots, &[]) else {
        return;
    };
    let job = worker.dispatch(json!({
        "command": "/usr/bin/python3 -c \"x = [b'x' * (1 << 20) for _ in range(4096)]; print('survived')\"",
        "limits": {"memory": "128MiB"},
        "wait_ms": 30000,
    }));
    assert!(!stdout(&job).contains("survived"), "{job}");
    assert_ne!(job["status"], "finished", "{job}");
    if layer_active(&mut worker, "memory") {
        assert_eq!(job["status"], "killed", "{job}");
        assert_eq!(job["reason"], "memory_limit", "{job}");
        assert_start_agrees(&mut worker, &job);
        let peak = job["metrics"]["max_rss_bytes"].as_u64().unwrap_or(u64::MAX);
        assert!(peak <= 128 << 20, "peak {peak}");
    }
    assert_healthy(&mut worker);
}

fn real_toolchains_work_under_the_default_profile(slots: Slots) {
    let Some(Sandboxed { mut worker, .. }) = sandboxed_worker(slots, &[]) else {
        return;
    };
    // The job's HOME is its session; toolchain homes must be named.
    let real_home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let mut env = json!({"PATH": "/usr/local/bin:/usr/bin:/bin"});
    let cargo_home = Path::new(&real_home).join(".cargo");
    if cargo_home.join("bin/cargo").exists() {
        env["CARGO_HOME"] = json!(cargo_home);
        env["RUSTUP_HOME"] = json!(Path::new(&real_home).join(".rustup"));
        env["PATH"] = json!(format!(
            "{}:/usr/local/bin:/usr/bin:/bin",
            cargo_home.join("bin").display()
        ));
    }
    let job = worker.dispatch(json!({
        "command": "set -e; (command -v cargo >/dev/null && cargo --version) || echo no-cargo; \
                    python3 -c 'import sys, tempfile, sqlite3; print(\"py\", sys.version_info[0])'; \
                    node -e 'console.log(\"node\", 1 + 1)'; \
                    git init -q r && cd r && git -c user.email=a@b -c user.name=n commit -q --allow-empty -m one && git log --oneline | wc -l",
        "env": env,
        "wait_ms": 60000,
    }));
    assert_eq!(job["status"], "finished", "{job}");
    let out = stdout(&job);
    assert!(out.contains("cargo ") || out.contains("no-cargo"), "{out}");
    assert!(
        out.contains("py 3") && out.contains("node 2") && out.ends_with("1\n"),
        "{out}"
    );
}

fn opencode_and_agent_credentials_and_shell_histories_are_hidden(slots: Slots) {
    let Some(Sandboxed { mut worker, home }) = sandboxed_worker(slots, &[]) else {
        return;
    };
    let paths: Vec<String> = PLANTED
        .iter()
        .map(|(path, _)| home.path().join(path).display().to_string())
        .collect();
    let job = run(
        &mut worker,
        &format!(
            "for f in {}; do cat \"$f\"; done; ls -a {} | sed s/^/listed:/; cat {}",
            paths.join(" "),
            home.path().join(".local/share/opencode").display(),
            home.path().join("project.txt").display()
        ),
    );
    for (path, secret) in PLANTED {
        assert!(!stdout(&job).contains(secret), "{path} leaked: {job}");
    }
    assert!(!stdout(&job).contains("listed:auth.json"), "{job}");
    // The rest of the home stays readable.
    assert!(stdout(&job).ends_with("project file"), "{job}");

    let init = worker.call(table::Initialize::NAME, json!({}));
    let hidden = init["isolation"]["hidden"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let category_of = |path: &str| {
        hidden
            .iter()
            .find(|h| h["path"] == path)
            .map(|h| h["category"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(
        category_of("~/.local/share/opencode").as_deref(),
        Some("agent_credentials"),
        "{hidden:?}"
    );
    assert_eq!(
        category_of("~/.bash_history").as_deref(),
        Some("shell_history")
    );
    assert_eq!(category_of("~/.env.*").as_deref(), Some("env_files"));

    let doctor = std::process::Command::new(BIN)
        .arg("doctor")
        .env("HOME", home.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&doctor.stdout);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("agent_credentials"))
        .unwrap_or_else(|| panic!("doctor lists no agent_credentials: {text}"));
    assert!(line.contains("~/.local/share/opencode"), "{line}");
    assert!(text.contains("shell_history"), "{text}");
    assert_healthy(&mut worker);
}

fn another_workers_sessions_and_processes_are_out_of_reach(slots: Slots) {
    // Outside /tmp: the job's private /tmp would hide it whatever the rules.
    let shared = tempfile::tempdir_in("/var/tmp").unwrap();
    let base = format!("session.base_dir={}", shared.path().display());
    let Some(Sandboxed { worker: mut a, .. }) = sandboxed_worker(slots, &[&base]) else {
        return;
    };
    let mut b = Worker::start_walls(&slots.with(&[&base]), &[]);
    let tag = format!("holder-{}", b.marker);
    let holder = b.dispatch(json!({
        "command": format!("python3 -c 'import time; time.sleep(30)' \"$PWD/api-key.txt\" {tag}"),
        "files": {"api-key.txt": "sk-planted-by-b"},
    }));
    let holder_id = holder["job_id"].as_str().unwrap().to_owned();
    b.wait_status(&holder_id, "running");
    let mut key = None;
    eventually("worker B's session holds the key", || {
        key = find_file(shared.path(), "api-key.txt", 4);
        key.is_some()
    });
    let key = key.unwrap();
    eventually("B's job runs", || {
        !processes_with_marker(&b.marker).is_empty()
    });
    let job = run(
        &mut a,
        &format!(
            "cat {}; ls {} | sed s/^/listed:/; cat /proc/[0-9]*/cmdline | tr '\\0' ' '",
            key.display(),
            key.parent().unwrap().display()
        ),
    );
    assert!(!stdout(&job).contains("sk-planted-by-b"), "{job}");
    assert!(!stdout(&job).contains("listed:api-key.txt"), "{job}");
    let pid_namespace = job["isolation"].as_array().is_some_and(|layers| {
        layers.iter().any(|l| {
            l["name"] == "process_tree"
                && l["mechanism"]
                    .as_str()
                    .is_some_and(|m| m.contains("PID namespace"))
        })
    });
    if pid_namespace {
        assert!(
            !stdout(&job).contains(&tag),
            "worker A's job sees B's processes: {job}"
        );
    } else {
        eprintln!("no PID namespace on this host: the /proc view is not checked");
    }
    b.call(table::CancelJob::NAME, json!({"job_id": holder_id}));
    assert_healthy(&mut a);
}

fn the_private_tmpfs_is_bounded_by_the_memory_limit(slots: Slots) {
    let Some(Sandboxed { mut worker, .. }) = sandboxed_worker(slots, &[]) else {
        return;
    };
    let job = worker.dispatch(json!({
        "command": "for d in /tmp /dev/shm; do dd if=/dev/zero of=$d/fill bs=1M count=1536 2>&1; \
                    echo rc=$?; echo kept=$(stat -c %s $d/fill); rm -f $d/fill; done",
        "limits": {"memory": "128MiB", "timeout": 60000},
        "wait_ms": 90000,
    }));
    let mounts = job["isolation"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["name"] == "mounts").cloned());
    let Some(mounts) = mounts else {
        eprintln!("SKIPPED: no mount namespace, no private tmpfs: {job}");
        return;
    };
    assert_eq!(job["status"], "finished", "{job}");
    let out = stdout(&job);
    assert_eq!(out.matches("No space left on device").count(), 2, "{out}");
    assert_eq!(out.matches("rc=1").count(), 2, "{out}");
    let kept: u64 = out
        .lines()
        .filter_map(|l| l.strip_prefix("kept="))
        .map(|n| n.parse::<u64>().unwrap())
        .sum();
    assert!(kept <= 128 << 20, "{kept} bytes held in tmpfs: {out}");
    assert!(
        mounts["mechanism"]
            .as_str()
            .unwrap_or_default()
            .contains("at most"),
        "{mounts}"
    );
    assert_healthy(&mut worker);
}

fn a_sigkilled_worker_leaves_no_job_process_behind(slots: Slots) {
    let Some(Sandboxed { mut worker, .. }) =
        sandboxed_worker(slots, &["worker.max_concurrent_sessions=4"])
    else {
        return;
    };
    let mut ids = Vec::new();
    for _ in 0..4 {
        let job = worker.dispatch(json!({
            "command": "setsid sleep 300 >/dev/null 2>&1 & nohup sleep 301 >/dev/null 2>&1 & \
                        (sleep 302 &); sleep 303",
        }));
        ids.push(job["job_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        worker.wait_status(id, "running");
    }
    eventually("every job and its escapees started", || {
        worker.leftover_processes().len() >= 4 * 4
    });
    let before = worker.leftover_processes().len();
    worker.child.kill().unwrap();
    worker.child.wait().unwrap();
    eprintln!("{before} job processes before the worker was SIGKILLed");
    // A bound on waiting for the kernel to deliver the deaths, not a speed assertion.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut left = worker.leftover_processes();
    while !left.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        left = worker.leftover_processes();
    }
    for pid in &left {
        // Clean up before failing, so a regression does not leave sleepers behind.
        // SAFETY: plain signal delivery to a pid that carries this test's marker.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    assert!(
        left.is_empty(),
        "job processes outlived the worker: {left:?}"
    );
}

cold_and_warm!(
    writes_outside_the_session_fail,
    ssh_keys_and_other_sessions_cannot_be_read,
    network_none_reaches_no_host_service,
    a_setsid_grandchild_dies_with_its_job,
    ptrace_and_signals_cannot_reach_the_worker,
    a_fork_bomb_hits_the_pids_limit,
    a_memory_bomb_hits_the_memory_limit,
    real_toolchains_work_under_the_default_profile,
    opencode_and_agent_credentials_and_shell_histories_are_hidden,
    another_workers_sessions_and_processes_are_out_of_reach,
    the_private_tmpfs_is_bounded_by_the_memory_limit,
    a_sigkilled_worker_leaves_no_job_process_behind,
);
