//! The text a model reads for each tool result: the status first, a head and a tail of each
//! output stream within the usual tool-output budget (OpenCode truncates beyond 2000 lines /
//! 50 KiB), the exact call that reads what was left out, and errors that say what to change.
//!
//! It reads results as JSON values, the wire shape, so it renders what any worker version
//! answered and stays one implementation for every surface (MCP, the plugin).

mod clip;
mod error;
mod job;
mod output;
pub mod wire;

pub use clip::{head, head_tail, line_count, share};
pub use error::error_text;
pub use job::{job, job_waited, status_line};
pub use output::output;

use serde_json::Value;

/// Bytes a rendering stays within, with room for the host's own notes.
pub const BUDGET_BYTES: usize = 48 * 1024;
/// Lines a rendering stays within.
pub const BUDGET_LINES: usize = 1900;
/// What a suggested page asks for as `max_bytes`.
pub const PAGE_BYTES: usize = 32 * 1024;

const TERMINAL: &[&str] = &["finished", "failed", "timeout", "cancelled", "killed"];

pub fn is_terminal(status: &Value) -> bool {
    status.as_str().is_some_and(|s| TERMINAL.contains(&s))
}

/// The text for a successful result of `method`.
pub fn result(method: &str, value: &Value) -> String {
    result_waited(method, value, None)
}

/// The same, saying how long the call waited when a job has not finished after a wait.
pub fn result_waited(method: &str, value: &Value, waited: Option<std::time::Duration>) -> String {
    use crate::protocol::table::{CancelJob, CollectOutput, DispatchJob, GetStatus, Method};
    match method {
        DispatchJob::NAME | GetStatus::NAME | CancelJob::NAME => job_waited(value, waited),
        CollectOutput::NAME => output(value),
        _ => generic(method, value),
    }
}

/// Any other result (sessions, metrics, changes): pretty JSON clipped to the budget.
pub fn generic(method: &str, value: &Value) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
    let c = head_tail(&text, BUDGET_BYTES - 512, BUDGET_LINES - 10, 0.7);
    if !c.clipped() {
        return text;
    }
    format!(
        "{}{}… [{} lines of the {method} result omitted] …\n{}",
        c.head,
        newline_after(c.head),
        c.omitted_lines,
        c.tail
    )
}

fn newline_after(text: &str) -> &'static str {
    if text.is_empty() || text.ends_with('\n') {
        ""
    } else {
        "\n"
    }
}

fn fmt_bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else if n < 1024 * 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / 1024.0 / 1024.0)
    }
}

/// A value for prose: strings as they are, anything else as JSON.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn string<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn number(value: &Value, key: &str) -> Option<f64> {
    value.get(key).and_then(Value::as_f64)
}

fn count(value: &Value, key: &str) -> Option<u64> {
    value.get(key).and_then(Value::as_u64)
}

/// The exact call a model makes next, as `tool {"arg": ...}`.
fn call(tool: &str, args: Value) -> String {
    format!("{tool} {args}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generic_clips_a_large_result() {
        let big: Vec<Value> = (0..5000).map(|i| json!({"job_id": i})).collect();
        let text = generic("worker_list_sessions", &json!({"sessions": big}));
        assert!(text.len() < BUDGET_BYTES);
        assert!(text.contains("lines of the worker_list_sessions result omitted"));
    }
}
