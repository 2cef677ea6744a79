//! Per-job leaves: created on demand, limited per job, pooled between jobs, killed as a tree.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::readings::{Baseline, read_key};
use super::teardown::{kill_members, remove_base};
use super::{Layout, V2};

const POOL_MAX: usize = 16;
const CPU_PERIOD_US: u64 = 100_000;

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

    /// A leaf with no limits set yet, for a prepared sandbox to join ahead of its job (a
    /// migration into a cgroup can wait for an RCU grace period: off the job's path there).
    pub fn take_unconfigured(&self) -> io::Result<Slot> {
        match self.reuse() {
            Some(slot) => Ok(slot),
            None => self.create(),
        }
    }

    /// Applies a job's limits to a leaf taken with `take_unconfigured`.
    pub fn configure_taken(&self, slot: Slot, limits: Limits) -> io::Result<(Slot, Baseline)> {
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
