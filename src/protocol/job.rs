//! What a client gets back about a job.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a job stands. `finished` means exit code 0; every other ended status says why in `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Admitted, waiting for a free session slot.
    Queued,
    /// Its session exists; see `phase`.
    Running,
    /// Exited with code 0.
    Finished,
    /// Exited non-zero, died of a signal, or could not be prepared or started.
    Failed,
    /// Killed after its wall-clock limit.
    Timeout,
    /// Cancelled by a client.
    Cancelled,
    /// Killed by the worker; `reason` says which limit or event.
    Killed,
}

impl JobStatus {
    pub const ALL: [JobStatus; 7] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Finished,
        JobStatus::Failed,
        JobStatus::Timeout,
        JobStatus::Cancelled,
        JobStatus::Killed,
    ];

    pub fn is_ended(self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Finished => "finished",
            JobStatus::Failed => "failed",
            JobStatus::Timeout => "timeout",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Killed => "killed",
        }
    }
}

/// The lifecycle phase: init -> prepare -> execute -> collect -> destroy -> done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Init,
    Prepare,
    Execute,
    Collect,
    Destroy,
    Done,
}

/// Why a job ended the way it did (absent for `finished`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// `failed`: the process exited with a non-zero code.
    ExitCode,
    /// `failed`: the process died of a signal it was not sent by the worker.
    Signal,
    /// `failed`: the session could not be prepared (see `message`).
    PrepareError,
    /// `failed`: the program could not be started (see `message`).
    SpawnError,
    /// `timeout`: the wall-clock limit passed.
    Timeout,
    /// `cancelled`: a client cancelled it.
    Cancelled,
    /// `killed`: the job used more memory than its limit.
    MemoryLimit,
    /// `killed`: the job wrote more output than its limit.
    OutputLimit,
    /// `killed`: the job ran more processes than its limit.
    PidsLimit,
    /// `killed`: a process of the job used more CPU time than allowed.
    CpuTimeLimit,
    /// `killed`: the worker shut down while the job was queued or running.
    WorkerShutdown,
    /// `failed`: the remote worker running the job was lost (its SSH connection dropped or
    /// went silent); whether the job got to finish there is unknown.
    WorkerLost,
    /// `killed`: an `overlay` job wrote more than the worker's workspace disk budget.
    DiskLimit,
}

impl EndReason {
    pub const ALL: [EndReason; 13] = [
        EndReason::ExitCode,
        EndReason::Signal,
        EndReason::PrepareError,
        EndReason::SpawnError,
        EndReason::Timeout,
        EndReason::Cancelled,
        EndReason::MemoryLimit,
        EndReason::OutputLimit,
        EndReason::PidsLimit,
        EndReason::CpuTimeLimit,
        EndReason::WorkerShutdown,
        EndReason::WorkerLost,
        EndReason::DiskLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::ExitCode => "exit_code",
            EndReason::Signal => "signal",
            EndReason::PrepareError => "prepare_error",
            EndReason::SpawnError => "spawn_error",
            EndReason::Timeout => "timeout",
            EndReason::Cancelled => "cancelled",
            EndReason::MemoryLimit => "memory_limit",
            EndReason::OutputLimit => "output_limit",
            EndReason::PidsLimit => "pids_limit",
            EndReason::CpuTimeLimit => "cpu_time_limit",
            EndReason::WorkerShutdown => "worker_shutdown",
            EndReason::WorkerLost => "worker_lost",
            EndReason::DiskLimit => "disk_limit",
        }
    }
}

/// A job: its identity, where it stands, and (once ended, when asked for) its result.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct Job {
    pub job_id: String,
    /// The disposable session the job runs in.
    pub session_id: String,
    /// The configured name of the worker that runs it, when the worker routes to several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    pub status: JobStatus,
    pub phase: Phase,
    /// RFC 3339 UTC time the job was admitted.
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// The process's exit code, when it exited normally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal number that ended the process, when a signal did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<EndReason>,
    /// Human-readable detail: a cancel reason, a prepare or spawn error, which limit was hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Standard output (invalid UTF-8 replaced; page exact bytes with `worker_collect_output`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// True when the job wrote more to stdout than the output limit kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_truncated: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_truncated: Option<bool>,
    /// Bytes the job wrote to stdout, kept or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_bytes: Option<u64>,
    /// Files the job wrote under `$OUTPUT_DIR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<Vec<Artifact>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<JobMetrics>,
    /// The isolation layers the job ran under, each with its mechanism.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Vec<crate::sandbox::AppliedLayer>>,
    /// Policy `audit` mode: the refusal this job would have got under `enforce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_audit: Option<crate::policy::Refusal>,
    /// Destinations the egress proxy refused (jobs with a network allowlist): tell the user
    /// which to add to `network.allow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_denied: Option<Vec<DeniedConnection>>,
    /// An `overlay` workspace job, once ended: what it changed (not yet in the project).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<super::WorkspaceChanges>,
}

/// One line per job in `worker_list_sessions`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct JobSummary {
    pub job_id: String,
    pub session_id: String,
    /// The configured name of the worker that runs it, when the worker routes to several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    pub status: JobStatus,
    pub phase: Phase,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<EndReason>,
    /// The command line, or argv joined by spaces, cut to 200 characters.
    pub command: String,
}

/// A file the job left in its output directory.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct Artifact {
    /// Path relative to the output directory.
    pub path: String,
    pub size: u64,
    /// Hex SHA-256 of the whole file; absent when COLLECT's hashing budget (bytes or time)
    /// was spent or the job was cancelled during COLLECT: `size` is still exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The content, when it fits the inline cap and was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// `utf8` or `base64`, when `content` is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<super::FileEncoding>,
}

/// Timings and resource use of one job. Durations are milliseconds.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
pub struct JobMetrics {
    /// Time spent queued before a session slot was free.
    pub queue_ms: f64,
    pub prepare_ms: f64,
    /// From the spawn call until the process was running.
    pub spawn_ms: f64,
    pub execute_ms: f64,
    pub collect_ms: f64,
    pub destroy_ms: f64,
    /// From admission to the end of destroy.
    pub total_ms: f64,
    /// User CPU time of the job's process and the descendants it waited for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_user_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_system_ms: Option<f64>,
    /// Peak resident memory of the largest process of the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rss_bytes: Option<u64>,
    /// The limits the job ran under.
    pub limits: super::EffectiveLimits,
    /// Traffic through the egress proxy, for a job with a network allowlist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkMetrics>,
    /// How the job's sandbox was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_start: Option<SandboxStart>,
}

/// Where a job's sandbox came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SandboxStart {
    /// A prepared sandbox was ready.
    Warm,
    /// None was ready; one was prepared for the job while it waited.
    OnDemand,
    /// Built in the job's own start, by the worker.
    Cold,
}

/// What a job with a network allowlist did through the egress proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct NetworkMetrics {
    /// Bytes from the destinations to the job.
    pub bytes_in: u64,
    /// Bytes from the job to the destinations (request heads included).
    pub bytes_out: u64,
    /// Connections the proxy opened for the job.
    pub connections: u64,
    /// Refused destinations (also in the job's `network_denied`).
    pub denied: Vec<DeniedConnection>,
}

/// A destination the egress proxy refused, and how often.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct DeniedConnection {
    /// As the job named it (`[v6]` bracketed).
    pub host: String,
    pub port: u16,
    pub count: u64,
}

impl JobSummary {
    /// The listing line of a job, with the command line as listings show it.
    pub fn of(job: Job, command: String) -> JobSummary {
        JobSummary {
            job_id: job.job_id,
            session_id: job.session_id,
            worker: job.worker,
            status: job.status,
            phase: job.phase,
            created_at: job.created_at,
            started_at: job.started_at,
            ended_at: job.ended_at,
            exit_code: job.exit_code,
            reason: job.reason,
            command,
        }
    }
}

/// Wall-clock times on the wire: RFC 3339 with milliseconds, UTC.
pub fn rfc3339(time: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}
