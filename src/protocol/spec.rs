//! What a client asks for: `worker_dispatch_job` parameters.

use super::ByteSize;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A job to run in a fresh, disposable session.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Your name for the job: 1-128 characters of `A-Z a-z 0-9 . _ -`. A UUIDv7 is chosen when
    /// absent. Must not repeat the id of a live or retained job.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,

    /// A shell command line, run by `/bin/sh -c` (never a login shell). Give exactly one of
    /// `command` or `argv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,

    /// A program and its arguments, executed directly without a shell. Give exactly one of
    /// `command` or `argv`.
    #[schemars(length(min = 1))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,

    /// Files to create in the work directory before the job starts, keyed by relative path
    /// (parent directories are created). A value is the file's UTF-8 text, or an object with
    /// `content`, `encoding` and `executable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<BTreeMap<String, FileEntry>>,

    /// Environment variables added to the job's scrubbed environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,

    /// Working directory relative to the session's work directory (created if missing), or,
    /// with `workspace`, relative to the workspace (it must exist there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,

    /// Run on the user's real project instead of an empty work directory. To build or test
    /// the project (for example "run the tests"), use `{"mode": "overlay"}` with the command
    /// (`cargo test`, `npm test`, `pytest`): the job reads the live project and its writes
    /// (build output, edits) go to a throwaway layer that is reported as `changes`, so the
    /// project is never modified. Use `write` only when the user asked for changes in place,
    /// `read` for inspection. The job starts in the workspace, at its real path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<WorkspaceSpec>,

    /// Text written to the job's standard input, which is then closed. Without it stdin is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,

    /// Resource limits; absent values take the worker's defaults. Values above the worker's
    /// maximums are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsRequest>,

    /// Network access: `none`, `open`, or `{"allow": [...], "deny": [...]}` (only the listed
    /// hosts, through the worker's egress proxy). `restricted` is accepted as `none`. Absent:
    /// the worker's `network.default`, else `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkRequest>,

    /// Isolation profile: `standard` (every layer the host has) or `strict` (every layer, or
    /// the job is refused naming the missing one). Never looser than the worker's own profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<crate::sandbox::Profile>,

    /// Wait up to this many milliseconds for the job to end. If it ends in time, the reply
    /// carries its full result (output, artifacts, metrics); otherwise the reply shows it running.
    #[schemars(range(max = 3_600_000))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,

    /// Run on this worker, by its configured name (see `worker_get_metrics` `workers`). Absent:
    /// the least-loaded worker with room among those carrying every label in `labels`.
    #[schemars(length(min = 1, max = 128))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,

    /// Run only on a worker that carries every one of these labels (for example `["gpu"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,

    /// Compatibility with the TypeScript worker's `config` object. Only `network` has an effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<SeedConfig>,
}

/// The project a job works on, and how.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSpec {
    /// The project directory: absolute, or relative to the worker's project root (the
    /// OpenCode project). Absent: the project root itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `overlay` (build, test, try edits: copy-on-write, the project is never modified),
    /// `write` (edit in place; `.git/hooks`, `.git/config`, OpenCode's config and `.envrc` stay
    /// read-only), or `read` (read-only).
    pub mode: WorkspaceMode,
}

/// How a job may touch its workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceMode {
    /// Copy-on-write: the job sees the live project and may write anywhere in it, but its
    /// writes land in a separate layer reported as `changes`; the project is untouched.
    Overlay,
    /// The project is writable in place, except paths that would let a job run code outside
    /// the sandbox later (git hooks and config, OpenCode's config, `.envrc`).
    Write,
    /// The project is visible and read-only.
    Read,
}

impl WorkspaceMode {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceMode::Overlay => "overlay",
            WorkspaceMode::Write => "write",
            WorkspaceMode::Read => "read",
        }
    }
}

/// A file to inject: its text, or its content with an encoding.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum FileEntry {
    /// The file's UTF-8 text.
    Text(String),
    /// The file's content with an encoding and mode.
    Detailed {
        /// The file's content, encoded as `encoding` says.
        content: String,
        /// How `content` is encoded: `utf8` (default) or `base64`.
        #[serde(default)]
        encoding: FileEncoding,
        /// Make the file executable (mode 0755 instead of 0644).
        #[serde(default)]
        executable: bool,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileEncoding {
    #[default]
    Utf8,
    Base64,
}

/// Requested limits. Each absent value takes the worker's configured default.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    /// CPU cores the job may use (for example 1 or 0.5).
    #[schemars(range(min = 0.01))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Memory for the whole job, such as "512MB", "2GiB" or a byte count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// Wall-clock time limit in milliseconds; the job's whole process tree is killed after it.
    #[schemars(range(min = 1))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// Output kept per stream (stdout, stderr), in bytes; a job writing more is killed with
    /// reason `output_limit`, and what it wrote up to the limit is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<ByteSize>,
    /// Maximum number of processes the job may run at once.
    #[schemars(range(min = 1))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
}

/// Network access for a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// No network at all.
    #[default]
    #[serde(alias = "restricted")]
    None,
    /// The host's network, when the worker's configuration allows it.
    Open,
}

/// A job's network: a mode, or an allowlist served by the egress proxy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum NetworkRequest {
    Mode(NetworkMode),
    Allowlist(Allowlist),
}

impl From<NetworkMode> for NetworkRequest {
    fn from(mode: NetworkMode) -> Self {
        NetworkRequest::Mode(mode)
    }
}

/// Destinations a job may reach through the egress proxy. An entry is a host name
/// (`registry.example`), names below one (`*.cdn.example`, not the name itself), an IP
/// address or a CIDR, each with an optional `:port` (absent: any port), or `@name` for a set
/// from the worker's `network.allowlists`. A name that resolves to a loopback, private,
/// link-local or worker-host address is refused unless that address is listed too.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Allowlist {
    pub allow: Vec<String>,
    /// Entries refused even when `allow` matches (no `@name` sets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// The TypeScript worker's per-job `config` object, accepted so old callers keep working.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
pub struct SeedConfig {
    /// Ignored; kept for compatibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Ignored; kept for compatibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Ignored; kept for compatibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Network access; used when the top-level `network` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkMode>,
    /// Ignored; kept for compatibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<bool>,
}
