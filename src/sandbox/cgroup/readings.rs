//! What a job's leaves say: breaches (OOM kills, pids.max hits) and usage, against the
//! counters read when its leaf was made.

use std::fs;
use std::path::Path;

use super::{Controller, Layout, Slot};

/// Counters read when the leaf was made. A leaf is single-use, so they are zero; reading them
/// keeps breaches and usage right on a kernel or a cgroup that starts counting elsewhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct Baseline {
    pub(super) oom_kills: u64,
    pub(super) pids_max_events: u64,
    pub(super) cpu_user_usec: u64,
    pub(super) cpu_system_usec: u64,
}

impl Baseline {
    /// The leaf's counters now.
    pub(super) fn read(slot: &Slot, layout: &Layout) -> Baseline {
        let cpu_stat = slot
            .v2
            .as_ref()
            .and_then(|dir| fs::read_to_string(dir.join("cpu.stat")).ok())
            .unwrap_or_default();
        let cpu = |key| key_in(&cpu_stat, key);
        Baseline {
            oom_kills: oom_kill_count(slot, layout).unwrap_or(0),
            pids_max_events: pids_max_count(slot, layout).unwrap_or(0),
            cpu_user_usec: cpu("user_usec").unwrap_or(0),
            cpu_system_usec: cpu("system_usec").unwrap_or(0),
        }
    }
}

pub(super) fn read_key(path: &Path, key: &str) -> Option<u64> {
    key_in(&fs::read_to_string(path).ok()?, key)
}

/// The value of `key` in a flat-keyed cgroup file's text ("key value" lines).
fn key_in(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn read_number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The OOM kills its memory controller has counted.
fn oom_kill_count(slot: &Slot, layout: &Layout) -> Option<u64> {
    match slot.controller(layout, Controller::Memory)? {
        (dir, true) => read_key(&dir.join("memory.events"), "oom_kill"),
        (dir, false) => read_key(&dir.join("memory.oom_control"), "oom_kill"),
    }
}

/// The forks its pids controller has refused at pids.max.
fn pids_max_count(slot: &Slot, layout: &Layout) -> Option<u64> {
    let (dir, _) = slot.controller(layout, Controller::Pids)?;
    read_key(&dir.join("pids.events"), "max")
}

pub fn oom_kills(slot: &Slot, baseline: &Baseline, layout: &Layout) -> bool {
    oom_kill_count(slot, layout).is_some_and(|c| c > baseline.oom_kills)
}

pub fn pids_hit(slot: &Slot, baseline: &Baseline, layout: &Layout) -> bool {
    pids_max_count(slot, layout).is_some_and(|c| c > baseline.pids_max_events)
}

pub fn usage(slot: &Slot, baseline: &Baseline, layout: &Layout) -> crate::sandbox::Usage {
    let peak = match slot.controller(layout, Controller::Memory) {
        Some((dir, true)) => read_number(&dir.join("memory.peak")),
        Some((dir, false)) => read_number(&dir.join("memory.max_usage_in_bytes")),
        None => None,
    };
    let (user, system) = match &slot.v2 {
        Some(dir) => {
            // One read for both keys: each read of a cgroup file is an open, reads and a close
            // on the job's path.
            let stat = fs::read_to_string(dir.join("cpu.stat")).unwrap_or_default();
            let ms = |key: &str, base: u64| {
                key_in(&stat, key).map(|v| v.saturating_sub(base) as f64 / 1000.0)
            };
            (
                ms("user_usec", baseline.cpu_user_usec),
                ms("system_usec", baseline.cpu_system_usec),
            )
        }
        None => (None, None),
    };
    crate::sandbox::Usage {
        peak_memory_bytes: peak,
        cpu_user_ms: user,
        cpu_system_ms: system,
    }
}
