//! Per-job latency over the SSH hop against local, in one run: the floor (a bare
//! `std::process::Command` spawn of `/bin/true`), the local worker, the fleet routing to a
//! remote worker through a plain pipe (no ssh: the routing cost alone), and the fleet routing
//! to a remote worker through the real OpenSSH client and a real sshd on 127.0.0.1.
//! Also the per-host cost a remote adds: handshake time and the memory of its processes.
//!
//! `cargo bench --bench remote` (root and /usr/sbin/sshd needed; BENCH_JOBS=N for sample size).

use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{BIN, Client};
const SSHD: &str = "/usr/sbin/sshd";

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

struct Row {
    name: String,
    samples: Vec<Duration>,
}

/// Fleet-specific calls on the shared client.
trait Fleet {
    fn result(&mut self, method: &str, params: Value) -> Value;
    fn wait_up(&mut self) -> Value;
    fn jobs(&mut self, name: &str, jobs: usize) -> Row;
}

impl Fleet for Client {
    fn result(&mut self, method: &str, params: Value) -> Value {
        self.call(method, params)["result"].clone()
    }

    fn wait_up(&mut self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let metrics = self.result("worker_get_metrics", json!({}));
            if metrics["fleet"]["workers"]
                .as_array()
                .is_some_and(|w| w.iter().all(|w| w["link"] == "up"))
            {
                return metrics;
            }
            assert!(Instant::now() < deadline, "remote never came up: {metrics}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn jobs(&mut self, name: &str, jobs: usize) -> Row {
        let spec = json!({"argv": ["/bin/true"], "wait_ms": 60000});
        for _ in 0..jobs / 10 + 1 {
            self.call("worker_dispatch_job", spec.clone());
        }
        let samples = (0..jobs)
            .map(|_| {
                let started = Instant::now();
                let job = self.result("worker_dispatch_job", spec.clone());
                assert_eq!(job["status"], "finished", "{job}");
                started.elapsed()
            })
            .collect();
        Row {
            name: name.into(),
            samples,
        }
    }
}

fn floor(jobs: usize) -> Row {
    let samples = (0..jobs)
        .map(|_| {
            let started = Instant::now();
            let status = Command::new("/bin/true").status().unwrap();
            assert!(status.success());
            started.elapsed()
        })
        .collect();
    Row {
        name: "floor: Command::new(/bin/true)".into(),
        samples,
    }
}

/// A real sshd on 127.0.0.1 with generated keys; the client key may only run the worker.
struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    child: std::process::Child,
}

impl Sshd {
    fn start() -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        for key in ["host", "client"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path.join(key))
                .status()
                .unwrap();
            assert!(status.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client_pub = std::fs::read_to_string(path.join("client.pub")).unwrap();
        std::fs::write(
            path.join("authorized_keys"),
            format!(
                "command=\"{BIN} serve --set session.base_dir={}/sessions\",restrict {client_pub}",
                path.display()
            ),
        )
        .unwrap();
        let host_pub = std::fs::read_to_string(path.join("host.pub")).unwrap();
        std::fs::write(
            path.join("known_hosts"),
            format!("[127.0.0.1]:{port} {host_pub}"),
        )
        .unwrap();
        // StrictModes off only because the temp dir is not root-owned the way ~/.ssh is.
        std::fs::write(
            path.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host\nAuthorizedKeysFile {dir}/authorized_keys\nPidFile {dir}/sshd.pid\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\nStrictModes no\nLogLevel ERROR\n",
                dir = path.display()
            ),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(path.join("sshd_config"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Sshd { dir, port, child }
    }

    fn entry(&self) -> Value {
        self.named_entry("ssh-loopback")
    }

    fn named_entry(&self, name: &str) -> Value {
        let path = self.dir.path();
        json!({"kind": "ssh", "name": name, "host": "127.0.0.1", "port": self.port,
               "user": "root", "identity_file": path.join("client"),
               "known_hosts": path.join("known_hosts"), "max_concurrent": 4})
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stand-in for `ssh` that runs the remote worker over plain pipes.
fn pipe_host(dir: &Path) -> Value {
    let script = dir.join("pipe-ssh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec {BIN} serve --set session.base_dir={}/pipe-sessions\n",
            dir.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    json!({"kind": "ssh", "name": "pipe", "host": "pipe", "program": script, "max_concurrent": 4})
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            found.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    found
}

/// Proportional set size: shared pages split among the processes sharing them, so the sum over
/// many ssh clients is what they really cost.
fn pss_kib(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// N remotes (all on the one loopback sshd): time until all are up, and what they cost here.
fn scale(sshd: &Sshd, scratch: &Path, hosts: usize) {
    let entries: Vec<Value> = (0..hosts)
        .map(|i| sshd.named_entry(&format!("h{i}")))
        .collect();
    let started = Instant::now();
    let mut fleet = Client::start(&[
        format!("session.base_dir={}", scratch.display()),
        format!("workers={}", Value::Array(entries)),
    ]);
    fleet.wait_up();
    let up = started.elapsed();
    let pid = fleet.child.id();
    let ssh: Vec<u32> = children(pid)
        .into_iter()
        .filter(|pid| comm(*pid) == "ssh")
        .collect();
    let ssh_pss: u64 = ssh.iter().filter_map(|pid| pss_kib(*pid)).sum();
    let probe = Instant::now();
    let metrics = fleet.result("worker_get_metrics", json!({}));
    let metrics_ms = probe.elapsed().as_secs_f64() * 1e3;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    println!(
        "  {hosts:>3} hosts: all up after {:.0} ms; sidecar RSS {} KiB, {fds} fds; {} ssh clients, PSS {} KiB in all ({} KiB each); worker_get_metrics (asks every remote) {metrics_ms:.1} ms",
        up.as_secs_f64() * 1e3,
        rss_kib(pid).unwrap_or(0),
        ssh.len(),
        ssh_pss,
        ssh_pss / ssh.len().max(1) as u64,
    );
    assert_eq!(
        metrics["fleet"]["workers"].as_array().map(Vec::len),
        Some(hosts)
    );
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn main() {
    // `cargo test --benches` runs bench targets with --bench absent: keep that quick.
    let benching = std::env::args().any(|arg| arg == "--bench");
    let jobs: usize = std::env::var("BENCH_JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if benching { 300 } else { 20 });
    if !Path::new(SSHD).exists() {
        eprintln!("remote bench: {SSHD} not found (apt-get install openssh-server); skipped");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let sshd = Sshd::start();
    let mut rows = vec![floor(jobs)];

    let mut local = Client::start(&[format!("session.base_dir={}", scratch.path().display())]);
    rows.push(local.jobs("local worker", jobs));
    drop(local);

    let mut piped = Client::start(&[
        format!("session.base_dir={}", scratch.path().display()),
        format!("workers=[{}]", pipe_host(scratch.path())),
    ]);
    piped.wait_up();
    rows.push(piped.jobs("fleet -> remote worker over a pipe", jobs));
    drop(piped);

    let mut over_ssh = Client::start(&[
        format!("session.base_dir={}", scratch.path().display()),
        format!("workers=[{}]", sshd.entry()),
    ]);
    let connect_started = Instant::now();
    let metrics = over_ssh.wait_up();
    let connect = connect_started.elapsed();
    rows.push(over_ssh.jobs("fleet -> remote worker over ssh (loopback)", jobs));
    let metrics_after = over_ssh.result("worker_get_metrics", json!({}));

    let floor_p50 = percentile(&sorted(&rows[0].samples), 0.5);
    println!("\nper-job latency, {jobs} jobs each (/bin/true, wait_ms), milliseconds");
    println!(
        "{:<44} {:>8} {:>8} {:>8} {:>9}",
        "", "p50", "p90", "p99", "x floor"
    );
    for row in &rows {
        let s = sorted(&row.samples);
        let p50 = percentile(&s, 0.5);
        println!(
            "{:<44} {:>8.3} {:>8.3} {:>8.3} {:>8.2}x",
            row.name,
            p50,
            percentile(&s, 0.9),
            percentile(&s, 0.99),
            p50 / floor_p50
        );
    }
    let local_p50 = percentile(&sorted(&rows[1].samples), 0.5);
    let ssh_p50 = percentile(&sorted(&rows[3].samples), 0.5);
    let pipe_p50 = percentile(&sorted(&rows[2].samples), 0.5);
    println!(
        "hop cost at p50: routing over a pipe +{:.3} ms, ssh on loopback +{:.3} ms over local",
        pipe_p50 - local_p50,
        ssh_p50 - local_p50
    );

    let worker = &metrics_after["fleet"]["workers"][0];
    let sidecar_pid = over_ssh.child.id();
    let ssh_rss: u64 = children(sidecar_pid)
        .into_iter()
        .filter(|pid| comm(*pid) == "ssh")
        .filter_map(rss_kib)
        .sum();
    let sshd_session_rss: u64 = children(sshd.child.id())
        .into_iter()
        .flat_map(|pid| std::iter::once(pid).chain(children(pid)))
        .filter(|pid| comm(*pid).starts_with("sshd"))
        .filter_map(rss_kib)
        .sum();
    println!("\nper-host cost (one ssh worker)");
    println!(
        "  connect (until the fleet shows it up): {:.1} ms; ssh start to initialize answer {:.3} ms",
        connect.as_secs_f64() * 1e3,
        metrics["fleet"]["workers"][0]["handshake_ms"]
            .as_f64()
            .unwrap_or(0.0)
    );
    println!(
        "  local ssh client RSS {ssh_rss} KiB; remote sshd session RSS {sshd_session_rss} KiB; remote worker RSS {} KiB (idle, after {} jobs)",
        worker["remote"]["process"]["rss_bytes"]
            .as_u64()
            .unwrap_or(0)
            / 1024,
        jobs + jobs / 10 + 1
    );
    println!(
        "  metrics round trip over the hop {:.3} ms",
        worker["remote"]["rtt_ms"].as_f64().unwrap_or(0.0)
    );
    drop(over_ssh);

    println!("\nmany hosts (BENCH_HOSTS, each its own ssh connection to the loopback sshd)");
    let most: usize = std::env::var("BENCH_HOSTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if benching { 16 } else { 4 });
    let mut hosts = 1;
    while hosts <= most {
        scale(&sshd, scratch.path(), hosts);
        hosts *= 4;
    }
}

fn sorted(samples: &[Duration]) -> Vec<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted
}
