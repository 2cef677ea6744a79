//! Every error a client can get, with its stable JSON-RPC code and a `data` object that names the
//! field and the reason, so a model can correct its call.

use jsonrpsee::types::ErrorObjectOwned;
use serde_json::{Value, json};

pub mod code {
    pub const PARSE_ERROR: i32 = -32700;
    pub const INVALID_REQUEST: i32 = -32600;
    pub const METHOD_NOT_FOUND: i32 = -32601;
    pub const INVALID_PARAMS: i32 = -32602;
    pub const INTERNAL: i32 = -32603;
    pub const UNKNOWN_JOB: i32 = -32001;
    pub const POLICY_DENIED: i32 = -32002;
    pub const BUSY: i32 = -32003;
    pub const LIMIT_OVER_MAXIMUM: i32 = -32004;
    pub const DUPLICATE_JOB: i32 = -32005;
    pub const INVALID_FILES: i32 = -32006;
    pub const ISOLATION_UNAVAILABLE: i32 = -32007;
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum WorkerError {
    #[error("invalid params: `{field}` {reason}")]
    InvalidParams { field: String, reason: String },

    #[error("unknown job `{job_id}`: it never existed here or has left retention")]
    UnknownJob { job_id: String },

    #[error("{message}")]
    PolicyDenied { message: String, data: Value },

    #[error(
        "busy: {active} jobs running and {queued} queued (queue limit {limit}); retry later or cancel a job"
    )]
    Busy {
        active: u64,
        queued: u64,
        limit: u64,
    },

    #[error("the worker is shutting down and accepts no new jobs")]
    ShuttingDown,

    #[error("`{field}` is {requested}, above this worker's maximum of {maximum}")]
    LimitOverMaximum {
        field: String,
        /// JSON numbers for numeric limits, strings otherwise.
        requested: Value,
        maximum: Value,
    },

    #[error(
        "job id `{job_id}` is already in use by a live or retained job; pick another or omit job_id"
    )]
    DuplicateJob { job_id: String },

    #[error("invalid file `{path}`: {reason}")]
    InvalidFiles {
        field: String,
        path: String,
        reason: String,
    },

    #[error("{reason}")]
    IsolationUnavailable { layer: String, reason: String },

    #[error("internal error: {reason}")]
    Internal { reason: String },

    /// A remote worker's own error for a call routed to it, passed on unchanged (its `data`
    /// gains `worker`, the remote's configured name).
    #[error("{message}")]
    Remote {
        code: i32,
        message: String,
        data: Value,
    },
}

impl WorkerError {
    pub fn invalid_params(field: impl Into<String>, reason: impl Into<String>) -> Self {
        WorkerError::InvalidParams {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn internal(reason: impl std::fmt::Display) -> Self {
        WorkerError::Internal {
            reason: reason.to_string(),
        }
    }

    pub fn code(&self) -> i32 {
        match self {
            WorkerError::InvalidParams { .. } => code::INVALID_PARAMS,
            WorkerError::UnknownJob { .. } => code::UNKNOWN_JOB,
            WorkerError::PolicyDenied { .. } => code::POLICY_DENIED,
            WorkerError::Busy { .. } | WorkerError::ShuttingDown => code::BUSY,
            WorkerError::LimitOverMaximum { .. } => code::LIMIT_OVER_MAXIMUM,
            WorkerError::DuplicateJob { .. } => code::DUPLICATE_JOB,
            WorkerError::InvalidFiles { .. } => code::INVALID_FILES,
            WorkerError::IsolationUnavailable { .. } => code::ISOLATION_UNAVAILABLE,
            WorkerError::Internal { .. } => code::INTERNAL,
            WorkerError::Remote { code, .. } => *code,
        }
    }

    pub fn data(&self) -> Value {
        match self {
            WorkerError::InvalidParams { field, reason } => {
                json!({"field": field, "reason": reason})
            }
            WorkerError::UnknownJob { job_id } | WorkerError::DuplicateJob { job_id } => {
                json!({"field": "job_id", "job_id": job_id})
            }
            WorkerError::PolicyDenied { data, .. } => data.clone(),
            WorkerError::Busy {
                active,
                queued,
                limit,
            } => json!({"active": active, "queued": queued, "limit": limit}),
            WorkerError::ShuttingDown => json!({"reason": "shutting down"}),
            WorkerError::LimitOverMaximum {
                field,
                requested,
                maximum,
            } => json!({
                "field": field,
                "limit": field.rsplit('.').next().unwrap_or(field),
                "requested": requested,
                "maximum": maximum,
            }),
            WorkerError::InvalidFiles {
                field,
                path,
                reason,
            } => json!({"field": field, "path": path, "reason": reason}),
            WorkerError::IsolationUnavailable { layer, reason } => {
                json!({"field": "isolation", "layer": layer, "reason": reason})
            }
            WorkerError::Internal { reason } => json!({"reason": reason}),
            WorkerError::Remote { data, .. } => data.clone(),
        }
    }
}

impl From<WorkerError> for ErrorObjectOwned {
    fn from(error: WorkerError) -> Self {
        ErrorObjectOwned::owned(error.code(), error.to_string(), Some(error.data()))
    }
}

/// A protocol-level error object for replies the framing layer builds itself.
pub fn protocol_error(code: i32, message: &str, data: Value) -> Value {
    json!({"code": code, "message": message, "data": data})
}
