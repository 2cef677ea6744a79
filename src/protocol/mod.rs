//! The wire contract: every type a client sends or receives, with its JSON Schema.
//!
//! These types are the single source of truth for `schema/` and for the tool list that
//! `initialize` returns, so a field added here shows up in OpenCode without hand-written shapes.

pub mod bytesize;
pub mod changes;
pub mod events;
pub mod job;
pub mod methods;
pub mod spec;
pub mod table;
pub mod tools;

pub use bytesize::ByteSize;
pub use changes::{
    ApplyOutcome, ApplyParams, ApplyResult, ChangeDiff, ChangeKind, ChangesPage, DiscardResult,
    FileChange, GetChangesParams, IgnoredChanges, PathOutcome, WorkspaceChanges,
};
pub use events::*;
pub use job::{
    Artifact, DeniedConnection, EndReason, Job, JobMetrics, JobStatus, JobSummary, NetworkMetrics,
    Phase, SandboxStart, rfc3339,
};
pub use methods::*;
pub use spec::{
    Allowlist, FileEncoding, FileEntry, JobSpec, LimitsRequest, NetworkMode, NetworkRequest,
    SeedConfig, WorkspaceMode, WorkspaceSpec,
};
