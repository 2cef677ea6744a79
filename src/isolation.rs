//! What the core's EXECUTE enforces on its own, stated plainly. The kernel sandbox layers
//! replace the gaps listed here as they land.

use crate::protocol::{IsolationReport, LayerReport, LayerState};

fn layer(name: &str, state: LayerState, detail: &str) -> LayerReport {
    LayerReport {
        name: name.into(),
        state,
        detail: detail.into(),
    }
}

pub fn baseline_report() -> IsolationReport {
    use LayerState::*;
    IsolationReport {
        profile: "baseline".into(),
        layers: vec![
            layer(
                "session_dir",
                Active,
                "each job runs in its own 0700 work dir, removed after the job",
            ),
            layer(
                "process_group",
                Degraded,
                "each job leads its own session and process group, killed as a group; a process that calls setsid escapes the group kill",
            ),
            layer(
                "parent_death_signal",
                Active,
                "PR_SET_PDEATHSIG(SIGKILL) on the job's first process",
            ),
            layer(
                "environment",
                Active,
                "scrubbed to an allowlist plus the job's env",
            ),
            layer(
                "filesystem",
                Unavailable,
                "not enforced: a job can read and write whatever the worker's user can",
            ),
            layer(
                "network",
                Unavailable,
                "not enforced: `network: none` is accepted but the job shares the host network",
            ),
            layer("seccomp", Unavailable, "no system-call filter is installed"),
        ],
        limits: vec![
            layer(
                "timeout",
                Active,
                "wall clock; SIGTERM to the process group, SIGKILL after the grace period",
            ),
            layer(
                "output",
                Active,
                "kept per stream up to the limit; the job is killed when it writes more",
            ),
            layer(
                "cpu",
                Active,
                "sched_setaffinity to ceil(cpu) of the worker's CPUs",
            ),
            layer(
                "cpu_time",
                Active,
                "RLIMIT_CPU per process = timeout x cores",
            ),
            layer("file_size", Active, "RLIMIT_FSIZE per process"),
            layer("open_files", Active, "RLIMIT_NOFILE per process"),
            layer(
                "memory",
                Unavailable,
                "not enforced: no cgroup memory controller is used yet",
            ),
            layer(
                "pids",
                Unavailable,
                "not enforced: no pids controller or user namespace is used yet",
            ),
        ],
    }
}
