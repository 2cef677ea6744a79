//! What the core's EXECUTE enforces on its own, stated plainly; the kernel sandbox reports
//! its layers and limits beside these (`exec::isolation_report`).

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
                "parent_death_signal",
                Active,
                "PR_SET_PDEATHSIG(SIGKILL) on the job's first process",
            ),
            layer(
                "environment",
                Active,
                "scrubbed to an allowlist plus the job's env",
            ),
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
                "cpu_time",
                Active,
                "RLIMIT_CPU per process = timeout x cores",
            ),
            layer("file_size", Active, "RLIMIT_FSIZE per process"),
            layer("open_files", Active, "RLIMIT_NOFILE per process"),
        ],
        hidden: Vec::new(),
    }
}
