//! Emptying and removing cgroups, which both the probe (a dead worker's leftover base) and
//! the slots (a job's leaf, the worker's own base at exit) need.

use std::fs;
use std::path::Path;

/// Kills every member of each leaf under `base`, then removes the leaves and the base.
pub(super) fn remove_base(base: &Path) {
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

/// v1 has no cgroup.kill: kill every listed member until none is left. A member can fork
/// between the read and the kill, hence the rounds; pids.max bounds how many can appear.
pub(super) fn kill_members(dir: &Path) {
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
