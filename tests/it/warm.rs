//! Warm sandboxes (`isolation.warm_slots`): nothing of one job reaches the next, the pool's
//! figures add up, and it dies with its worker. Also the switch the escape and kill tests use
//! to run every scenario against cold and warm starts alike (`cold_and_warm!`).

use crate::common;
use common::*;
use opencode_worker::protocol::table::{self, Method};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// How a test's worker starts sandboxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slots {
    /// `isolation.warm_slots=0`: every sandbox built in its job's start.
    Cold,
    /// Prepared sandboxes kept ready.
    Warm,
}

impl Slots {
    pub fn setting(self) -> &'static str {
        match self {
            Slots::Cold => "isolation.warm_slots=0",
            Slots::Warm => "isolation.warm_slots=2",
        }
    }

    /// `settings` plus this one.
    pub fn with<'a>(self, settings: &[&'a str]) -> Vec<&'a str> {
        let mut all = settings.to_vec();
        all.push(self.setting());
        all
    }

    /// `Worker::start_walls` under this setting, ready for its first job.
    pub fn start_walls(self, settings: &[&str], env: &[(&str, &str)]) -> Worker {
        let mut worker = Worker::start_walls(&self.with(settings), env);
        self.await_ready(&mut worker);
        worker
    }

    /// `Worker::start_with` under this setting, ready for its first job.
    pub fn start_with(self, settings: &[&str]) -> Worker {
        let mut worker = Worker::start_with(&self.with(settings));
        self.await_ready(&mut worker);
        worker
    }

    /// Cold: the worker keeps no sandbox ready. Warm: waits until one is ready, so the test's
    /// first job starts in it rather than in one made on demand; a host without the layers a
    /// prepared sandbox needs keeps none, and says so.
    pub fn await_ready(self, worker: &mut Worker) {
        match self {
            Slots::Cold => {
                let pool = pool(worker);
                assert_eq!(configured(&pool), 0, "{pool}");
                assert_eq!(pool["ready"].as_u64().unwrap_or(0), 0, "{pool}");
            }
            Slots::Warm => {
                if configured(&pool(worker)) == 0 {
                    let probe = worker.dispatch(json!({"command": "true", "wait_ms": 30000}));
                    assert!(
                        !has_warm_layers(&probe),
                        "warm slots asked for on a host with every layer they need, and none kept: {probe}"
                    );
                    eprintln!("no warm sandboxes on this host: the warm run starts cold");
                    return;
                }
                let mut last = Value::Null;
                let ready = poll_until("a warm sandbox is ready", || {
                    last = pool(worker);
                    (count(&last, "ready") > 0).then_some(())
                });
                assert!(ready.is_some(), "no warm sandbox became ready: {last}");
            }
        }
    }
}

/// Generates `cold_start::NAME` and `warm_start::NAME` for each scenario `fn NAME(Slots)` of
/// the calling module, so one body runs against both kinds of start.
macro_rules! cold_and_warm {
    ($($name:ident),+ $(,)?) => {
        mod cold_start {
            $( #[test] fn $name() { super::$name($crate::warm::Slots::Cold) } )+
        }
        mod warm_start {
            $( #[test] fn $name() { super::$name($crate::warm::Slots::Warm) } )+
        }
    };
}
pub(crate) use cold_and_warm;

/// `worker_get_metrics.warm_sandboxes`.
pub fn pool(worker: &mut Worker) -> Value {
    let metrics = worker.call(table::GetMetrics::NAME, json!({}));
    metrics["warm_sandboxes"].clone()
}

/// Ready slots kept per kind; 0 when the worker keeps no pool at all.
fn configured(pool: &Value) -> u64 {
    pool["configured"].as_u64().unwrap_or(0)
}

fn count(pool: &Value, key: &str) -> u64 {
    pool[key]
        .as_u64()
        .unwrap_or_else(|| panic!("warm_sandboxes.{key} missing: {pool}"))
}

/// The layers a prepared sandbox is made of, as the job's own report names them: only a job
/// that ran under all of them can have started warm.
fn has_warm_layers(job: &Value) -> bool {
    mechanism(job, "filesystem").contains("Landlock")
        && mechanism(job, "privileges").contains("user namespace")
        && mechanism(job, "process_tree").contains("PID namespace")
        && mechanism(job, "mounts").contains("mount namespace")
}

/// How the job's report says layer `name` was applied ("" when it was not).
fn mechanism(job: &Value, name: &str) -> String {
    job["isolation"]
        .as_array()
        .and_then(|layers| layers.iter().find(|l| l["name"] == name))
        .and_then(|l| l["mechanism"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// A sandboxed job (a profile other than `none`, which has warm slots of its own kind) says
/// how its sandbox started, and that agrees with the worker's setting: a worker with warm
/// slots starts every job that can be warm in a prepared sandbox (or one made for it), and a
/// worker without starts every job cold.
pub fn assert_start_agrees(worker: &mut Worker, job: &Value) {
    let start = job["metrics"]["sandbox_start"].as_str();
    if configured(&pool(worker)) > 0 && has_warm_layers(job) {
        assert!(
            matches!(start, Some("warm" | "on_demand")),
            "a job that could start warm started {start:?}: {job}"
        );
    } else {
        assert_eq!(start, Some("cold"), "{job}");
    }
}

/// Descendants of `pid` with their start times (a pid alone may be reused).
fn descendants(pid: u32) -> Vec<(u32, u64)> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some((ppid, start)) = stat(child) {
            parents.push((child, ppid, start));
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for (child, ppid, start) in &parents {
            if *ppid == parent {
                found.push((*child, *start));
                frontier.push(*child);
            }
        }
    }
    found
}

/// (ppid, start time) from /proc/PID/stat.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    Some((fields.get(1)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

// ---------------------------------------------------------------------------------------------
// The trace test: job A leaves a trace of every kind, job B (the next warm start) finds none.

/// Fixed inside the job's own network namespace: nothing else listens there.
const TRACE_PORT: u16 = 47813;
/// SysV IPC key of A's objects.
const TRACE_KEY: u32 = 0x4f43_5754;

/// Job A: lays every trace it can and says which (`laid KIND` / `missed KIND: why`), then
/// runs into its pids limit so its cgroup counts an event. `$T` is the trace token.
const LAY: &str = r#"
T="$TRACE_TOKEN"
laid() { echo "laid $1"; }
missed() { echo "missed $1: $2"; }
for d in "$PWD" /tmp /dev/shm "$HOME"; do
  if echo left-by-a > "$d/trace-$T" 2>/dev/null; then laid "file $d"; else missed "file $d" "write refused"; fi
done
setsid nohup python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[2]))); s.listen()
u = socket.socket(socket.AF_UNIX); u.bind("\0ocw-trace-" + sys.argv[1]); u.listen()
time.sleep(1000)
' "$T" "$TRACE_PORT" >/dev/null 2>&1 &
setsid nohup bash -c 'exec -a "ocw-trace-$0-sleeper" sleep 1000' "$T" >/dev/null 2>&1 &
port_hex=$(printf '%04X' "$TRACE_PORT")
for i in $(seq 100); do
  grep -q ":$port_hex 00000000:0000 0A" /proc/net/tcp && grep -q "@ocw-trace-$T" /proc/net/unix && break
  sleep 0.05
done
if grep -q ":$port_hex 00000000:0000 0A" /proc/net/tcp; then laid "socket tcp"; else missed "socket tcp" "not listening"; fi
if grep -q "@ocw-trace-$T" /proc/net/unix; then laid "socket unix"; else missed "socket unix" "not bound"; fi
# The bracket keeps grep's own command line from matching.
if grep -qa "ocw-trace-$T-sleepe[r]" /proc/[0-9]*/cmdline 2>/dev/null; then laid "process"; else missed "process" "not running"; fi
python3 - <<'EOF'
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
key = int(os.environ["TRACE_KEY"])
for kind, made in [("ipc shm", lambda: libc.shmget(key, 4096, 0o1600)),
                   ("ipc msg", lambda: libc.msgget(key, 0o1600)),
                   ("ipc sem", lambda: libc.semget(key, 1, 0o1600))]:
    r = made()
    print(f"laid {kind}" if r >= 0 else f"missed {kind}: {os.strerror(ctypes.get_errno())}")
libc.mq_open.restype = ctypes.c_int
r = libc.mq_open(b"/ocw-trace", os.O_CREAT | os.O_RDWR, 0o600, None)
print("laid ipc mq" if r >= 0 else f"missed ipc mq: {os.strerror(ctypes.get_errno())}")
EOF
try() { kind=$1; shift; if out=$("$@" 2>&1); then laid "$kind"; else missed "$kind" "$out"; fi; }
try "net addr" ip addr add 10.77.0.1/32 dev lo
try "net link" ip link add ocwtrace0 type dummy
try "net route" ip route add 10.78.0.0/24 dev lo
try "net sysctl" sh -c 'echo 33 > /proc/sys/net/ipv4/ip_default_ttl'
if command -v nft >/dev/null; then try "net nft" nft add table inet ocwtrace; else missed "net nft" "no nft here"; fi
try "rlimit of pid 1" prlimit --pid 1 --nofile=64:64
ulimit -n 100 && laid "rlimit own shell"
export OCW_TRACE_LEFT=1 && laid "env"
echo "cgroup-of-a $(tr '\n' ' ' < /proc/self/cgroup)"
python3 -c 'x = b"x" * (96 << 20); import time; t = time.time()
while time.time() - t < 0.2: pass' && laid "cgroup memory and cpu"
for i in $(seq 80); do sleep 5 & done 2>/dev/null
echo "after the pids limit"
"#;

/// Job B, and the same job on a fresh worker: what a job can see of earlier ones, as JSON.
const LOOK: &str = r#"
import ctypes, glob, json, os, resource, socket, subprocess
T = os.environ["TRACE_TOKEN"]
port = int(os.environ["TRACE_PORT"])
key = int(os.environ["TRACE_KEY"])
seen = {}
def listing(d):
    try:
        return sorted(n for n in os.listdir(d) if T in n)
    except OSError as e:
        return [f"unreadable: {e}"]
seen["files"] = {d: listing(d) for d in [os.getcwd(), "/tmp", "/dev/shm", os.environ.get("HOME", "/")]}
procs = []
for p in glob.glob("/proc/[0-9]*/cmdline"):
    try:
        if T.encode() in open(p, "rb").read():
            procs.append(p)
    except OSError:
        pass
seen["processes"] = procs
libc = ctypes.CDLL(None, use_errno=True)
seen["ipc"] = {
    "shm": libc.shmget(key, 0, 0) >= 0,
    "msg": libc.msgget(key, 0) >= 0,
    "sem": libc.semget(key, 0, 0) >= 0,
    "sysvipc": {k: open(f"/proc/sysvipc/{k}").read().splitlines()[1:] for k in ["shm", "msg", "sem"]},
}
libc.mq_open.restype = ctypes.c_int
seen["ipc"]["mq"] = libc.mq_open(b"/ocw-trace", os.O_RDONLY) >= 0
def connects(family, address):
    s = socket.socket(family)
    try:
        s.connect(address)
        return True
    except OSError:
        return False
seen["sockets"] = {
    "tcp_listening": [l.split()[1] for l in open("/proc/net/tcp").read().splitlines()[1:] if l.split()[3] == "0A"],
    "unix_trace": [l for l in open("/proc/net/unix").read().splitlines() if T in l],
    "tcp_connects": connects(socket.AF_INET, ("127.0.0.1", port)),
    "unix_connects": connects(socket.AF_UNIX, "\0ocw-trace-" + T),
}
def run(*argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True).stdout
    except OSError as e:
        return f"unavailable: {e}"
seen["net"] = {
    "addr": run("ip", "-o", "addr"),
    "link": run("ip", "-o", "link"),
    "route": run("ip", "route") + run("ip", "-6", "route"),
    "ttl": open("/proc/sys/net/ipv4/ip_default_ttl").read().strip(),
    "nft": run("nft", "list", "ruleset"),
}
seen["rlimits"] = {n: resource.getrlimit(getattr(resource, n)) for n in dir(resource) if n.startswith("RLIMIT_")}
seen["pid1_rlimits"] = open("/proc/1/limits").read() if os.path.exists("/proc/1/limits") else ""
seen["env"] = sorted(k for k in os.environ)
seen["env_values_with_token"] = sorted(k for k, v in os.environ.items() if T in v and k != "TRACE_TOKEN")
mounts = [l.split(" - ") for l in open("/proc/self/mountinfo").read().splitlines()]
cg = {}
for line in open("/proc/self/cgroup").read().splitlines():
    _, controllers, path = line.split(":", 2)
    for left, right in mounts:
        f, r = left.split(), right.split()
        kind = r[0]
        ok = (kind == "cgroup2" and controllers == "") or (kind == "cgroup" and controllers and set(controllers.split(",")) <= set(r[2].split(",")))
        if not ok:
            continue
        root, point = f[3], f[4]
        rel = path[len(root):] if root != "/" and path.startswith(root) else path
        d = point + rel
        files = {}
        for name in ["memory.max_usage_in_bytes", "memory.peak", "memory.failcnt", "memory.oom_control",
                     "memory.events", "memory.limit_in_bytes", "memory.max", "pids.events", "pids.max",
                     "cpu.stat", "cpu.cfs_quota_us", "cpu.max", "cpuacct.usage"]:
            try:
                files[name] = open(os.path.join(d, name)).read().strip()
            except OSError:
                pass
        cg[controllers or "v2"] = {"path": path, "files": files}
        break
seen["cgroup"] = cg
print(json.dumps(seen))
"#;

fn trace_env(token: &str) -> Value {
    json!({
        "TRACE_TOKEN": token,
        "TRACE_PORT": TRACE_PORT.to_string(),
        "TRACE_KEY": TRACE_KEY.to_string(),
    })
}

fn look(worker: &mut Worker, token: &str) -> (Value, Value) {
    let job = worker.dispatch(json!({
        "argv": ["python3", "-c", LOOK],
        "env": trace_env(token),
        "wait_ms": 60000,
    }));
    assert_eq!(job["status"], "finished", "{job}");
    let seen: Value = serde_json::from_str(job["stdout"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the look job printed no JSON ({e}): {job}"));
    (job, seen)
}

fn counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Waits until the pool has a ready slot, so the next job starts warm.
fn await_warm(worker: &mut Worker) {
    Slots::Warm.await_ready(worker);
}

#[test]
fn nothing_of_a_job_reaches_the_next_warm_start() {
    let settings = ["worker.max_concurrent_sessions=1", "isolation.warm_slots=1"];
    let mut worker = Worker::start_walls(&settings, &[]);
    let token = format!("t{}", worker.marker);

    await_warm(&mut worker);
    let a = worker.dispatch(json!({
        "command": LAY,
        "env": trace_env(&token),
        "limits": {"pids": 32, "memory": "512MiB", "timeout": 60000},
        "wait_ms": 60000,
    }));
    let out = a["stdout"].as_str().unwrap_or_default().to_owned();
    let laid: BTreeSet<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("laid "))
        .collect();
    for missed in out.lines().filter(|l| l.starts_with("missed ")) {
        eprintln!("job A could not lay a trace: {missed}");
    }
    eprintln!("job A laid: {laid:?}");
    for needed in [
        "file /tmp",
        "file /dev/shm",
        "process",
        "socket tcp",
        "socket unix",
    ] {
        assert!(
            laid.contains(needed),
            "job A could not lay `{needed}`, so B proves nothing: {a}"
        );
    }
    assert!(
        laid.iter()
            .any(|l| l.starts_with("file ") && l.contains("/work")),
        "no file in A's work dir: {a}"
    );
    if !has_warm_layers(&a) {
        eprintln!("SKIPPED: this host lacks a layer a prepared sandbox needs: {a}");
        return;
    }
    assert_eq!(a["metrics"]["sandbox_start"], "warm", "{a}");
    // The last trace, the pids.max event, ends A with the limit's own reason.
    if mechanism(&a, "pids").contains("cgroup") {
        assert_eq!(a["status"], "killed", "{a}");
        assert_eq!(a["reason"], "pids_limit", "{a}");
    }
    eventually("A's processes are gone", || {
        worker.leftover_processes().is_empty()
    });
    let a_cgroups = out
        .lines()
        .find_map(|l| l.strip_prefix("cgroup-of-a "))
        .unwrap_or_default()
        .to_owned();

    await_warm(&mut worker);
    let (b, seen) = look(&mut worker, &token);
    assert_eq!(b["metrics"]["sandbox_start"], "warm", "{b}");
    for (dir, names) in seen["files"].as_object().unwrap() {
        assert_eq!(names, &json!([]), "B sees A's file in {dir}: {seen}");
    }
    assert_eq!(seen["processes"], json!([]), "{seen}");
    for kind in ["shm", "msg", "sem", "mq"] {
        assert_eq!(seen["ipc"][kind], false, "B finds A's {kind}: {seen}");
    }
    assert_eq!(seen["sockets"]["unix_trace"], json!([]), "{seen}");
    assert_eq!(seen["sockets"]["tcp_connects"], false, "{seen}");
    assert_eq!(seen["sockets"]["unix_connects"], false, "{seen}");
    assert_eq!(seen["env_values_with_token"], json!([]), "{seen}");
    assert!(
        !seen["env"]
            .as_array()
            .unwrap()
            .contains(&json!("OCW_TRACE_LEFT"))
    );
    let addr = seen["net"]["addr"].as_str().unwrap_or_default();
    assert!(!addr.contains("10.77.0.1"), "{addr}");
    let link = seen["net"]["link"].as_str().unwrap_or_default();
    assert!(!link.contains("ocwtrace0"), "{link}");
    let route = seen["net"]["route"].as_str().unwrap_or_default();
    assert!(!route.contains("10.78.0.0"), "{route}");
    assert!(
        !seen["net"]["nft"]
            .as_str()
            .unwrap_or_default()
            .contains("ocwtrace")
    );

    // B's cgroups are not A's, and count nothing of A: no pids event, no memory peak of A's
    // 96 MiB, no failure count, no OOM kill; B's limits are its own.
    let cgroups = seen["cgroup"].as_object().cloned().unwrap_or_default();
    assert!(
        !cgroups.is_empty(),
        "B could not read its own cgroups: {seen}"
    );
    for (hierarchy, entry) in &cgroups {
        let path = entry["path"].as_str().unwrap_or_default();
        let files = &entry["files"];
        let file = |name: &str| files[name].as_str().unwrap_or_default().to_owned();
        if path.contains("opencode-worker.") {
            assert!(
                !a_cgroups.contains(&format!(":{path} ")),
                "B runs in A's {hierarchy} cgroup {path}: {a_cgroups}"
            );
        }
        assert_eq!(
            counter(&file("pids.events"), "max").unwrap_or(0),
            0,
            "{entry}"
        );
        assert_eq!(
            counter(&file("memory.events"), "oom_kill").unwrap_or(0),
            0,
            "{entry}"
        );
        assert_eq!(
            counter(&file("memory.oom_control"), "oom_kill").unwrap_or(0),
            0,
            "{entry}"
        );
        assert_eq!(
            file("memory.failcnt").parse::<u64>().unwrap_or(0),
            0,
            "{entry}"
        );
        for peak in ["memory.max_usage_in_bytes", "memory.peak"] {
            let bytes = file(peak).parse::<u64>().unwrap_or(0);
            assert!(
                bytes < 64 << 20,
                "{hierarchy} {peak} = {bytes}: A's usage? {entry}"
            );
        }
        if let Ok(max) = file("pids.max").parse::<u64>() {
            assert_ne!(max, 32, "A's pids limit: {entry}");
        }
        if let Ok(limit) = file("memory.limit_in_bytes").parse::<u64>() {
            assert_ne!(limit, 512 << 20, "A's memory limit: {entry}");
        }
    }

    // The rest against a job on a fresh worker: the same view of the network, the limits of
    // its processes and the names of its environment.
    let mut fresh = Worker::start_walls(&settings, &[]);
    await_warm(&mut fresh);
    let (_, clean) = look(&mut fresh, &token);
    for key in ["addr", "link", "route", "ttl", "nft"] {
        assert_eq!(seen["net"][key], clean["net"][key], "net {key}");
    }
    assert_eq!(
        seen["sockets"]["tcp_listening"],
        clean["sockets"]["tcp_listening"]
    );
    assert_eq!(seen["ipc"]["sysvipc"], clean["ipc"]["sysvipc"]);
    assert_eq!(seen["rlimits"], clean["rlimits"]);
    assert_eq!(seen["pid1_rlimits"], clean["pid1_rlimits"]);
    assert_eq!(seen["env"], clean["env"]);
}

// ---------------------------------------------------------------------------------------------
// The pool's figures.

/// Whether the worker keeps a pool; on a host without the layers it needs (checked by
/// `await_ready`) the test has nothing to check.
fn keeps_a_pool(worker: &mut Worker) -> bool {
    Slots::Warm.await_ready(worker);
    let kept = configured(&pool(worker)) > 0;
    if !kept {
        eprintln!("SKIPPED: no warm sandboxes on this host");
    }
    kept
}

/// Polls until `ready` reaches `configured`.
fn await_full(worker: &mut Worker) -> Value {
    let mut last = Value::Null;
    poll_until("the pool is full", || {
        last = pool(worker);
        let configured = count(&last, "configured");
        (configured > 0 && count(&last, "ready") >= configured).then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("the pool never filled: {last}"))
}

#[test]
fn the_pool_fills_stays_bounded_and_its_counts_add_up() {
    let mut worker = Worker::start_walls(
        &["worker.max_concurrent_sessions=8", "isolation.warm_slots=2"],
        &[],
    );
    if !keeps_a_pool(&mut worker) {
        return;
    }
    let full = await_full(&mut worker);
    eprintln!("idle pool: {full}");
    assert_eq!(count(&full, "configured"), 2, "{full}");
    assert!(count(&full, "idle_memory_bytes") > 0, "{full}");
    // Idle, it makes no more than it keeps.
    for _ in 0..10 {
        let idle = pool(&mut worker);
        assert!(
            count(&idle, "ready") <= count(&idle, "configured"),
            "{idle}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let ids: Vec<String> = (0..8)
        .map(|i| {
            let job = worker.dispatch(json!({
                "command": format!("sleep 0.2; echo {i}"),
                "network": if i % 2 == 0 { json!("none") } else { json!("open") },
            }));
            job["job_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let mut starts = Vec::new();
    for id in &ids {
        let job = worker.wait_ended(id);
        assert_eq!(job["status"], "finished", "{job}");
        assert_start_agrees(&mut worker, &job);
        starts.push(job["metrics"]["sandbox_start"].as_str().unwrap().to_owned());
    }
    eprintln!("starts of the burst: {starts:?}");
    let after = pool(&mut worker);
    eprintln!("after the burst: {after}");
    let started = count(&after, "started_warm")
        + count(&after, "started_on_demand")
        + count(&after, "started_cold");
    assert_eq!(started, ids.len() as u64, "{after}");
    let by_kind = |kind: &str| starts.iter().filter(|s| *s == kind).count() as u64;
    assert_eq!(count(&after, "started_warm"), by_kind("warm"), "{after}");
    assert_eq!(count(&after, "started_on_demand"), by_kind("on_demand"));
    assert_eq!(count(&after, "started_cold"), by_kind("cold"));
    // Idle again, it settles back to no more than configured per kind (two kinds ran:
    // network none and open): a worker that runs no jobs holds only a few sandboxes.
    let mut last = Value::Null;
    let settled = poll_until("the idle pool shrinks back to configured per kind", || {
        last = pool(&mut worker);
        (count(&last, "preparing") == 0 && count(&last, "ready") <= 2 * count(&last, "configured"))
            .then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("an idle worker keeps more than configured per kind: {last}"));
    if count(&settled, "ready") > 0 {
        assert!(count(&settled, "idle_memory_bytes") > 0, "{settled}");
    }
}

#[test]
fn a_sigkilled_worker_takes_its_ready_sandboxes_along() {
    let mut worker = Worker::start_walls(&["isolation.warm_slots=2"], &[]);
    if !keeps_a_pool(&mut worker) {
        return;
    }
    await_full(&mut worker);
    let job = worker.dispatch(json!({"command": "echo one", "wait_ms": 30000}));
    assert_eq!(job["status"], "finished", "{job}");
    let full = await_full(&mut worker);
    let pid = worker.child.id();
    let before = descendants(pid);
    eprintln!("{} processes under the worker with {full}", before.len());
    assert!(!before.is_empty(), "the ready sandboxes have no process?");
    worker.child.kill().unwrap();
    worker.child.wait().unwrap();
    let mut left = before.clone();
    eventually("every process of the worker is gone", || {
        left.retain(|(pid, start)| stat(*pid).is_some_and(|(_, s)| s == *start));
        left.is_empty()
    });
}
