//! Warm sandboxes: the namespaces of a job made before the job arrives.
//!
//! Building a job's user, mount, IPC, PID and network namespaces is most of a sandboxed
//! start, and a fork of the worker to do it copies the worker's page tables. Here a small
//! spawner process (the worker's binary re-executed, see `spawner`) clones single-use slots
//! ahead of demand: each slot is pid 1 of its own namespaces with loopback up, waiting on a
//! socket. A job enters one: the slot runs the job's remaining mount steps (the same plan a
//! cold start runs), mounts its /proc, forks the job, which joins its cgroup and applies its
//! rlimits, Landlock and seccomp before exec, reports the job's end and exits, ending the
//! namespaces. No namespace, process or mount is ever given to a second job, so nothing one
//! job leaves (files in /tmp or /dev/shm, processes, IPC objects, sockets, network
//! configuration) can be found by the next; the cgroup leaf is single-use too.
//!
//! ```text
//! worker ──MakeSlot──▶ spawner ──clone(NEWUSER|NEWNS|NEWIPC|NEWPID[|NEWNET])──▶ slot (pid 1)
//! worker ◀──slot socket + pidfd── spawner            slot ──Ready──▶ worker
//! worker ──Start{plan} + stdio, ruleset, cgroup fds──▶ slot ──fork──▶ job (pid 2) ──exec
//! worker ◀──Started + job pidfd / Exited{status, rusage}── slot, then the slot exits
//! ```

mod job;
mod pidfd;
mod pool;
mod slot;
mod spawner;
mod wire;

pub(super) use job::launch;
pub use job::{SlotExit, WarmJob};
pub use pool::{Slot, WarmPool};
pub use spawner::{SPAWNER_ARG, main as spawner_main};
pub(super) use wire::JobStart;

/// The job's side of a warm start, computed by the worker before it hands the job over.
pub struct Launch {
    pub argv: Vec<std::ffi::CString>,
    /// `KEY=value` entries.
    pub env: Vec<std::ffi::CString>,
    pub cwd: std::ffi::CString,
    /// (resource, soft, hard).
    pub rlimits: Vec<(u32, u64, u64)>,
    pub cpu_set: Option<Vec<usize>>,
    /// stdin, stdout, stderr as the job gets them.
    pub stdio: [std::os::fd::RawFd; 3],
}
