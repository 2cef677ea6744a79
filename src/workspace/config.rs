//! The `workspace` section of the worker's configuration.

use crate::protocol::ByteSize;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Paths inside a workspace whose modification would let a job run code outside the sandbox
/// later: git runs hooks and reads `core.hooksPath`, `core.fsmonitor` and aliases from its
/// config; OpenCode loads plugins and MCP commands from its config; direnv runs `.envrc`; the
/// worker reads its own config file at start.
pub const DEFAULT_PROTECTED: &[&str] = &[
    ".git/hooks",
    ".git/config",
    ".opencode",
    "opencode.json",
    "opencode.jsonc",
    ".envrc",
    crate::config::DEFAULT_CONFIG_FILE,
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkspaceConfig {
    /// The project root: a relative `workspace.path` starts here. Absent: the worker's working
    /// directory (the OpenCode plugin starts the worker in the OpenCode project).
    pub root: Option<PathBuf>,
    /// Directories a workspace must be inside, after symlinks are resolved. Empty: `root`.
    pub roots: Vec<PathBuf>,
    /// Paths relative to the workspace (or absolute, inside it) that a `write` job can neither
    /// change nor create. The worker's own config file is always added.
    pub protected: Vec<String>,
    /// Most bytes one `overlay` job may write to its layer; a job going over is killed with
    /// reason `disk_limit`. Checked every 200 ms, so a fast writer can overshoot a little.
    pub max_upper_bytes: ByteSize,
    /// Most bytes all overlay layers (running jobs and change sets waiting to be applied)
    /// may hold together; the job whose growth crosses it is killed with `disk_limit`.
    pub max_total_upper_bytes: ByteSize,
    /// How `overlay` jobs get their copy-on-write view: `auto` mounts an overlayfs where the
    /// host allows one in the job's namespaces and falls back to a copy elsewhere; `copy`
    /// always copies (the job result says `degraded`). Jobs under `strict` refuse a copy.
    pub overlay: OverlayMechanism,
    /// The copy fallback refuses a project with more entries than this (ignored paths, which
    /// are not copied, do not count).
    pub copy_max_files: u64,
    /// The copy fallback refuses a project whose copied files hold more bytes than this.
    pub copy_max_bytes: ByteSize,
    /// Toolchain cache dirs (`~/.cargo/registry`, `~/.npm`, ...) that workspace jobs write in
    /// place. By default a job's cache writes go to a cache layer owned by the worker and never
    /// reach these dirs: a dir listed here is shared with the user's own unsandboxed builds,
    /// so a job can plant a package there that they later run.
    pub shared_caches: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlayMechanism {
    #[default]
    Auto,
    Copy,
}

impl Default for WorkspaceConfig {
    fn default() -> Self {
        WorkspaceConfig {
            root: None,
            roots: Vec::new(),
            protected: DEFAULT_PROTECTED.iter().map(|p| (*p).to_owned()).collect(),
            max_upper_bytes: ByteSize::gib(8),
            max_total_upper_bytes: ByteSize::gib(32),
            overlay: OverlayMechanism::Auto,
            copy_max_files: 100_000,
            copy_max_bytes: ByteSize::gib(2),
            shared_caches: Vec::new(),
        }
    }
}
