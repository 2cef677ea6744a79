//! Real remote hosts for the ssh worker tests: each `SshHost` is a real OpenSSH `sshd` (the
//! system's /usr/sbin/sshd) whose only authorized key is forced to run `opencode-worker serve`,
//! reachable either on 127.0.0.1 (`loopback`) or on its own address in its own network namespace
//! (`netns_hosts`), so a test can kill a host, bring it back, or cut its network for real.
//!
//! Needs root (sshd binds, logs in as root, and namespaces are made), openssh-server,
//! openssh-client and iproute2; without them the constructors panic saying what is missing.
//! Dropping a host (also on a panic's unwind) kills every process of it, deletes its namespace
//! and veth, and removes its tempdir.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::io::BufRead;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const SSHD: &str = "/usr/sbin/sshd";
/// The worker the forced command runs: the binary under test, by absolute path.
pub const WORKER_BIN: &str = env!("CARGO_BIN_EXE_opencode-worker");
/// Only there so a broken host fails instead of hanging the test run.
const PATIENCE: Duration = Duration::from_secs(30);
/// Namespaces and veths of this fixture are named after it, with the owning test process's pid,
/// so leftovers of a test process that was SIGKILLed can be recognised and swept.
const NETNS_PREFIX: &str = "ocw-ssh-";
/// Serialises address allocation (and the sweep) between concurrently running test processes.
const NETNS_LOCK: &str = "/run/opencode-worker-test-netns.lock";
/// 198.18.0.0/15 (RFC 2544, reserved for network tests): never a real LAN or VPN, so a test
/// address cannot shadow a route the machine uses. 32768 /30 blocks.
const NET_BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
const NET_BLOCKS: u32 = 1 << 15;

/// Host tempdirs are named `<prefix><pid of the test process>-<host name>-<random>`.
const TEMPDIR_PREFIX: &str = "ocw-sshd-";

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct SshHost {
    pub name: String,
    /// The IP address a client connects to.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity_file: PathBuf,
    pub known_hosts: PathBuf,
    /// Canonical path of the tempdir (every file of this host lives in it).
    root: PathBuf,
    config: PathBuf,
    log: PathBuf,
    sshd: Option<Child>,
    // Dropped after `Drop::drop` has killed every process, in this order: the namespace (and
    // veth) first, the tempdir last.
    netns: Option<Netns>,
    dir: tempfile::TempDir,
}

struct Netns {
    name: String,
    /// The veth end in the root namespace, next to the test and the sidecar.
    outer: String,
    /// The veth end inside the namespace, the one `cut_network` takes down.
    inner: String,
}

impl SshHost {
    /// sshd on 127.0.0.1, a free port; host key and client key generated with ssh-keygen
    /// (ed25519) into a tempdir.
    pub fn loopback(name: &str) -> SshHost {
        SshHost::loopback_with(name, &[])
    }

    /// `worker_args` go after `serve` in the forced command, e.g.
    /// `["--set", "worker.max_concurrent_sessions=2"]`.
    pub fn loopback_with(name: &str, worker_args: &[&str]) -> SshHost {
        require(false);
        let mut host = SshHost::prepare(name, "127.0.0.1", 0, worker_args, None);
        // The port is found free, released, then taken by sshd: another process may take it
        // in between; sshd then fails to bind and exits, and another port is tried.
        let mut failures = Vec::new();
        for _ in 0..10 {
            host.port = free_loopback_port();
            host.write_config_and_known_hosts();
            match host.start_sshd() {
                Ok(()) => return host,
                Err(error) => failures.push(error),
            }
        }
        panic!(
            "sshd for {name} never came up on 127.0.0.1: {}",
            failures.join("\n---\n")
        );
    }

    fn prepare(
        name: &str,
        address: &str,
        port: u16,
        worker_args: &[&str],
        netns: Option<Netns>,
    ) -> SshHost {
        sweep_stale_hosts();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{TEMPDIR_PREFIX}{}-{name}-", std::process::id()))
            .tempdir()
            .expect("tempdir for an sshd host");
        let root = std::fs::canonicalize(dir.path()).expect("canonical tempdir");
        let host_key = root.join("ssh_host_ed25519_key");
        let identity_file = root.join("id_ed25519");
        keygen(&host_key, &format!("host {name}"));
        keygen(&identity_file, &format!("client of {name}"));
        let sessions = root.join("sessions");
        std::fs::create_dir(&sessions).expect("sessions dir");

        // `restrict` takes away forwarding, agent, X11, pty and ~/.ssh/rc; `command=` makes
        // the key run the worker whatever the client asks for. sshd hands the command to the
        // user's shell, so each word is shell-quoted; `"` would end the option, so escape it.
        let mut words = vec![
            WORKER_BIN.to_string(),
            "serve".into(),
            "--set".into(),
            format!("session.base_dir={}", sessions.display()),
        ];
        words.extend(worker_args.iter().map(|arg| arg.to_string()));
        let command = words
            .iter()
            .map(|word| shell_quote(word))
            .collect::<Vec<_>>()
            .join(" ")
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        let client_key = read_public_key(&identity_file);
        std::fs::write(
            root.join("authorized_keys"),
            format!("command=\"{command}\",restrict {client_key}\n"),
        )
        .expect("authorized_keys");

        SshHost {
            name: name.to_string(),
            host: address.to_string(),
            port,
            user: "root".into(),
            identity_file,
            known_hosts: root.join("known_hosts"),
            config: root.join("sshd_config"),
            log: root.join("sshd.log"),
            root,
            sshd: None,
            netns,
            dir,
        }
    }

    fn write_config_and_known_hosts(&self) {
        let root = &self.root;
        let host = &self.host;
        let port = self.port;
        let mut config = format!(
            "# What a worker host runs: keys only, and the key can only run the worker.\n\
             ListenAddress {host}:{port}\n\
             HostKey {root}/ssh_host_ed25519_key\n\
             AuthorizedKeysFile {root}/authorized_keys\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             PermitRootLogin prohibit-password\n\
             AllowUsers {user}\n\
             # Forwarding, agent, X11 and pty are refused per key by `restrict` (which the\n\
             # tests prove); a production host may also say `DisableForwarding yes`.\n\
             PermitUserEnvironment no\n\
             PermitUserRC no\n\
             # A worker whose client vanished without a FIN (network cut) is noticed and\n\
             # ended: its stdin closes and it stops its jobs. OpenSSH 9.2 takes about\n\
             # 2 x (CountMax + 1) x Interval for it (16 s here); a real host may wait longer.\n\
             ClientAliveInterval 2\n\
             ClientAliveCountMax 3\n\
             # StrictModes refuses an authorized_keys file when any directory above it is\n\
             # group- or world-writable; the fixture's tempdir is under /tmp (1777), so it\n\
             # could never pass. A real host keeps StrictModes on.\n\
             StrictModes no\n\
             PidFile {root}/sshd.pid\n\
             # INFO, not ERROR: why a login was refused (bad key, locked account) is logged at\n\
             # INFO, and this log is what a failing test prints.\n\
             LogLevel INFO\n",
            root = root.display(),
            user = self.user,
        );
        // OpenSSH 9.8+ penalises a source address after failed logins or crashed sessions,
        // which the refusal and kill tests cause on purpose from 127.0.0.1; older sshd (Debian
        // 12 has 9.2) rejects the option, so it is added only where it is understood.
        if supports_option(&config, "PerSourcePenalties no", root) {
            config.push_str("PerSourcePenalties no\n");
        }
        std::fs::write(&self.config, config).expect("sshd_config");

        let host_key = read_public_key(&root.join("ssh_host_ed25519_key.pub"));
        std::fs::write(
            &self.known_hosts,
            format!("{} {host_key}\n", known_hosts_name(host, port)),
        )
        .expect("known_hosts");
    }

    /// Starts sshd and waits until it answers with its banner; on failure the host has no
    /// sshd and the error carries the log.
    fn start_sshd(&mut self) -> Result<(), String> {
        // The privilege separation dir sshd insists on (the package's unit makes it at boot).
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("sshd log");
        let mut command = match &self.netns {
            // `ip netns exec` execs sshd itself (no fork), so the child is the listener.
            Some(netns) => {
                let mut command = Command::new(ip());
                command.args(["netns", "exec", &netns.name, SSHD]);
                command
            }
            // sshd re-executes itself per connection and insists on an absolute path.
            None => Command::new(SSHD),
        };
        command
            .args(["-D", "-e", "-f"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        let child = command.spawn().map_err(|e| format!("spawn {SSHD}: {e}"))?;
        self.sshd = Some(child);
        match self.wait_ready() {
            Ok(()) => Ok(()),
            Err(error) => {
                self.kill();
                Err(format!("{error}\nsshd log:\n{}", self.log_text()))
            }
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.sshd.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("sshd exited before accepting: {status}"));
            }
            if self.answers() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{}:{} did not answer as sshd within {PATIENCE:?}",
                    self.host, self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether an ssh server banner comes from the host's address and port (not just a
    /// connect: something else may have taken the port).
    fn answers(&self) -> bool {
        let addr: SocketAddr = format!("{}:{}", self.host, self.port)
            .parse()
            .expect("address");
        let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        // The whole banner line: closing with unread bytes would send a RST, and sshd would
        // log a "Connection reset" that looks like trouble in a failing test's log.
        let mut banner = String::new();
        let _ = std::io::BufReader::new(stream).read_line(&mut banner);
        banner.starts_with("SSH-2.0-")
    }

    /// The JSON object for the sidecar's config `workers` list.
    pub fn worker_entry(&self) -> Value {
        json!({
            "kind": "ssh",
            "name": self.name,
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "identity_file": self.identity_file,
            "known_hosts": self.known_hosts,
        })
    }

    /// The ssh client command line the sidecar runs: `ssh -T -o BatchMode=yes
    /// -o StrictHostKeyChecking=yes -o UserKnownHostsFile=.. -i .. -p .. <extra_options>
    /// user@host <remote_command>`.
    pub fn ssh_command(&self, extra_options: &[&str], remote_command: &[&str]) -> Command {
        self.ssh_command_with(
            &self.identity_file,
            &self.known_hosts,
            extra_options,
            remote_command,
        )
    }

    /// `ssh_command` with another identity or known_hosts file (to be refused).
    pub fn ssh_command_with(
        &self,
        identity_file: &Path,
        known_hosts: &Path,
        extra_options: &[&str],
        remote_command: &[&str],
    ) -> Command {
        let mut command = Command::new("ssh");
        command
            .args([
                "-T",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
            ])
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .arg("-i")
            .arg(identity_file)
            .arg("-p")
            .arg(self.port.to_string())
            .args(extra_options)
            .arg(format!("{}@{}", self.user, self.host))
            .args(remote_command);
        command
    }

    /// Where the remote worker makes its session base (`session.base_dir`); no other host
    /// shares it.
    pub fn sessions_dir(&self) -> PathBuf {
        self.root.join("sessions")
    }

    /// sshd's log (`-e`), for assertions and failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_netns(&self) -> bool {
        self.netns.is_some()
    }

    /// Simulates host death: SIGKILLs the sshd listener, every per-connection sshd and
    /// everything under them (the remote worker and its jobs). A client connected to it sees
    /// EOF. The processes are stopped first, until no new one appears, then killed: nothing
    /// can fork away in between.
    pub fn kill(&mut self) {
        let survivors = self.kill_all();
        assert!(
            survivors.is_empty(),
            "processes of {} survived SIGKILL: {survivors:?}",
            self.name
        );
    }

    /// `kill` without the assertion (Drop must not panic while unwinding): the survivors.
    fn kill_all(&mut self) -> Vec<u32> {
        let survivors = stop_then_kill(|| self.processes());
        if let Some(mut child) = self.sshd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        survivors
    }

    /// Starts sshd again on the same address, port and keys (a host coming back); kills the
    /// running one first if there is one.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(error) = self.start_sshd() {
            panic!(
                "{} did not come back on {}:{}: {error}",
                self.name, self.host, self.port
            );
        }
    }

    /// Netns hosts only: takes the host's link down so packets are dropped (no EOF, no RST),
    /// like a network cut. The end inside the namespace goes down: taking the outer end down
    /// would remove the route, and the kernel would then send the packets out the default
    /// route instead of dropping them.
    pub fn cut_network(&self) {
        let netns = self.netns.as_ref().expect("cut_network needs a netns host");
        run(
            ip(),
            &["-n", &netns.name, "link", "set", &netns.inner, "down"],
        );
    }

    /// Brings the link back up and returns once sshd answers over it again. The neighbour
    /// (ARP) entries that failed during the cut are flushed on both sides: until they are
    /// probed again (up to a second here), a new connection may fail at once with "No route
    /// to host".
    pub fn restore_network(&self) {
        let netns = self
            .netns
            .as_ref()
            .expect("restore_network needs a netns host");
        run(
            ip(),
            &["-n", &netns.name, "link", "set", &netns.inner, "up"],
        );
        let _ = quiet(ip(), &["neigh", "flush", "dev", &netns.outer]);
        let _ = quiet(
            ip(),
            &["-n", &netns.name, "neigh", "flush", "dev", &netns.inner],
        );
        let deadline = Instant::now() + PATIENCE;
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "{} did not answer within {PATIENCE:?} after restore_network",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Live processes of this host: the listener, every process with the sshd log as stderr
    /// (per-connection sshds, even orphaned), any process whose cwd is in the host's tempdir
    /// (session dirs), every process of its namespace, and all their descendants.
    pub fn processes(&self) -> Vec<u32> {
        let table = proc_table();
        let mut roots: Vec<u32> = Vec::new();
        if let Some(child) = &self.sshd {
            roots.push(child.id());
        }
        for &pid in table.keys() {
            let stderr = std::fs::read_link(format!("/proc/{pid}/fd/2"));
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"));
            if stderr.is_ok_and(|path| path == self.log)
                || cwd.is_ok_and(|path| path.starts_with(&self.root))
            {
                roots.push(pid);
            }
        }
        if let Some(netns) = &self.netns {
            roots.extend(netns_pids(&netns.name));
        }
        with_descendants(&table, roots)
    }

    /// The remote worker processes (the binary under test) this host runs now.
    /// Worker processes, not the sandbox's relay and init (forks of the worker that name
    /// themselves `ocw-*`).
    pub fn worker_processes(&self) -> Vec<u32> {
        let bin = Path::new(WORKER_BIN);
        self.processes()
            .into_iter()
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == bin)
                    && !std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|comm| comm.starts_with("ocw-"))
            })
            .collect()
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- sshd log of {} ({}:{}) ---\n{}--- end of sshd log ---",
                self.name,
                self.host,
                self.port,
                self.log_text()
            );
        }
        let survivors = self.kill_all();
        if !survivors.is_empty() {
            eprintln!("processes of {} survived SIGKILL: {survivors:?}", self.name);
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for pid in netns_pids(&self.name) {
            signal(pid, libc::SIGKILL);
        }
        // Deleting one end of a veth deletes both; then the namespace.
        let _ = quiet(ip(), &["link", "del", &self.outer]);
        let _ = quiet(ip(), &["netns", "del", &self.name]);
    }
}

/// `n` hosts, each in its own network namespace with its own /30 from 198.18.0.0/15 on a veth
/// pair, sshd on port 22 of the namespace's address. The client side (the test, the sidecar)
/// stays in the root namespace and reaches each host over its veth.
pub fn netns_hosts(prefix: &str, n: usize, worker_args: &[&str]) -> Vec<SshHost> {
    require(true);
    (0..n)
        .map(|i| netns_host(&format!("{prefix}{i}"), worker_args))
        .collect()
}

fn netns_host(name: &str, worker_args: &[&str]) -> SshHost {
    let pid = std::process::id();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let (netns, address) = {
        let _lock = NetLock::acquire();
        sweep_stale_namespaces();
        let block = free_block(pid, n);
        let outer_addr = NET_BASE + block * 4 + 1;
        let inner_addr = outer_addr + 1;
        let netns = Netns {
            name: format!("{NETNS_PREFIX}{pid}-{n}"),
            // At most 15 bytes: "ow" + pid (<= 6 hex digits) + "-" + counter in hex.
            outer: outer_name(pid, n),
            inner: "ocw0".into(),
        };
        // From here on, a panic drops `netns`, which removes what was made of it.
        run(ip(), &["netns", "add", &netns.name]);
        run(
            ip(),
            &[
                "link",
                "add",
                &netns.outer,
                "type",
                "veth",
                "peer",
                "name",
                &netns.inner,
                "netns",
                &netns.name,
            ],
        );
        let outer_cidr = format!("{}/30", ipv4(outer_addr));
        let inner_cidr = format!("{}/30", ipv4(inner_addr));
        run(ip(), &["addr", "add", &outer_cidr, "dev", &netns.outer]);
        run(ip(), &["link", "set", &netns.outer, "up"]);
        run(
            ip(),
            &[
                "-n",
                &netns.name,
                "addr",
                "add",
                &inner_cidr,
                "dev",
                &netns.inner,
            ],
        );
        run(
            ip(),
            &["-n", &netns.name, "link", "set", &netns.inner, "up"],
        );
        run(ip(), &["-n", &netns.name, "link", "set", "lo", "up"]);
        (netns, ipv4(inner_addr))
    };
    // Its own address, so the standard port: known_hosts then names the bare address.
    let mut host = SshHost::prepare(name, &address, 22, worker_args, Some(netns));
    host.write_config_and_known_hosts();
    if let Err(error) = host.start_sshd() {
        panic!("sshd for {name} never came up on {address}:22: {error}");
    }
    host
}

fn outer_name(pid: u32, n: u32) -> String {
    format!("ow{pid:x}-{n:x}")
}

/// A /30 block no address or route of the root namespace overlaps (other test processes'
/// veths included: they are added under the same lock).
fn free_block(pid: u32, n: u32) -> u32 {
    let mut taken: Vec<(u32, u32)> = Vec::new();
    let addrs = output(ip(), &["-4", "-o", "addr", "show"]);
    let routes = output(ip(), &["-4", "route", "show", "table", "all"]);
    let words = addrs
        .split_whitespace()
        .chain(routes.lines().filter_map(|line| {
            let first = line.split_whitespace().next()?;
            // "local 127.0.0.1 ..." and the like: the address is the second word.
            if first.parse::<std::net::Ipv4Addr>().is_ok() || first.contains('/') {
                Some(first)
            } else {
                line.split_whitespace().nth(1)
            }
        }));
    for word in words {
        let (addr, len) = word.split_once('/').unwrap_or((word, "32"));
        if let (Ok(addr), Ok(len)) = (addr.parse::<std::net::Ipv4Addr>(), len.parse::<u32>())
            && len <= 32
        {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            taken.push((u32::from(addr) & mask, mask));
        }
    }
    let start = (pid.wrapping_mul(2_654_435_761) ^ n.wrapping_mul(40_503)) % NET_BLOCKS;
    (0..NET_BLOCKS)
        .map(|i| (start + i) % NET_BLOCKS)
        .find(|block| {
            let net = NET_BASE + block * 4;
            let mask = u32::MAX << 2;
            !taken.iter().any(|&(other, other_mask)| {
                let common = mask & other_mask;
                net & common == other & common
            })
        })
        .expect("a free /30 in 198.18.0.0/15")
}

/// Namespaces (and their veths) of test processes that died without dropping their hosts.
fn sweep_stale_namespaces() {
    for line in output(ip(), &["netns", "list"]).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some((pid, n)) = name
            .strip_prefix(NETNS_PREFIX)
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, n)| Some((pid.parse::<u32>().ok()?, n.parse::<u32>().ok()?)))
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        drop(Netns {
            name: name.to_string(),
            outer: outer_name(pid, n),
            inner: String::new(),
        });
    }
}

/// Hosts of test processes that died without dropping them (SIGKILL): their namespaces and
/// veths are deleted, their processes (found by their tempdir in the command line or as cwd,
/// or in their namespace) killed and their tempdirs removed. Once a process, before its first
/// host.
fn sweep_stale_hosts() {
    static SWEPT: OnceLock<()> = OnceLock::new();
    SWEPT.get_or_init(|| {
        if IP_PATHS.iter().any(|path| Path::new(path).exists()) {
            let _lock = NetLock::acquire();
            sweep_stale_namespaces();
        }
        let tmp = std::fs::canonicalize(std::env::temp_dir()).unwrap_or_else(|_| "/tmp".into());
        let Ok(entries) = std::fs::read_dir(&tmp) else {
            return;
        };
        let stale: Vec<PathBuf> = entries
            .flatten()
            .filter(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name.strip_prefix(TEMPDIR_PREFIX)
                    .and_then(|rest| rest.split_once('-'))
                    .and_then(|(pid, _)| pid.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
            })
            .map(|entry| entry.path())
            .collect();
        if stale.is_empty() {
            return;
        }
        let find = || {
            let table = proc_table();
            let roots = table
                .keys()
                .copied()
                .filter(|pid| {
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                        .unwrap_or_default();
                    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
                    stale.iter().any(|dir| {
                        cmdline.contains(&*dir.to_string_lossy())
                            || cwd.as_ref().is_some_and(|cwd| cwd.starts_with(dir))
                    })
                })
                .collect();
            with_descendants(&table, roots)
        };
        stop_then_kill(find);
        for dir in &stale {
            let _ = std::fs::remove_dir_all(dir);
        }
    });
}

struct NetLock(std::fs::File);

impl NetLock {
    fn acquire() -> NetLock {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(NETNS_LOCK)
            .unwrap_or_else(|e| panic!("open {NETNS_LOCK}: {e}"));
        // Released when the file is closed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {NETNS_LOCK}");
        NetLock(file)
    }
}

/// Panics with what to install when the fixture cannot work here.
fn require(netns: bool) {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the sshd fixture needs root: sshd binds and logs in as root, and namespaces are made"
    );
    assert!(
        Path::new(SSHD).exists(),
        "{SSHD} is missing: apt-get install -y openssh-server"
    );
    for tool in ["ssh", "ssh-keygen"] {
        assert!(
            Command::new(tool)
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok(),
            "{tool} is missing: apt-get install -y openssh-client"
        );
    }
    // Without PAM, sshd refuses a locked account ("!" before the hash) even with a key.
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
    if let Some(line) = shadow.lines().find(|line| line.starts_with("root:")) {
        assert!(
            !line["root:".len()..].starts_with('!'),
            "root's account is locked in /etc/shadow; with UsePAM no, sshd refuses a locked \
             account even with a key (\"User root not allowed because account is locked\"): \
             unlock it without a password with `usermod -p '*' root`"
        );
    }
    if netns {
        assert!(
            IP_PATHS.iter().any(|path| Path::new(path).exists()),
            "ip is missing (looked for {IP_PATHS:?}): apt-get install -y iproute2"
        );
    }
}

fn keygen(path: &Path, comment: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh ed25519 key pair (no passphrase) at `path` and `path.pub`: for keys no host knows.
pub fn generate_key(path: &Path) {
    keygen(path, "a key no host knows");
}

/// "ssh-ed25519 AAAA..." without the comment.
fn read_public_key(path: &Path) -> String {
    let pub_path = if path.extension().is_some_and(|ext| ext == "pub") {
        path.to_owned()
    } else {
        path.with_extension("pub")
    };
    let text = std::fs::read_to_string(&pub_path)
        .unwrap_or_else(|e| panic!("read {}: {e}", pub_path.display()));
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// How known_hosts names a host: bare on port 22, `[host]:port` otherwise.
pub fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

fn supports_option(config: &str, option: &str, dir: &Path) -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let probe = dir.join("sshd_config.probe");
        std::fs::write(&probe, format!("{config}{option}\n")).expect("probe config");
        let ok = Command::new(SSHD)
            .arg("-t")
            .arg("-f")
            .arg(&probe)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        let _ = std::fs::remove_file(&probe);
        ok
    })
}

pub fn free_loopback_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=,:+@%".contains(&b))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

fn ipv4(addr: u32) -> String {
    std::net::Ipv4Addr::from(addr).to_string()
}

struct ProcInfo {
    ppid: u32,
    zombie: bool,
}

fn proc_table() -> HashMap<u32, ProcInfo> {
    let mut table = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return table;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let ppid = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        table.insert(
            pid,
            ProcInfo {
                ppid,
                zombie: state == "Z" || state == "X",
            },
        );
    }
    table
}

/// `roots` and all their descendants, zombies left out (they are dead), never pid 1 or this
/// test process.
fn with_descendants(table: &HashMap<u32, ProcInfo>, mut roots: Vec<u32>) -> Vec<u32> {
    let me = std::process::id();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, info) in table {
        children.entry(info.ppid).or_default().push(pid);
    }
    let mut found = BTreeSet::new();
    while let Some(pid) = roots.pop() {
        if pid <= 1 || pid == me || !found.insert(pid) {
            continue;
        }
        roots.extend(children.get(&pid).into_iter().flatten());
    }
    found
        .into_iter()
        .filter(|pid| table.get(pid).is_some_and(|info| !info.zombie))
        .collect()
}

/// SIGSTOPs what `find` returns, again and again until it finds nothing new (a stopped
/// process cannot fork, and a fork racing the stop fails), then SIGKILLs all of it and waits
/// until it is dead. Returns the processes still alive after the patience.
fn stop_then_kill(mut find: impl FnMut() -> Vec<u32>) -> Vec<u32> {
    let mut stopped = BTreeSet::new();
    loop {
        let found: Vec<u32> = find()
            .into_iter()
            .filter(|pid| !stopped.contains(pid))
            .collect();
        if found.is_empty() {
            break;
        }
        for pid in found {
            signal(pid, libc::SIGSTOP);
            stopped.insert(pid);
        }
    }
    for &pid in &stopped {
        signal(pid, libc::SIGKILL);
    }
    let deadline = Instant::now() + PATIENCE;
    loop {
        let survivors: Vec<u32> = stopped.iter().copied().filter(|&pid| alive(pid)).collect();
        if survivors.is_empty() || Instant::now() > deadline {
            return survivors;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

fn netns_pids(name: &str) -> Vec<u32> {
    quiet(ip(), &["netns", "pids", name])
        .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Where iproute2's `ip` is: /usr/sbin/ip on Debian; the others on unmerged or other layouts.
const IP_PATHS: [&str; 4] = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"];

fn ip() -> &'static str {
    IP_PATHS
        .iter()
        .find(|path| Path::new(path).exists())
        .copied()
        .unwrap_or(IP_PATHS[0])
}

/// Runs a command that must succeed.
fn run(program: &str, args: &[&str]) {
    if let Err(error) = quiet(program, args) {
        panic!("{program} {}: {error}", args.join(" "));
    }
}

fn output(program: &str, args: &[&str]) -> String {
    quiet(program, args).unwrap_or_else(|error| panic!("{program} {}: {error}", args.join(" ")))
}

fn quiet(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
