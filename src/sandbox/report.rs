//! What the sandbox tells the world: per-layer state for `initialize`, the layers one job ran
//! under, limit breaches and resource use.
//!
//! The report has the same JSON shape as `protocol::IsolationReport` so the core can pass it
//! through unchanged.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LayerState {
    /// Enforced by the kernel as described.
    Active,
    /// Enforced, but weaker than the full layer (see `detail`).
    Degraded,
    /// Not enforced on this host (see `detail`).
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LayerReport {
    pub name: String,
    pub state: LayerState,
    /// The mechanism when active; what is missing and why when degraded or unavailable.
    pub detail: String,
}

/// Which protection layers the host gives jobs, stated without exaggeration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IsolationReport {
    /// The weakest profile jobs may run under.
    pub profile: String,
    pub layers: Vec<LayerReport>,
    /// How each limit the sandbox owns is enforced.
    pub limits: Vec<LayerReport>,
    /// Paths no job can read or list, as configured (`~/` is the worker user's home), each
    /// with its category. Empty when the host can hide nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hidden: Vec<HiddenPath>,
}

/// One path jobs cannot read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HiddenPath {
    pub path: String,
    /// `agent_credentials`, `cloud_credentials`, `registry_tokens`, `keys_and_keyrings`,
    /// `shell_history`, `env_files`, `browser_profiles`, `system_secrets` (root workers only)
    /// or `configured` (added in `isolation.hidden`).
    pub category: String,
}

impl IsolationReport {
    pub fn layer(&self, name: &str) -> Option<&LayerReport> {
        self.layers
            .iter()
            .chain(self.limits.iter())
            .find(|layer| layer.name == name)
    }
}

/// One layer a job actually ran under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AppliedLayer {
    pub name: String,
    pub mechanism: String,
}

/// A limit the kernel enforced on the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Breach {
    /// The kernel's OOM killer killed a process of the job at its memory limit.
    MemoryLimit,
    /// A fork of the job failed at its process-count limit.
    PidsLimit,
}

/// Resource use of the whole job tree, when the host can measure it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    /// Peak memory of the whole tree (cgroup high-water mark).
    pub peak_memory_bytes: Option<u64>,
    pub cpu_user_ms: Option<f64>,
    pub cpu_system_ms: Option<f64>,
}

pub(super) fn active(name: &str, detail: impl Into<String>) -> LayerReport {
    LayerReport {
        name: name.into(),
        state: LayerState::Active,
        detail: detail.into(),
    }
}

pub(super) fn degraded(name: &str, detail: impl Into<String>) -> LayerReport {
    LayerReport {
        name: name.into(),
        state: LayerState::Degraded,
        detail: detail.into(),
    }
}

pub(super) fn unavailable(name: &str, detail: impl Into<String>) -> LayerReport {
    LayerReport {
        name: name.into(),
        state: LayerState::Unavailable,
        detail: detail.into(),
    }
}
