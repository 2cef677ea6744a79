//! Cgroups: one leaf per job in every hierarchy the worker can write, for limits the kernel
//! enforces on the whole tree, a tree kill nothing escapes (`cgroup.kill`), and tree-wide
//! accounting.
//!
//! Hybrid hosts are common (this one: cgroup v2 with no controllers beside v1 memory, pids and
//! cpu), so each job may get a v2 leaf (kill, cpu.stat) and v1 leaves (limits) at once. Leaves
//! live under `<the worker's own cgroup>/opencode-worker.<pid>` so any limit on the worker
//! itself still bounds its jobs. Creating a cgroup costs more than the rest of the sandbox
//! together (v1 memory mkdir ~0.3 ms), so leaves are pooled and reset between jobs.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

const BASE_PREFIX: &str = "opencode-worker.";
const POOL_MAX: usize = 16;
const CPU_PERIOD_US: u64 = 100_000;

/// Where this host lets the worker put job cgroups.
#[derive(Debug, Default)]
pub struct Layout {
    /// v2 base, when writable.
    pub v2: Option<V2>,
    pub memory_v1: Option<PathBuf>,
    pub pids_v1: Option<PathBuf>,
    pub cpu_v1: Option<PathBuf>,
    /// Why each missing piece is missing, for the report and `doctor`.
    pub notes: Vec<String>,
}

#[derive(Debug)]
pub struct V2 {
    pub base: PathBuf,
    pub memory: bool,
    pub pids: bool,
    pub cpu: bool,
    pub kill: bool,
}

impl Layout {
    pub fn memory(&self) -> Option<&'static str> {
        match (&self.v2, &self.memory_v1) {
            (Some(v2), _) if v2.memory => Some("cgroup v2 memory.max"),
            (_, Some(_)) => Some("cgroup v1 memory.limit_in_bytes"),
            _ => None,
        }
    }

    pub fn pids(&self) -> Option<&'static str> {
        match (&self.v2, &self.pids_v1) {
            (Some(v2), _) if v2.pids => Some("cgroup v2 pids.max"),
            (_, Some(_)) => Some("cgroup v1 pids.max"),
            _ => None,
        }
    }

    pub fn cpu(&self) -> Option<&'static str> {
        match (&self.v2, &self.cpu_v1) {
            (Some(v2), _) if v2.cpu => Some("cgroup v2 cpu.max"),
            (_, Some(_)) => Some("cgroup v1 cpu.cfs_quota_us"),
            _ => None,
        }
    }

    pub fn kill(&self) -> Option<&'static str> {
        match &self.v2 {
            Some(v2) if v2.kill => Some("cgroup v2 cgroup.kill"),
            _ if self.pids_v1.is_some() => Some("cgroup v1 pids leaf, every member killed"),
            _ => None,
        }
    }

    pub fn accounting(&self) -> Option<String> {
        let cpu = self.v2.as_ref().map(|_| "cpu.stat (v2)");
        let memory = match (&self.v2, &self.memory_v1) {
            (Some(v2), _) if v2.memory => Some("memory.peak (v2)"),
            (_, Some(_)) => Some("memory.max_usage_in_bytes (v1)"),
            _ => None,
        };
        match (cpu, memory) {
            (None, None) => None,
            (cpu, memory) => Some(
                [cpu, memory]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" + "),
            ),
        }
    }
}

struct Mount {
    point: PathBuf,
    root: String,
    fstype: String,
    options: String,
}

fn mounts() -> Vec<Mount> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            Some(Mount {
                root: fields.get(3)?.to_string(),
                point: PathBuf::from(unescape(fields.get(4)?)),
                fstype: right.first()?.to_string(),
                options: right.get(2).unwrap_or(&"").to_string(),
            })
        })
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .collect()
}

fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\134", "\\")
}

/// `hierarchy -> path of this process` from /proc/self/cgroup ("" is v2).
fn own_paths() -> Vec<(String, String)> {
    let Ok(text) = fs::read_to_string("/proc/self/cgroup") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

fn own_dir(mount: &Mount, path: &str) -> PathBuf {
    // Inside a cgroup namespace the mount root is the namespace root.
    let relative = if mount.root != "/" {
        path.strip_prefix(mount.root.as_str()).unwrap_or(path)
    } else {
        path
    };
    mount.point.join(relative.trim_start_matches('/'))
}

/// Several `Host`s may live in one process (tests): each gets its own base.
static BASES: AtomicU64 = AtomicU64::new(0);

fn make_base(own: &Path, instance: u64) -> io::Result<PathBuf> {
    remove_stale(own);
    let base = own.join(format!("{BASE_PREFIX}{}.{instance}", std::process::id()));
    match fs::create_dir(&base) {
        Ok(()) => Ok(base),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(base),
        Err(error) => Err(error),
    }
}

/// Bases left by workers that died without cleaning up.
fn remove_stale(own: &Path) {
    let Ok(entries) = fs::read_dir(own) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(BASE_PREFIX))
            .and_then(|rest| rest.split('.').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            remove_base(&entry.path());
        }
    }
}

fn remove_base(base: &Path) {
    if let Ok(entries) = fs::read_dir(base) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                kill_members(&entry.path());
                let _ = fs::remove_dir(entry.path());
            }
        }
    }
    let _ = fs::remove_dir(base);
}

pub fn probe() -> Layout {
    let mut layout = Layout::default();
    let instance = BASES.fetch_add(1, Ordering::Relaxed);
    let mounts = mounts();
    let own = own_paths();
    let find_own = |hierarchy: &str| own.iter().find(|(h, _)| h == hierarchy).map(|(_, p)| p);

    match mounts.iter().find(|m| m.fstype == "cgroup2") {
        None => layout
            .notes
            .push("no cgroup v2 hierarchy is mounted".into()),
        Some(mount) => match find_own("") {
            None => layout
                .notes
                .push("this process has no cgroup v2 path".into()),
            Some(path) => {
                let own_dir = delegated_parent(&own_dir(mount, path));
                match make_base(&own_dir, instance) {
                    Ok(base) => layout.v2 = Some(probe_v2(&own_dir, base, &mut layout.notes)),
                    Err(error) => layout.notes.push(format!(
                        "cgroup v2 {} is not writable by this user ({error})",
                        own_dir.display()
                    )),
                }
            }
        },
    }

    for (name, slot) in [
        ("memory", &mut layout.memory_v1),
        ("pids", &mut layout.pids_v1),
        ("cpu", &mut layout.cpu_v1),
    ] {
        let mount = mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.options.split(',').any(|option| option == name));
        let Some(mount) = mount else {
            continue;
        };
        let Some(path) = own
            .iter()
            .find(|(h, _)| h.split(',').any(|c| c == name))
            .map(|(_, p)| p)
        else {
            continue;
        };
        let own_dir = own_dir(mount, path);
        match make_base(&own_dir, instance) {
            Ok(base) => *slot = Some(base),
            Err(error) => layout.notes.push(format!(
                "cgroup v1 {name} at {} is not writable by this user ({error})",
                own_dir.display()
            )),
        }
    }
    layout
}

/// Name of the leaf the worker moves itself into inside a delegated cgroup.
const SELF_LEAF: &str = "opencode-worker.self";

/// In a delegated cgroup (`systemd-run --user --scope -p Delegate=yes ...`) the worker sits in
/// the cgroup whose controllers it needs to hand to its jobs, and the no-internal-process rule
/// forbids that. If the worker is alone there, it moves itself into a leaf and uses the
/// now-empty cgroup as the parent of job cgroups. Returns the directory to put bases under.
fn delegated_parent(own_dir: &Path) -> PathBuf {
    // Already moved (an earlier probe in this process).
    if own_dir.file_name().is_some_and(|n| n == SELF_LEAF)
        && let Some(parent) = own_dir.parent()
    {
        return parent.to_path_buf();
    }
    let read = |file: &str| fs::read_to_string(own_dir.join(file)).unwrap_or_default();
    let offered = read("cgroup.controllers");
    let enabled = read("cgroup.subtree_control");
    let wants_more = ["memory", "pids", "cpu"].iter().any(|c| {
        offered.split_whitespace().any(|o| o == *c) && !enabled.split_whitespace().any(|e| e == *c)
    });
    let me = std::process::id().to_string();
    let alone = read("cgroup.procs").lines().all(|pid| pid.trim() == me);
    // Only the true root cgroup lacks cgroup.type, and it is exempt from the rule.
    let is_root = !own_dir.join("cgroup.type").exists();
    if !wants_more || !alone || is_root {
        return own_dir.to_path_buf();
    }
    let leaf = own_dir.join(SELF_LEAF);
    let moved = (fs::create_dir(&leaf).is_ok() || leaf.is_dir())
        && fs::write(leaf.join("cgroup.procs"), &me).is_ok();
    if moved {
        tracing::info!(cgroup = %leaf.display(), "moved the worker into a leaf of its delegated cgroup");
    }
    own_dir.to_path_buf()
}

fn probe_v2(own_dir: &Path, base: PathBuf, notes: &mut Vec<String>) -> V2 {
    let available = fs::read_to_string(own_dir.join("cgroup.controllers")).unwrap_or_default();
    let wanted: Vec<&str> = ["memory", "pids", "cpu"]
        .into_iter()
        .filter(|c| available.split_whitespace().any(|a| a == *c))
        .collect();
    let missing: Vec<&str> = ["memory", "pids", "cpu"]
        .into_iter()
        .filter(|c| !wanted.contains(c))
        .collect();
    if !missing.is_empty() {
        notes.push(format!(
            "cgroup v2 at {} offers no {} controller",
            own_dir.display(),
            missing.join("/")
        ));
    }
    for controller in &wanted {
        let line = format!("+{controller}");
        // The worker's own cgroup may hold processes, which forbids enabling controllers for
        // its children (the no-internal-process rule); the root cgroup is exempt.
        let _ = fs::write(own_dir.join("cgroup.subtree_control"), &line);
        if let Err(error) = fs::write(base.join("cgroup.subtree_control"), &line) {
            notes.push(format!(
                "cgroup v2 {controller} is offered but cannot be delegated to job cgroups ({error}); \
                 run the worker in a cgroup of its own (see doctor)"
            ));
        }
    }
    let enabled = fs::read_to_string(base.join("cgroup.subtree_control")).unwrap_or_default();
    let has = |c: &str| enabled.split_whitespace().any(|e| e == c);
    V2 {
        memory: has("memory"),
        pids: has("pids"),
        cpu: has("cpu"),
        kill: base.join("cgroup.kill").exists(),
        base,
    }
}

/// One job's leaves, one per usable hierarchy.
pub struct Slot {
    pub v2: Option<PathBuf>,
    pub memory: Option<PathBuf>,
    pub pids: Option<PathBuf>,
    pub cpu: Option<PathBuf>,
    procs: Vec<OwnedFd>,
    recyclable: bool,
}

impl Slot {
    fn dirs(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.v2, &self.memory, &self.pids, &self.cpu]
            .into_iter()
            .flatten()
    }

    /// The `cgroup.procs` files the child writes itself into.
    pub fn procs_fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.procs.iter().map(|fd| fd.as_raw_fd())
    }

    fn is_empty(&self) -> bool {
        self.dirs().all(|dir| {
            fs::read_to_string(dir.join("cgroup.procs"))
                .map(|s| s.trim().is_empty())
                .unwrap_or(true)
        })
    }
}

/// Limits for one job; `None` lifts a limit a previous user of a pooled slot had.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub cpu_cores: Option<f64>,
}

/// Counters read when the job starts: pooled leaves keep their history.
#[derive(Debug, Clone, Copy, Default)]
pub struct Baseline {
    oom_kills: u64,
    pids_max_events: u64,
    cpu_user_usec: u64,
    cpu_system_usec: u64,
}

pub struct Cgroups {
    pub layout: Layout,
    pool: Mutex<Vec<Slot>>,
    draining: Mutex<Vec<Slot>>,
    next: AtomicU64,
}

impl Cgroups {
    pub fn new(layout: Layout) -> Cgroups {
        Cgroups {
            layout,
            pool: Mutex::new(Vec::new()),
            draining: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
        }
    }

    pub fn any(&self) -> bool {
        let l = &self.layout;
        l.v2.is_some() || l.memory_v1.is_some() || l.pids_v1.is_some() || l.cpu_v1.is_some()
    }

    /// A slot with `limits` applied and fresh baselines.
    pub fn take(&self, limits: Limits) -> io::Result<(Slot, Baseline)> {
        let slot = match self.reuse() {
            Some(slot) => slot,
            None => self.create()?,
        };
        match self.configure(&slot, limits) {
            Ok(baseline) => Ok((slot, baseline)),
            Err(error) => {
                self.release(slot);
                Err(error)
            }
        }
    }

    fn reuse(&self) -> Option<Slot> {
        if let Ok(mut draining) = self.draining.lock()
            && let Some(i) = draining.iter().position(Slot::is_empty)
        {
            let slot = draining.swap_remove(i);
            reset(&slot);
            return Some(slot);
        }
        self.pool.lock().ok()?.pop()
    }

    fn create(&self) -> io::Result<Slot> {
        let name = format!("job-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let l = &self.layout;
        let leaf = |base: Option<&PathBuf>| -> io::Result<Option<PathBuf>> {
            let Some(base) = base else { return Ok(None) };
            let dir = base.join(&name);
            match fs::create_dir(&dir) {
                Ok(()) => Ok(Some(dir)),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(Some(dir)),
                Err(error) => Err(error),
            }
        };
        let mut slot = Slot {
            v2: None,
            memory: None,
            pids: None,
            cpu: None,
            procs: Vec::new(),
            recyclable: !l.v2.as_ref().is_some_and(|v2| v2.memory),
        };
        let result = (|| -> io::Result<()> {
            slot.v2 = leaf(l.v2.as_ref().map(|v2| &v2.base))?;
            slot.memory = leaf(l.memory_v1.as_ref())?;
            slot.pids = leaf(l.pids_v1.as_ref())?;
            slot.cpu = leaf(l.cpu_v1.as_ref())?;
            if let Some(memory) = &slot.memory {
                // Without swap accounting a limited job would swap instead of being stopped.
                let _ = fs::write(memory.join("memory.swappiness"), "0");
            }
            for dir in slot.dirs().cloned().collect::<Vec<_>>() {
                let fd = fs::File::options()
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(dir.join("cgroup.procs"))?;
                slot.procs.push(fd.into());
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(slot),
            Err(error) => {
                remove(&slot);
                Err(error)
            }
        }
    }

    fn configure(&self, slot: &Slot, limits: Limits) -> io::Result<Baseline> {
        let l = &self.layout;
        let mut baseline = Baseline::default();
        let v2_has = |f: fn(&V2) -> bool| l.v2.as_ref().is_some_and(f);
        match (&slot.v2, &slot.memory) {
            (Some(dir), _) if v2_has(|v| v.memory) => {
                let value = limits.memory.map_or("max".into(), |b| b.to_string());
                fs::write(dir.join("memory.max"), value)?;
                let _ = fs::write(
                    dir.join("memory.swap.max"),
                    if limits.memory.is_some() { "0" } else { "max" },
                );
                baseline.oom_kills = read_key(&dir.join("memory.events"), "oom_kill").unwrap_or(0);
            }
            (_, Some(dir)) => {
                let value = limits.memory.map_or("-1".into(), |b| b.to_string());
                fs::write(dir.join("memory.limit_in_bytes"), value)?;
                let _ = fs::write(dir.join("memory.max_usage_in_bytes"), "0");
                baseline.oom_kills =
                    read_key(&dir.join("memory.oom_control"), "oom_kill").unwrap_or(0);
            }
            _ => {}
        }
        let pids_dir = match (&slot.v2, &slot.pids) {
            (Some(dir), _) if v2_has(|v| v.pids) => Some(dir),
            (_, Some(dir)) => Some(dir),
            _ => None,
        };
        if let Some(dir) = pids_dir {
            let value = limits.pids.map_or("max".into(), |n| n.to_string());
            fs::write(dir.join("pids.max"), value)?;
            baseline.pids_max_events = read_key(&dir.join("pids.events"), "max").unwrap_or(0);
        }
        let quota = limits
            .cpu_cores
            .filter(|c| *c > 0.0)
            .map(|c| ((c * CPU_PERIOD_US as f64) as u64).max(1000));
        match (&slot.v2, &slot.cpu) {
            (Some(dir), _) if v2_has(|v| v.cpu) => {
                let value = quota.map_or(format!("max {CPU_PERIOD_US}"), |q| {
                    format!("{q} {CPU_PERIOD_US}")
                });
                fs::write(dir.join("cpu.max"), value)?;
            }
            (_, Some(dir)) => {
                fs::write(dir.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string())?;
                let value = quota.map_or("-1".into(), |q| q.to_string());
                fs::write(dir.join("cpu.cfs_quota_us"), value)?;
            }
            _ => {}
        }
        if let Some(dir) = &slot.v2 {
            let stat = dir.join("cpu.stat");
            baseline.cpu_user_usec = read_key(&stat, "user_usec").unwrap_or(0);
            baseline.cpu_system_usec = read_key(&stat, "system_usec").unwrap_or(0);
        }
        Ok(baseline)
    }

    /// Back to the pool when empty; otherwise killed and parked until it empties.
    pub fn release(&self, slot: Slot) {
        if !slot.recyclable {
            kill_slot(&slot);
            remove(&slot);
            return;
        }
        if slot.is_empty() {
            reset(&slot);
            if let Ok(mut pool) = self.pool.lock()
                && pool.len() < POOL_MAX
            {
                pool.push(slot);
                return;
            }
            remove(&slot);
        } else {
            kill_slot(&slot);
            if let Ok(mut draining) = self.draining.lock() {
                draining.push(slot);
            }
        }
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for list in [&self.pool, &self.draining] {
            if let Ok(mut slots) = list.lock() {
                for slot in slots.drain(..) {
                    kill_slot(&slot);
                    remove(&slot);
                }
            }
        }
        let l = &self.layout;
        for base in [
            l.v2.as_ref().map(|v| &v.base),
            l.memory_v1.as_ref(),
            l.pids_v1.as_ref(),
            l.cpu_v1.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            remove_base(base);
        }
    }
}

/// Nothing to reset between jobs today: limits are rewritten and counters re-baselined by
/// `configure`. Page cache the previous job left charged stays charged (it is reclaimed under
/// the next job's limit like any cache); `memory.force_empty` would free it but drains every
/// CPU's per-cpu stock, which measured +0.6 ms per job.
fn reset(_slot: &Slot) {}

fn remove(slot: &Slot) {
    for dir in slot.dirs() {
        let _ = fs::remove_dir(dir);
    }
}

/// Kills every process of the job, however it detached from its parent or session.
pub fn kill_slot(slot: &Slot) {
    if let Some(dir) = &slot.v2
        && fs::write(dir.join("cgroup.kill"), "1").is_ok()
    {
        return;
    }
    for dir in slot.dirs() {
        kill_members(dir);
    }
}

/// v1 has no cgroup.kill: kill every listed member until none is left. A member can fork
/// between the read and the kill, hence the rounds; pids.max bounds how many can appear.
fn kill_members(dir: &Path) {
    for _ in 0..64 {
        let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) else {
            return;
        };
        let pids: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // SAFETY: plain signal delivery to a member of the job's cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::yield_now();
    }
}

fn read_key(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn read_number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub fn oom_kills(slot: &Slot, baseline: &Baseline, layout: &Layout) -> bool {
    let count = match (&slot.v2, &slot.memory) {
        (Some(dir), _) if layout.v2.as_ref().is_some_and(|v| v.memory) => {
            read_key(&dir.join("memory.events"), "oom_kill")
        }
        (_, Some(dir)) => read_key(&dir.join("memory.oom_control"), "oom_kill"),
        _ => None,
    };
    count.is_some_and(|c| c > baseline.oom_kills)
}

pub fn pids_hit(slot: &Slot, baseline: &Baseline, layout: &Layout) -> bool {
    let count = match (&slot.v2, &slot.pids) {
        (Some(dir), _) if layout.v2.as_ref().is_some_and(|v| v.pids) => {
            read_key(&dir.join("pids.events"), "max")
        }
        (_, Some(dir)) => read_key(&dir.join("pids.events"), "max"),
        _ => None,
    };
    count.is_some_and(|c| c > baseline.pids_max_events)
}

pub fn usage(slot: &Slot, baseline: &Baseline, layout: &Layout) -> super::Usage {
    let peak = match (&slot.v2, &slot.memory) {
        (Some(dir), _) if layout.v2.as_ref().is_some_and(|v| v.memory) => {
            read_number(&dir.join("memory.peak"))
        }
        (_, Some(dir)) => read_number(&dir.join("memory.max_usage_in_bytes")),
        _ => None,
    };
    let (user, system) = match &slot.v2 {
        Some(dir) => {
            let stat = dir.join("cpu.stat");
            (
                read_key(&stat, "user_usec")
                    .map(|u| u.saturating_sub(baseline.cpu_user_usec) as f64 / 1000.0),
                read_key(&stat, "system_usec")
                    .map(|s| s.saturating_sub(baseline.cpu_system_usec) as f64 / 1000.0),
            )
        }
        None => (None, None),
    };
    super::Usage {
        peak_memory_bytes: peak,
        cpu_user_ms: user,
        cpu_system_ms: system,
    }
}
