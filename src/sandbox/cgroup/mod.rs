//! Cgroups: one leaf per job in every hierarchy the worker can write, for limits the kernel
//! enforces on the whole tree, a tree kill nothing escapes (`cgroup.kill`), and tree-wide
//! accounting.
//!
//! Hybrid hosts are common (this one: cgroup v2 with no controllers beside v1 memory, pids and
//! cpu), so each job may get a v2 leaf (kill, cpu.stat) and v1 leaves (limits) at once. Leaves
//! live under `<the worker's own cgroup>/opencode-worker.<pid>` so any limit on the worker
//! itself still bounds its jobs. Creating a cgroup costs more than the rest of the sandbox
//! together (v1 memory mkdir ~0.3 ms), so a few leaves are made ahead; a leaf serves one job
//! only (its counters and settings are readable from inside) and is removed after it.
//!
//! `probe` finds where this host lets the worker put leaves, `slots` makes them ahead, limits,
//! kills and retires them, `readings` turns their counters into breaches and usage.

mod probe;
mod readings;
mod slots;
mod teardown;

use std::path::PathBuf;

pub use probe::probe;
pub use readings::{Baseline, oom_kills, pids_hit, usage};
pub use slots::{Cgroups, Controller, Limits, Slot, kill_slot};

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
    /// The worker's base dir in each usable hierarchy (v2 first).
    pub fn bases(&self) -> impl Iterator<Item = &PathBuf> {
        [
            self.v2.as_ref().map(|v| &v.base),
            self.memory_v1.as_ref(),
            self.pids_v1.as_ref(),
            self.cpu_v1.as_ref(),
        ]
        .into_iter()
        .flatten()
    }

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
