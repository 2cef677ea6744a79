//! The method table: each JSON-RPC method's name, params type, result type and (for the ones a
//! model may call) tool description, declared once. The server registers from it, the tool list
//! and `schema/` are generated from it, and every client (the fleet's link to a remote worker,
//! the tests, the benches) calls through it, so a method name is spelled in one place.

use super::*;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// One method of the protocol.
pub trait Method {
    const NAME: &'static str;
    /// What a model reads in the tool list; `None`: not a tool (the session's own methods).
    const DESCRIPTION: Option<&'static str>;
    type Params: Serialize + DeserializeOwned + JsonSchema + Send + 'static;
    type Result: Serialize + DeserializeOwned + JsonSchema + Clone + Send + 'static;
}

macro_rules! methods {
    ($( $(#[$doc:meta])* $ty:ident = $name:literal, $params:ty => $result:ty, $description:expr; )*) => {
        $(
            $(#[$doc])*
            pub struct $ty;
            impl Method for $ty {
                const NAME: &'static str = $name;
                const DESCRIPTION: Option<&'static str> = $description;
                type Params = $params;
                type Result = $result;
            }
        )*
        /// Every method name, in table order.
        pub const METHOD_NAMES: &[&str] = &[$($name),*];
    };
}

methods! {
    /// Opens the session: names, versions, limits, isolation and the tool list.
    Initialize = "initialize", InitializeParams => InitializeResult, None;
    DispatchJob = "worker_dispatch_job", JobSpec => Job, Some(
        "Run a shell command (or an argv) in a fresh, isolated, disposable session with \
        CPU, memory, time and output limits and no network unless asked. To build or test the \
        user's project, give `workspace: {\"mode\": \"overlay\"}`: the job runs in the project at \
        its real path, its writes are kept apart and reported as `changes` (apply them with \
        worker_apply_changes). Otherwise inject files into the work directory with `files`; the \
        job writes artifacts to $OUTPUT_DIR. Give `wait_ms` to get the full result in the reply \
        when the job ends in time; otherwise poll with worker_get_status and read output with \
        worker_collect_output.");
    GetStatus = "worker_get_status", JobRef => Job, Some(
        "Get a job's status, phase, exit code, end reason and metrics (without its \
        output; use worker_collect_output for that).");
    CollectOutput = "worker_collect_output", CollectParams => CollectResult, Some(
        "Read a job's stdout and stderr (paged: pass `stream_offset` = the previous \
        `next_offset` to continue) and the artifacts it wrote to $OUTPUT_DIR. Works while the \
        job runs (what exists so far) and after it ends.");
    CancelJob = "worker_cancel_job", CancelParams => Job, Some(
        "Cancel a job: a queued job never starts; a running job's whole process tree \
        gets SIGTERM, then SIGKILL after a grace period. Cancelling an ended job changes nothing.");
    ListSessions = "worker_list_sessions", ListParams => ListResult, Some(
        "List live jobs and retained ended ones, oldest first, optionally filtered by \
        status.");
    GetMetrics = "worker_get_metrics", MetricsParams => MetricsResult, Some(
        "Get the worker's counters (jobs by status and reason), queue depth, active \
        sessions, per-phase latency percentiles, uptime and host CPU and memory.");
    ApplyChanges = "worker_apply_changes", ApplyParams => ApplyResult, Some(
        "Write the changes an ended `overlay` job made (its result's `changes`) into \
        the project: all of them, or the listed `paths`. Each path answers `applied`, \
        `conflict` (it changed on disk since the job ended: left alone) or `skipped` \
        (protected, or not in the change set).");
    DiscardChanges = "worker_discard_changes", JobRef => DiscardResult, Some(
        "Drop the pending changes of an ended `overlay` job without applying them.");
    GetChanges = "worker_get_changes", GetChangesParams => ChangesPage, Some(
        "Page through the diff of an ended `overlay` job's pending changes when its \
        result's `changes.diff.truncated` is true: pass `offset` (the previous page's `offset` \
        plus the byte length of its `text`) and optionally `max_bytes`.");
    /// Stops the worker as stdin EOF does.
    Shutdown = "shutdown", ShutdownParams => Empty, None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names = METHOD_NAMES.to_vec();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), METHOD_NAMES.len());
    }
}
