//! Kernel-enforced isolation and resource limits for every job.
//!
//! # How the core uses it
//! ```text
//! let host = Host::probe(&config.sandbox);          // once at start-up, a few ms, no root
//! initialize.isolation = host.report();             // per-layer active | degraded | unavailable
//! // per job, before spawn (allocation, file opening, BPF, cgroup set-up happen here):
//! let sandbox = JobSandbox::prepare(&host, &JobRequest { .. })?;  // strict + gap => Err(Refused)
//! command.pre_exec(move || { setsid; pdeathsig; rlimits; unsafe { sandbox.enter_in_child() } });
//! let child = command.spawn()?;  sandbox.attach(child.id())?;
//! // while it runs: sandbox.breach() -> Some(MemoryLimit | PidsLimit) => kill with that reason
//! // on end / timeout / cancel / shutdown: sandbox.kill_all() (before reaping the leader)
//! metrics <- sandbox.usage(); job.layers <- sandbox.layers(); drop(sandbox) frees the cgroup
//! ```
//! `doctor_report(&host)` is the human version of the report with a fix for each gap, and
//! `host.strict_gaps()` is empty exactly when `strict` can run here.
//!
//! # Layers (each probed by actually trying it, each reported as it really is)
//! - filesystem: Landlock (raw syscalls, enforcement verified); read-only everywhere except
//!   the session dir and a private tmp; credential stores, other sessions and raw devices
//!   unreadable (an allow-list computed around them, see `fsview`).
//! - namespaces: user (no host capability), network (for `network: "none"`), mount (tmpfs over
//!   /tmp, /dev/shm and, for "none", /run: host Unix sockets disappear), IPC, and PID when the
//!   tree kill or signal isolation needs it (see `ns`).
//! - seccomp: a deny list with no_new_privs (see `seccomp`).
//! - cgroups: single-use per-job leaves, made ahead, for memory, pids, cpu, cgroup.kill and
//!   accounting; fallbacks RLIMIT_DATA (memory) and RLIMIT_NPROC in the user namespace (pids).

mod cbytes;
mod cgroup;
mod config;
mod doctor;
mod fsview;
mod host;
mod job;
mod landlock;
mod listener;
mod ns;
mod report;
mod seccomp;
mod sys;
mod warm;

#[cfg(test)]
mod bench;
#[cfg(test)]
mod tests;

pub use config::{DEFAULT_HIDDEN, Profile, SandboxConfig, WORKER_DIR_PREFIX};
pub use doctor::doctor_report;
pub use host::Host;
pub use job::{CacheOverlay, JobRequest, JobSandbox, OverlayDirs, WorkspaceView};
pub use report::{
    AppliedLayer, Breach, HiddenPath, IsolationReport, LayerReport, LayerState, Usage,
};
pub use sys::background_thread;
pub use warm::{Launch, SPAWNER_ARG, SlotExit, WarmJob, spawner_main};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// `strict` and the host lacks a layer: the job must not run.
    #[error(
        "isolation profile `strict` refuses to run this job: layer `{layer}` is not available here ({why})"
    )]
    Refused { layer: String, why: String },
    #[error("network \"open\" is not allowed by this worker's configuration")]
    NetworkNotAllowed,
    /// A network allowlist needs the job in its own network namespace.
    #[error("a network allowlist needs the job in its own network namespace: {0}")]
    EgressUnavailable(String),
    /// A workspace job cannot get the mounts that enforce its mode here.
    #[error("workspace jobs cannot run here: {0}")]
    WorkspaceUnavailable(String),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl SandboxError {
    /// The layer a refusal names, for the error's `data`.
    pub fn layer(&self) -> Option<&str> {
        match self {
            SandboxError::Refused { layer, .. } => Some(layer),
            SandboxError::NetworkNotAllowed | SandboxError::EgressUnavailable(_) => Some("network"),
            SandboxError::WorkspaceUnavailable(_) => Some("workspace"),
            SandboxError::Io { .. } => None,
        }
    }
}
