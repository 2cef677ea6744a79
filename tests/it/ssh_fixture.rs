//! The real-sshd fixture works: remote workers answer JSON-RPC through the real OpenSSH client,
//! driven with the command line the sidecar uses; the key can only run the worker; wrong keys
//! and unknown host keys are refused; a killed host is seen as EOF; hosts in their own network
//! namespaces are independent, and a network cut is noticed by the client's keepalives.
//!
//! Needs root, openssh-server, openssh-client and iproute2 (the fixture says which is missing).

use crate::common;
use common::rpc::{Lines, Rpc};
use common::sshd::{SshHost, free_loopback_port, generate_key, known_hosts_name, netns_hosts};
use common::{PATIENCE, processes_with_marker};
use opencode_worker::protocol::table::{self, Method};
use serde_json::{Value, json};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The sidecar's remote command; the forced command replaces it anyway.
const REMOTE: &[&str] = &["opencode-worker", "serve"];
/// How the sidecar notices a silent peer: three missed keepalives a second apart.
const KEEPALIVE: &[&str] = &["-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=3"];
/// Cut detection takes ~4 s by the options above; this is only a hang guard.
const CUT_PATIENCE: Duration = Duration::from_secs(90);

/// JSON-RPC over a real `ssh` child's stdin and stdout, through the tests' one client.
struct SshRpc {
    what: String,
    child: Child,
    rpc: Rpc,
    stderr: Arc<Mutex<String>>,
}

impl SshRpc {
    fn connect(host: &SshHost, remote_command: &[&str]) -> SshRpc {
        let mut command = host.ssh_command(KEEPALIVE, remote_command);
        SshRpc::spawn(&host.name, &mut command)
    }

    fn spawn(what: &str, command: &mut std::process::Command) -> SshRpc {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ssh");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let rpc = Rpc::new(
            what,
            child.stdin.take().unwrap(),
            child.stdout.take().unwrap(),
            Lines::Tolerant,
        )
        .with_context({
            let stderr = stderr.clone();
            move || format!("; ssh stderr:\n{}", stderr.lock().unwrap())
        });
        SshRpc {
            what: what.to_string(),
            child,
            rpc,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.rpc.call(method, params)
    }

    /// Waits for EOF on ssh's stdout; lines before it are dropped. How long it took.
    fn wait_eof(&mut self, patience: Duration) -> Duration {
        self.rpc.wait_eof(patience)
    }

    fn wait_exit(&mut self, patience: Duration) -> ExitStatus {
        wait_child(&mut self.child, patience)
            .unwrap_or_else(|| panic!("{}: ssh still running after {patience:?}", self.what))
    }
}

impl Drop for SshRpc {
    fn drop(&mut self) {
        self.rpc.close_stdin();
        if wait_child(&mut self.child, Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn wait_child(child: &mut Child, patience: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs an ssh that must end by itself (refusals): its status and stderr.
fn run_ssh(mut command: std::process::Command) -> (ExitStatus, String, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssh");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let Some(status) = wait_child(&mut child, PATIENCE) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "ssh did not end by itself within {PATIENCE:?} (a prompt?): {}",
            err.join().unwrap()
        );
    };
    (status, out.join().unwrap(), err.join().unwrap())
}

fn eventually(what: &str, patience: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < patience, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// The remote worker's private session base, made inside the host's own sessions dir.
fn worker_base_dirs(host: &SshHost) -> Vec<String> {
    std::fs::read_dir(host.sessions_dir())
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("opencode-worker-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn loopback_worker_answers_through_ssh_and_runs_a_job() {
    let host = SshHost::loopback("lo1");
    assert_eq!(host.host, "127.0.0.1");
    let entry = host.worker_entry();
    assert_eq!(entry["kind"], "ssh");
    assert_eq!(entry["name"], "lo1");
    assert_eq!(entry["host"], "127.0.0.1");
    assert_eq!(entry["port"], host.port);
    assert_eq!(entry["user"], "root");
    assert_eq!(
        entry["identity_file"],
        host.identity_file.display().to_string()
    );
    assert_eq!(entry["known_hosts"], host.known_hosts.display().to_string());

    let mut ssh = SshRpc::connect(&host, REMOTE);
    let init = ssh.call(
        table::Initialize::NAME,
        json!({"client": {"name": "ssh-fixture"}}),
    );
    assert_eq!(init["name"], "opencode-worker", "{init}");
    assert_eq!(init["protocol"], 1, "{init}");
    assert!(init["worker_id"].as_str().is_some_and(|id| !id.is_empty()));

    let job = ssh.call(
        table::DispatchJob::NAME,
        json!({"command": "echo hi", "wait_ms": 10000}),
    );
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(job["exit_code"], 0, "{job}");
    assert_eq!(job["stdout"], "hi\n", "{job}");

    // The worker is this host's process and keeps its sessions in this host's dir.
    assert_eq!(host.worker_processes().len(), 1, "{:?}", host.processes());
    assert_eq!(worker_base_dirs(&host).len(), 1);
    assert!(
        host.log_text().contains("Accepted publickey for root"),
        "{}",
        host.log_text()
    );

    // The sidecar closing stdin ends the remote worker and the ssh client cleanly.
    ssh.rpc.close_stdin();
    assert!(ssh.wait_exit(PATIENCE).success(), "{}", ssh.stderr());
    eventually("the remote worker exited", PATIENCE, || {
        host.worker_processes().is_empty()
    });
}

#[test]
fn the_key_can_only_run_the_worker() {
    let host = SshHost::loopback_with("lo2", &["--set", "governance.defaults.timeout=123456"]);

    // Whatever command the client asks for, the forced command runs the worker.
    let mut ssh = SshRpc::connect(&host, &["cat", "/etc/passwd"]);
    let init = ssh.call(table::Initialize::NAME, json!({}));
    assert_eq!(init["name"], "opencode-worker", "{init}");
    assert_eq!(
        init["limits"]["defaults"]["timeout"], 123456,
        "the worker args reach the forced command: {init}"
    );
    drop(ssh);

    // Local forwarding: ssh listens locally, but the server refuses every channel.
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    target.set_nonblocking(true).unwrap();
    let target_port = target.local_addr().unwrap().port();
    let local_port = free_loopback_port();
    let forward = format!("{local_port}:127.0.0.1:{target_port}");
    let mut tunnel = SshRpc::spawn(
        "ssh -L",
        &mut host.ssh_command(
            &["-N", "-o", "ExitOnForwardFailure=yes", "-L", &forward],
            &[],
        ),
    );
    let mut stream = None;
    eventually("ssh -N -L listens locally", PATIENCE, || {
        assert!(
            tunnel.child.try_wait().unwrap().is_none(),
            "ssh -L exited early: {}",
            tunnel.stderr()
        );
        stream = TcpStream::connect(("127.0.0.1", local_port)).ok();
        stream.is_some()
    });
    let mut stream = stream.unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 64];
    let read = stream.read(&mut buf);
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "the forwarded connection carried data: {read:?}"
    );
    eventually("ssh reports the refusal", PATIENCE, || {
        tunnel.stderr().contains("administratively prohibited")
    });
    assert!(
        target.accept().is_err(),
        "the forward reached its target: restrict did not refuse it"
    );
    drop(tunnel);

    // Remote forwarding: refused, so ssh gives up (ExitOnForwardFailure).
    let reverse = format!("0:127.0.0.1:{target_port}");
    let (status, _, stderr) = run_ssh(host.ssh_command(
        &["-N", "-o", "ExitOnForwardFailure=yes", "-R", &reverse],
        &[],
    ));
    assert!(!status.success(), "ssh -R succeeded: {stderr}");
    assert!(
        stderr.contains("remote port forwarding failed"),
        "{status}: {stderr}"
    );
}

#[test]
fn wrong_keys_and_unknown_hosts_are_refused_without_a_prompt() {
    let host = SshHost::loopback("lo3");
    let scratch = tempfile::tempdir().unwrap();

    // A client key that is not in authorized_keys.
    let wrong_key = scratch.path().join("wrong_key");
    generate_key(&wrong_key);
    let (status, stdout, stderr) =
        run_ssh(host.ssh_command_with(&wrong_key, &host.known_hosts, &[], REMOTE));
    assert_eq!(status.code(), Some(255), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("Permission denied (publickey)"), "{stderr}");

    // A host key nobody vouched for: an empty known_hosts, then one naming another key.
    let empty = scratch.path().join("known_hosts.empty");
    std::fs::write(&empty, "").unwrap();
    let (status, _, stderr) =
        run_ssh(host.ssh_command_with(&host.identity_file, &empty, &[], REMOTE));
    assert_eq!(status.code(), Some(255), "{stderr}");
    assert!(stderr.contains("Host key verification failed"), "{stderr}");

    let impostor = scratch.path().join("impostor");
    generate_key(&impostor);
    let impostor_pub = std::fs::read_to_string(impostor.with_extension("pub")).unwrap();
    let other = scratch.path().join("known_hosts.other");
    std::fs::write(
        &other,
        format!("{} {impostor_pub}", known_hosts_name(&host.host, host.port)),
    )
    .unwrap();
    let (status, _, stderr) =
        run_ssh(host.ssh_command_with(&host.identity_file, &other, &[], REMOTE));
    assert_eq!(status.code(), Some(255), "{stderr}");
    assert!(stderr.contains("Host key verification failed"), "{stderr}");
    assert!(
        stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{stderr}"
    );

    assert!(
        !host.log_text().contains("Accepted"),
        "a refused client logged in: {}",
        host.log_text()
    );
    assert!(host.worker_processes().is_empty());
    assert!(worker_base_dirs(&host).is_empty(), "a worker started");
}

#[test]
fn a_killed_host_is_seen_as_eof_and_comes_back() {
    let mut host = SshHost::loopback("lo4");
    let mut ssh = SshRpc::connect(&host, REMOTE);
    let first = ssh.call(table::Initialize::NAME, json!({}));
    let marker = format!("sshkill{}", std::process::id());
    let job = ssh.call(
        table::DispatchJob::NAME,
        json!({"job_id": "long", "command": "echo started; sleep 120",
               "env": {"OCW_TEST_MARKER": marker}}),
    );
    assert!(
        matches!(job["status"].as_str(), Some("queued" | "running")),
        "{job}"
    );
    eventually("the job runs and has written", PATIENCE, || {
        let out = ssh.call(table::CollectOutput::NAME, json!({"job_id": "long"}));
        out["stdout"]["data"] == "started\n"
    });
    let workers = host.worker_processes();
    assert_eq!(workers.len(), 1, "{:?}", host.processes());
    assert!(!processes_with_marker(&marker).is_empty(), "the job runs");

    host.kill();
    let eof_after = ssh.wait_eof(PATIENCE);
    eprintln!("ssh saw EOF {eof_after:?} after kill()");
    let status = ssh.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(255), "{status}: {}", ssh.stderr());
    assert!(host.processes().is_empty(), "{:?}", host.processes());
    for pid in workers {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}/exe")).exists(),
            "the remote worker {pid} survived"
        );
    }
    eventually("the remote job is gone", PATIENCE, || {
        processes_with_marker(&marker).is_empty()
    });
    drop(ssh);

    host.restart();
    let mut again = SshRpc::connect(&host, REMOTE);
    let second = again.call(table::Initialize::NAME, json!({}));
    assert_ne!(
        first["worker_id"], second["worker_id"],
        "a new worker process answers"
    );
}

#[test]
fn netns_hosts_are_independent_and_a_cut_is_noticed() {
    let hosts = netns_hosts("ns", 2, &["--set", "governance.defaults.timeout=123456"]);
    assert_eq!(hosts.len(), 2);
    assert_ne!(hosts[0].host, hosts[1].host);
    assert!(hosts.iter().all(|host| host.port == 22 && host.is_netns()));

    let mut clients: Vec<SshRpc> = hosts
        .iter()
        .map(|host| SshRpc::connect(host, REMOTE))
        .collect();
    let inits: Vec<Value> = clients
        .iter_mut()
        .map(|ssh| ssh.call(table::Initialize::NAME, json!({})))
        .collect();
    assert_ne!(inits[0]["worker_id"], inits[1]["worker_id"]);
    for (host, init) in hosts.iter().zip(&inits) {
        assert_eq!(init["limits"]["defaults"]["timeout"], 123456, "{init}");
        assert_eq!(host.worker_processes().len(), 1, "{}", host.name);
        assert_eq!(worker_base_dirs(host).len(), 1, "{}", host.name);
    }
    let job = clients[1].call(
        table::DispatchJob::NAME,
        json!({"command": "echo hi", "wait_ms": 10000}),
    );
    assert_eq!(job["stdout"], "hi\n", "{job}");

    // The cut: no FIN, no RST; only ssh's keepalives notice.
    hosts[0].cut_network();
    let cut = Instant::now();
    let status = clients[0].wait_exit(CUT_PATIENCE);
    eprintln!("ssh noticed the cut after {:?}", cut.elapsed());
    assert_eq!(status.code(), Some(255), "{}", clients[0].stderr());
    assert!(
        clients[0].stderr().contains("Timeout, server"),
        "ssh exits by its keepalives: {}",
        clients[0].stderr()
    );
    clients[0].wait_eof(PATIENCE);

    // The other host did not notice anything.
    let metrics = clients[1].call(table::GetMetrics::NAME, json!({}));
    assert_eq!(metrics["worker_id"], inits[1]["worker_id"], "{metrics}");

    // sshd ends the orphaned worker by its own keepalives (ClientAliveInterval).
    eventually("the cut-off worker ends", CUT_PATIENCE, || {
        hosts[0].worker_processes().is_empty()
    });
    eprintln!(
        "the cut-off remote worker ended {:?} after the cut",
        cut.elapsed()
    );

    hosts[0].restore_network();
    let mut again = SshRpc::connect(&hosts[0], REMOTE);
    let init = again.call(table::Initialize::NAME, json!({}));
    assert_ne!(init["worker_id"], inits[0]["worker_id"]);
    assert_eq!(
        clients[1].call(table::Initialize::NAME, json!({}))["worker_id"],
        inits[1]["worker_id"]
    );
}
