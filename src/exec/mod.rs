//! EXECUTE: start a job's process in its own session, watch it through a pidfd, and end its tree.

mod affinity;
mod env;
mod output;
mod process;
mod rlimits;
mod sandboxed;

pub use affinity::CpuPicker;
pub use env::{SessionPaths, job_environment};
pub use output::{StreamBuffer, Tap, pump};
pub use process::{ExitInfo, JobProcess, LaunchSpec, Program, ResourceUse};
pub use rlimits::RlimitPlan;
pub use sandboxed::{apply_usage, isolation_report, sandbox_request, workspace_view};
