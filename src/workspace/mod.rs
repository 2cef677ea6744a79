//! Workspaces: a job that works on the user's real project (`JobSpec.workspace`) instead of
//! an empty session directory.
//!
//! - `resolve` (dispatch time) turns the request into a `WorkspacePlan` or a -32602 naming
//!   `workspace.path` or `cwd`: the path is resolved through its symlinks and must stay inside
//!   the configured roots and clear of the hidden credential stores.
//! - `protect` (PREPARE) finds the mount points that keep a `write` job from planting code the
//!   user later runs outside the sandbox (git hooks and config, OpenCode's config, `.envrc`).
//! - The sandbox (`crate::sandbox::WorkspaceView`) makes the mounts and the Landlock rule.

pub mod apply;
pub mod caches;
pub mod changes;
mod config;
pub mod copy;
pub mod ignores;
pub mod overlay;
pub mod probe;
mod protect;
mod resolve;

pub use apply::PendingChanges;
pub use config::{DEFAULT_PROTECTED, OverlayMechanism, WorkspaceConfig};
pub use overlay::Layer;
pub use protect::{Protection, journal_in, sweep_journal};
pub use resolve::resolve;

use crate::protocol::WorkspaceMode;
use std::path::PathBuf;

/// A checked workspace: every path canonical.
#[derive(Debug, Clone)]
pub struct WorkspacePlan {
    /// The project directory, seen by the job at this same path.
    pub path: PathBuf,
    pub mode: WorkspaceMode,
    /// Where the job starts: the workspace or a directory inside it.
    pub cwd: PathBuf,
    /// Absolute paths inside `path` a `write` job may neither change nor create.
    pub protected: Vec<PathBuf>,
}
