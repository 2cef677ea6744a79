//! Parameters and results of each method other than dispatch.

use super::{Artifact, EndReason, Job, JobMetrics, JobStatus, JobSummary, Phase};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const PROTOCOL_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InitializeParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientInfo>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct ClientInfo {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct InitializeResult {
    pub name: String,
    pub version: String,
    pub protocol: u32,
    /// Unique per worker process; session and job ids are unique within it.
    pub worker_id: String,
    pub limits: LimitsInfo,
    pub isolation: IsolationReport,
    pub tools: Vec<ToolDescriptor>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LimitsInfo {
    pub defaults: EffectiveLimits,
    pub maximums: EffectiveLimits,
}

/// A complete set of limits, as applied to a job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EffectiveLimits {
    /// CPU cores.
    pub cpu: f64,
    /// Memory in bytes.
    pub memory: u64,
    /// Wall-clock time in milliseconds.
    pub timeout: u64,
    /// Output kept per stream, in bytes.
    pub output: u64,
    /// Processes at once.
    pub pids: u64,
}

/// The sandbox reports layers in the wire shape itself, so one type serves both.
pub use crate::sandbox::{IsolationReport, LayerReport, LayerState};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ToolDescriptor {
    pub name: String,
    pub description: String,
    pub input_schema: serde_json::Value,
    pub output_schema: serde_json::Value,
}

/// Names one job.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRef {
    /// The job's id, as returned by `worker_dispatch_job`.
    pub job_id: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectParams {
    /// The job's id, as returned by `worker_dispatch_job`.
    pub job_id: String,
    /// Byte offset into each output stream to start from (default 0), for paging a large output.
    #[serde(default)]
    pub stream_offset: u64,
    /// Most bytes returned per stream (default 65536).
    #[schemars(range(min = 1, max = 16_777_216))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Include the files the job wrote to `$OUTPUT_DIR` (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_artifacts: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CollectResult {
    pub job_id: String,
    pub status: JobStatus,
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<EndReason>,
    pub stdout: StreamPage,
    pub stderr: StreamPage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<Vec<Artifact>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<JobMetrics>,
}

/// A window onto one output stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct StreamPage {
    pub data: String,
    /// `utf8`, or `base64` when the window is not valid UTF-8.
    pub encoding: super::FileEncoding,
    /// Where this window starts in the stream.
    pub offset: u64,
    /// Where the next window starts; equal to `kept_bytes` once everything kept was read.
    pub next_offset: u64,
    /// Bytes kept (the output limit caps it).
    pub kept_bytes: u64,
    /// Bytes the job wrote in all, kept or not.
    pub total_bytes: u64,
    pub truncated: bool,
    /// True when the job has ended and this window reaches the end of what was kept.
    pub eof: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelParams {
    /// The job's id, as returned by `worker_dispatch_job`.
    pub job_id: String,
    /// Why; recorded in the job's `message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only jobs with this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<JobStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ListResult {
    /// Live jobs and retained ended ones, oldest first.
    pub sessions: Vec<JobSummary>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsParams {
    /// `json` (default): the fields below. `prometheus`: the same, plus `text` in the
    /// Prometheus text exposition format (version 0.0.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<MetricsFormat>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MetricsFormat {
    #[default]
    Json,
    Prometheus,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MetricsResult {
    pub worker_id: String,
    pub uptime_ms: u64,
    pub jobs: JobCounts,
    /// Jobs waiting for a slot.
    pub queue_depth: u64,
    /// Jobs with a live session.
    pub active_sessions: u64,
    /// Ended jobs kept for status and output.
    pub retained: u64,
    pub max_concurrent_sessions: u64,
    pub max_queued: u64,
    /// Milliseconds per lifecycle phase and end to end, over the most recent jobs.
    pub latency_ms: BTreeMap<String, Percentiles>,
    pub host: HostMetrics,
    /// The worker process itself, from /proc/self.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessMetrics>,
    /// Per-job resource use over the most recent ended jobs that ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_resources: Option<JobResources>,
    /// Event-stream subscriptions open now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<u64>,
    /// Traffic through the egress proxy, summed over ended jobs with a network allowlist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<EgressTotals>,
    /// Prepared single-use sandboxes (`isolation.warm_slots`) and how jobs started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_sandboxes: Option<WarmSandboxMetrics>,
    /// When jobs are routed to several workers (`workers` config): each worker and the
    /// fleet's own queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetMetrics>,
    /// The format asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<MetricsFormat>,
    /// With `format: "prometheus"`: every metric in the Prometheus text exposition format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// The warm sandbox pool: what it holds idle and how jobs started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WarmSandboxMetrics {
    /// `isolation.warm_slots`: ready sandboxes kept per kind (0: off).
    pub configured: u64,
    /// Prepared sandboxes waiting for a job now.
    pub ready: u64,
    /// Sandboxes being prepared now.
    pub preparing: u64,
    /// Memory the idle sandboxes hold (their processes' proportional set size), in bytes.
    pub idle_memory_bytes: u64,
    /// Jobs that started in a sandbox prepared ahead.
    pub started_warm: u64,
    /// Jobs that found none ready and waited for one made for them.
    pub started_on_demand: u64,
    /// Jobs whose sandbox was built in their own start (profile `none`, workspace jobs, hosts
    /// without the layers a prepared sandbox needs, or `warm_slots = 0`).
    pub started_cold: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct FleetMetrics {
    /// Jobs waiting for a worker with room.
    pub pending: u64,
    pub workers: Vec<WorkerMetrics>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkerLink {
    /// Connected (always, for the local worker).
    Up,
    /// Starting `ssh`, or waiting for the remote's `initialize` answer.
    Connecting,
    /// The link dropped or could not be made; retried with backoff.
    Down,
}

/// How the fleet reaches a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkerKind {
    /// This process's own pool.
    Local,
    /// A worker on another host, over SSH.
    Ssh,
}

/// One worker of the fleet.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WorkerMetrics {
    pub name: String,
    pub kind: WorkerKind,
    pub link: WorkerLink,
    pub labels: Vec<String>,
    /// Jobs it takes at once now (0 while down).
    pub capacity: u64,
    /// Jobs routed to it that have not ended.
    pub running: u64,
    /// Jobs routed to it since start.
    pub dispatched: u64,
    /// Its jobs that ended `worker_lost`.
    pub lost: u64,
    /// `host:port` of an `ssh` worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The remote process's `worker_id` on the current connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_worker_id: Option<String>,
    /// Successful connections since start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connects: Option<u64>,
    /// Why the link last dropped or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// From starting `ssh` to the remote's `initialize` answer on the last connect (key
    /// exchange, authentication, remote start-up), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_ms: Option<f64>,
    /// The remote worker's own figures, when it answered in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteWorkerMetrics>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RemoteWorkerMetrics {
    pub uptime_ms: u64,
    pub queue_depth: u64,
    pub active_sessions: u64,
    pub max_concurrent_sessions: u64,
    pub host: HostMetrics,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessMetrics>,
    /// Round trip of this metrics call, in milliseconds.
    pub rtt_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct ProcessMetrics {
    /// Resident memory now (VmRSS).
    pub rss_bytes: u64,
    /// Peak resident memory since start (VmHWM).
    pub peak_rss_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    pub threads: u64,
}

/// Egress proxy totals since the worker started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EgressTotals {
    /// Ended jobs that ran with a network allowlist.
    pub jobs: u64,
    pub connections: u64,
    /// Bytes from destinations to jobs.
    pub bytes_in: u64,
    /// Bytes from jobs to destinations.
    pub bytes_out: u64,
    /// Connections refused by a job's rules.
    pub denied: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct JobResources {
    /// Peak resident memory of a job's largest process, in bytes.
    pub max_rss_bytes: Percentiles,
    /// User plus system CPU time of a job, in milliseconds.
    pub cpu_ms: Percentiles,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct JobCounts {
    /// Jobs admitted since start.
    pub dispatched: u64,
    /// Dispatch requests refused (invalid, over a limit, busy, duplicate).
    pub rejected: u64,
    /// Jobs by current status; ended jobs stay counted after they leave retention.
    pub by_status: BTreeMap<String, u64>,
    /// Ended jobs by reason.
    pub by_reason: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct HostMetrics {
    pub cpus: u64,
    /// Whole-host CPU use since the previous metrics call, percent of all cores.
    pub cpu_usage_percent: f32,
    pub load_average_1m: f64,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShutdownParams {}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct Empty {}

/// Output schema of dispatch, status and cancel.
pub type JobResult = Job;
