//! Emptying and removing cgroups, which both the probe (a dead worker's leftover base) and
//! the slots (a job's leaf, the worker's own base at exit) need.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long removing a base waits for killed members to finish exiting: a leaf cannot be
/// removed while a dying process is still in it, and the base not while a leaf is.
const SETTLE: Duration = Duration::from_secs(1);

/// Kills every member of each leaf under `base`, then removes the leaves and the base.
pub(super) fn remove_base(base: &Path) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut busy = false;
        if let Ok(entries) = fs::read_dir(base) {
            for entry in entries.flatten() {
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    kill_members(&entry.path());
                    busy |= fs::remove_dir(entry.path())
                        .is_err_and(|error| error.kind() != std::io::ErrorKind::NotFound);
                }
            }
        }
        if !busy || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
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
