//! Glue between the job runner and the kernel sandbox (`crate::sandbox`): the request a job's
//! sandbox is prepared from, the worker's isolation report in the protocol's shape, and where
//! the sandbox's measurements land in a job's metrics.

use crate::plan::JobPlan;
use crate::protocol::{self, JobMetrics, NetworkMode};
use crate::sandbox::{Host, JobRequest, Profile, Usage, WorkspaceView};
use crate::session::SessionDirs;

/// What `JobSandbox::prepare` needs from a planned job. A limit of 0 means none.
pub fn sandbox_request<'a>(
    dirs: &'a SessionDirs,
    plan: &JobPlan,
    profile: Profile,
    workspace: Option<WorkspaceView>,
) -> JobRequest<'a> {
    let limits = &plan.limits;
    JobRequest {
        session_dir: &dirs.root,
        work_dir: &dirs.work,
        output_dir: &dirs.output,
        tmp_dir: &dirs.tmp,
        network_open: plan.network == NetworkMode::Open,
        memory_bytes: Some(limits.memory).filter(|m| *m > 0),
        pids: Some(limits.pids).filter(|p| *p > 0),
        cpu_cores: Some(limits.cpu).filter(|c| *c > 0.0),
        profile,
        workspace,
    }
}

/// The sandbox's view of a planned workspace with its protection in place.
pub fn workspace_view(
    plan: &crate::workspace::WorkspacePlan,
    protection: Option<&crate::workspace::Protection>,
    overlay: Option<crate::sandbox::OverlayDirs>,
    caches: Option<&crate::workspace::caches::JobCaches>,
) -> WorkspaceView {
    WorkspaceView {
        overlay,
        caches: caches.map(|c| c.mounts.clone()).unwrap_or_default(),
        shared_caches: caches.map(|c| c.shared.clone()).unwrap_or_default(),
        path: plan.path.clone(),
        writable: plan.mode == crate::protocol::WorkspaceMode::Write,
        pins: protection.map(|p| p.pins.clone()).unwrap_or_default(),
        read_only: protection.map(|p| p.read_only.clone()).unwrap_or_default(),
    }
}

/// The worker's isolation report: the core's own entries (session dir, environment, timers,
/// rlimits) followed by the sandbox's layers and limits; the two never name the same thing.
pub fn isolation_report(core: protocol::IsolationReport, host: &Host) -> protocol::IsolationReport {
    let sandbox = host.report();
    protocol::IsolationReport {
        profile: sandbox.profile,
        layers: core.layers.into_iter().chain(sandbox.layers).collect(),
        limits: core.limits.into_iter().chain(sandbox.limits).collect(),
        hidden: sandbox.hidden,
    }
}

/// Tree-wide figures from the job's cgroup replace the leader's rusage when measured.
pub fn apply_usage(metrics: &mut JobMetrics, usage: Usage) {
    if let Some(peak) = usage.peak_memory_bytes {
        metrics.max_rss_bytes = Some(peak);
    }
    if let Some(user) = usage.cpu_user_ms {
        metrics.cpu_user_ms = Some(user);
    }
    if let Some(system) = usage.cpu_system_ms {
        metrics.cpu_system_ms = Some(system);
    }
}
