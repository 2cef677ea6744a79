//! Making slots ahead must not slow the jobs running meanwhile. On 2 cores a slot's clone
//! (~0.7 ms of namespaces) and set-up land exactly while the job that took the last one runs,
//! and at equal priority the scheduler let them hold that job's slot off the CPU for most of
//! a millisecond (seen in a `sched_switch` trace). So the spawner, and every slot it makes
//! ahead, runs at the lowest priority (nice 19); the worker puts a slot back to its own
//! priority when a job takes it, before the job's start reaches it, and puts the spawner back
//! while it makes a slot a job is waiting for. A slot lowers itself again once it has
//! reported its job's end: its namespaces' teardown is nobody's path.
//!
//! Raising a priority again needs CAP_SYS_NICE (a root worker) or an RLIMIT_NICE that allows
//! the worker's own nice value; without either, nothing is lowered and slots run at the
//! worker's priority, as before.

use std::io;

/// Lowest priority: what making slots ahead runs at.
const BACKGROUND_NICE: libc::c_int = 19;
const CAP_SYS_NICE: u32 = 23;

/// The worker's priority, which it can give back to a process it lowered.
#[derive(Debug, Clone, Copy)]
pub struct Background {
    nice: libc::c_int,
}

impl Background {
    /// `Some` when the worker can raise a process of its own back to its priority.
    pub fn probe() -> Option<Background> {
        let nice = nice()?;
        let mut rlimit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit into a stack value.
        let rlimit_allows = unsafe { libc::getrlimit(libc::RLIMIT_NICE, &mut rlimit) } == 0
            // RLIMIT_NICE n allows nice values down to 20 - n.
            && rlimit.rlim_cur >= (20 - nice).max(0) as libc::rlim_t;
        (rlimit_allows || has_effective_capability(CAP_SYS_NICE)).then_some(Background { nice })
    }

    /// Puts `pid` at the lowest priority.
    pub fn lower(&self, pid: libc::pid_t) {
        let _ = set_other_nice(pid, BACKGROUND_NICE.max(self.nice));
    }

    /// Gives `pid` the worker's priority back.
    pub fn raise(&self, pid: libc::pid_t) -> io::Result<()> {
        set_other_nice(pid, self.nice)
    }
}

/// For a slot that has reported its job's end: its teardown runs at the lowest priority.
/// Lowering needs no privilege.
pub fn lower_self() {
    let _ = set_nice(0, BACKGROUND_NICE);
}

/// The calling thread's nice value (getpriority's -1 is ambiguous without errno).
fn nice() -> Option<libc::c_int> {
    // SAFETY: errno is thread-local; getpriority reads our own priority.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
        (nice != -1 || *libc::__errno_location() == 0).then_some(nice)
    }
}

/// Another process's nice value; never the caller's own (`setpriority` reads pid 0 as "me").
fn set_other_nice(pid: libc::pid_t, nice: libc::c_int) -> io::Result<()> {
    if pid <= 0 {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    set_nice(pid, nice)
}

fn set_nice(pid: libc::pid_t, nice: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, pid as libc::id_t, nice) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn has_effective_capability(cap: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << cap) != 0)
}
