//! What an `overlay` job changed in its workspace.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The job's writes, compared with the project on disk when the job ended. Nothing here is in
/// the project until `worker_apply_changes` puts it there.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
pub struct WorkspaceChanges {
    /// Every changed path the project's ignore rules (`.gitignore`, `.git/info/exclude`) do
    /// not exclude, sorted by path.
    pub files: Vec<FileChange>,
    /// Unified diff of the changed text files (`a/` = project, `b/` = the job's version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<ChangeDiff>,
    /// Changes under ignored paths (build output such as `target/`, `node_modules/`, and
    /// everything in `.git/`): only counted.
    pub ignored: IgnoredChanges,
    /// Set when the job ran on a copy of the project instead of a copy-on-write overlay (the
    /// host cannot mount one, or the operator chose `workspace.overlay = "copy"`): why, and
    /// where the job saw the copy. Ignored paths (`target/`) were not copied, so builds
    /// started from scratch; apply and discard work the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct FileChange {
    /// Relative to the workspace.
    pub path: String,
    pub kind: ChangeKind,
    /// Size in bytes of the job's version (files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Hex SHA-256 of the job's version (files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Permission bits of the job's version, such as 493 (0o755).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Where the job's version points, when it is a symlink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// New: nothing was at this path.
    Added,
    /// Same type, other content or permissions (a file) or other target (a symlink).
    Modified,
    /// Removed by the job.
    Deleted,
    /// Another kind of entry now: a file became a symlink or a directory, or the reverse.
    TypeChanged,
}

/// The diff text, cut to a cap; `worker_get_changes` pages through the rest.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
pub struct ChangeDiff {
    pub text: String,
    /// Where `text` starts in the whole diff.
    pub offset: u64,
    /// Length of the whole diff in bytes.
    pub total_bytes: u64,
    /// True when `text` stops before the end of the diff.
    pub truncated: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct IgnoredChanges {
    /// Changed entries under ignored paths.
    pub count: u64,
    /// Their size in bytes.
    pub bytes: u64,
}

/// `worker_get_changes` parameters.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetChangesParams {
    /// An ended `overlay` job whose `changes` are still pending.
    pub job_id: String,
    /// Byte offset in the whole diff to start from (the previous page's `offset` plus the
    /// byte length of its `text`). Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Most bytes of diff text to return (default and maximum 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

/// `worker_get_changes` result: the change set's paths and a page of its diff.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ChangesPage {
    pub job_id: String,
    /// The change set's paths, as in the job result's `changes.files`.
    pub files: Vec<FileChange>,
    /// `truncated` is true while more diff follows this page.
    pub diff: ChangeDiff,
}

/// `worker_apply_changes` parameters.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyParams {
    /// An ended `overlay` job whose `changes` are still pending.
    pub job_id: String,
    /// Apply only these paths of its change set (as listed in `changes.files`). Absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ApplyResult {
    pub job_id: String,
    /// One entry per path asked for (all of the change set by default), sorted by path.
    pub results: Vec<PathOutcome>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PathOutcome {
    pub path: String,
    pub outcome: ApplyOutcome,
    /// Why, for `conflict` and `skipped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApplyOutcome {
    /// The project now holds the job's version.
    Applied,
    /// The path changed on disk after the change set was computed; left as it is.
    Conflict,
    /// Not applied: a protected path, not in the change set, or applied before.
    Skipped,
}

/// `worker_discard_changes` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DiscardResult {
    pub job_id: String,
    /// Paths of the change set that were never applied and are now gone.
    pub discarded: u64,
}
