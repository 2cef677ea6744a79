//! The job event stream: `worker_subscribe_job` and the `worker_job_event` notifications it
//! sends. Not a tool (tools are request/response); a client that keeps the connection open
//! follows a job with it.

use super::{FileEncoding, Job, JobStatus, Phase};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Method that opens a subscription; its result is the subscription id.
pub const SUBSCRIBE_METHOD: &str = "worker_subscribe_job";
/// Notification method of every event.
pub const EVENT_METHOD: &str = "worker_job_event";
/// Method that closes a subscription: params `[id]` or `{"subscription": id}`; result a bool.
pub const UNSUBSCRIBE_METHOD: &str = "worker_unsubscribe_job";

/// Params of `worker_subscribe_job`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeParams {
    /// The job's id, as returned by `worker_dispatch_job`.
    pub job_id: String,
    /// Send only events with a larger `seq` (resume after a reconnect). Default 0: everything
    /// still held. When the job has ended and `after_seq` is at or past its `end` event, the
    /// `end` event is sent again so every subscription finishes with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<u64>,
}

/// Params of `worker_unsubscribe_job` in the named form.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeParams {
    /// The id `worker_subscribe_job` returned.
    pub subscription: serde_json::Value,
}

/// One event of a job, the `result` of a `worker_job_event` notification.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct JobEvent {
    pub job_id: String,
    /// 1, 2, 3, ... per job, without gaps. A `lagged` event takes the seq of the last event
    /// it stands for, so the seqs a subscriber sees stay contiguous.
    pub seq: u64,
    #[serde(flatten)]
    pub body: JobEventBody,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobEventBody {
    /// The job changed status or phase.
    State {
        status: JobStatus,
        phase: Phase,
        /// Milliseconds since the job was admitted.
        elapsed_ms: f64,
    },
    /// A chunk the job wrote to its standard output.
    Stdout(OutputChunk),
    /// A chunk the job wrote to its standard error.
    Stderr(OutputChunk),
    /// The last event: the job's result as `worker_get_status` returns it (output bodies come
    /// through the stream or `worker_collect_output`).
    End { job: Box<Job> },
    /// This subscriber fell behind the bounded history and missed the events
    /// `first_missed_seq..=seq`.
    Lagged {
        first_missed_seq: u64,
        missed_events: u64,
        /// Output bytes in the missed events, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        missed_bytes: Option<u64>,
    },
}

/// A piece of one output stream, cut on UTF-8 character boundaries when the text is UTF-8.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct OutputChunk {
    /// The bytes: text when `encoding` is `utf8`, base64 when they are not valid UTF-8.
    pub data: String,
    pub encoding: FileEncoding,
    /// Where the chunk starts in its stream (bytes the job wrote to it before).
    pub offset: u64,
    /// Raw bytes in the chunk.
    pub bytes: u64,
}

/// Every `worker_job_event` notification: `params.subscription` is the id the subscribe call
/// returned, `params.result` is the event.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct JobEventNotification {
    pub subscription: serde_json::Value,
    pub result: JobEvent,
}
