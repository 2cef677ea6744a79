//! A job (dispatch, status, cancel results).

use super::*;
use crate::protocol::table::{CancelJob, CollectOutput, GetStatus, Method};
use serde_json::json;

pub fn status_line(job: &Value) -> String {
    let mut parts = vec![
        format!("job {}", string(job, "job_id").unwrap_or("?")),
        format!("status: {}", string(job, "status").unwrap_or("unknown")),
    ];
    if let Some(code) = job.get("exit_code").and_then(Value::as_i64) {
        parts.push(format!("exit code: {code}"));
    }
    if let Some(signal) = job.get("signal").filter(|s| !s.is_null()) {
        parts.push(format!("signal: {signal}"));
    }
    if let Some(reason) = string(job, "reason") {
        parts.push(format!("reason: {reason}"));
    }
    parts.join(" | ")
}

/// Seconds between `started_at` and `ended_at`, from their RFC 3339 text.
fn ran(job: &Value) -> Option<String> {
    let at = |key| humantime::parse_rfc3339_weak(string(job, key)?).ok();
    let ms = at("ended_at")?.duration_since(at("started_at")?).ok()?;
    Some(format!("{:.3} s", ms.as_secs_f64()))
}

pub fn job(job: &Value) -> String {
    job_waited(job, None)
}

/// `waited`: how long the call waited for the job, said when it has not finished.
pub fn job_waited(job: &Value, waited: Option<std::time::Duration>) -> String {
    let id = job.get("job_id").cloned().unwrap_or(Value::Null);
    let mut out = vec![status_line(job)];
    let mut meta = Vec::new();
    if let Some(phase) = string(job, "phase") {
        meta.push(format!("phase: {phase}"));
    }
    if let Some(ran) = ran(job) {
        meta.push(format!("ran: {ran}"));
    }
    if let Some(worker) = string(job, "worker") {
        meta.push(format!("worker: {worker}"));
    }
    if let Some(session) = string(job, "session_id") {
        meta.push(format!("session: {session}"));
    }
    if !meta.is_empty() {
        out.push(meta.join(" | "));
    }
    if let Some(message) = string(job, "message") {
        out.push(format!("message: {message}"));
    }
    if let Some(denied) = denied(job.get("network_denied")) {
        out.push(denied);
    }
    let status = job.get("status").cloned().unwrap_or(Value::Null);
    if !is_terminal(&status) {
        let by_id = json!({ "job_id": id });
        out.push(format!(
            "The job has NOT finished yet (status {}{}). Poll it with {}, read its output so far with {}, or stop it with {}.",
            string(job, "status").unwrap_or("unknown"),
            waited
                .map(|w| format!(", after waiting {:.1} s", w.as_secs_f64()))
                .unwrap_or_default(),
            call(GetStatus::NAME, by_id.clone()),
            call(CollectOutput::NAME, by_id.clone()),
            call(CancelJob::NAME, by_id),
        ));
    }
    let streams: Vec<(&str, &str)> = ["stdout", "stderr"]
        .into_iter()
        .filter_map(|name| string(job, name).map(|text| (name, text)))
        .collect();
    // A small stream keeps all of its text; the other gets the rest of the budget.
    let bytes = share(
        &streams.iter().map(|(_, t)| t.len()).collect::<Vec<_>>(),
        BUDGET_BYTES - 2048,
    );
    let lines = share(
        &streams
            .iter()
            .map(|(_, t)| line_count(t))
            .collect::<Vec<_>>(),
        BUDGET_LINES - 40,
    );
    for (i, (name, text)) in streams.iter().enumerate() {
        out.extend(stream(name, text, job, &id, bytes[i], lines[i]));
    }
    for name in ["stdout", "stderr"] {
        if string(job, name).is_none()
            && let Some(total) = count(job, &format!("{name}_bytes"))
        {
            out.push(format!(
                "{name}: {} (read it with {})",
                fmt_bytes(total),
                call(CollectOutput::NAME, json!({ "job_id": id }))
            ));
        }
    }
    out.extend(artifacts(job.get("artifacts"), &id, 8 * 1024));
    if let Some(metrics) = metrics(job.get("metrics")) {
        out.push(metrics);
    }
    out.join("\n")
}

fn stream(
    name: &str,
    data: &str,
    job: &Value,
    id: &Value,
    max_bytes: usize,
    max_lines: usize,
) -> Vec<String> {
    let stored = data.len() as u64;
    let total = count(job, &format!("{name}_bytes"));
    let truncated = job.get(format!("{name}_truncated")) == Some(&Value::Bool(true));
    let size = match total {
        Some(total) if total != stored => {
            format!("{} written, {} kept", fmt_bytes(total), fmt_bytes(stored))
        }
        _ => fmt_bytes(stored),
    };
    let mut lines = Vec::new();
    if stored == 0 {
        lines.push(format!("--- {name}: (empty) ---"));
    } else if string(job, &format!("{name}_encoding")) == Some("base64") {
        lines.push(format!("--- {name}: {size}, binary (base64) ---"));
        let kept = head(data, max_bytes.min(4096), 10);
        let mut text = kept.to_owned();
        if kept.len() < data.len() {
            text.push_str(&format!(
                "\n… (binary output; page it with {})",
                call(CollectOutput::NAME, json!({ "job_id": id }))
            ));
        }
        lines.push(text);
    } else {
        let c = head_tail(data, max_bytes, max_lines, 0.4);
        lines.push(format!("--- {name}: {size} ---"));
        if c.clipped() {
            lines.push(format!(
                "{}{}… [{}, {} lines omitted: {name} bytes {}-{}. Read them with {} and continue from the returned next_offset] …\n{}",
                c.head,
                newline_after(c.head),
                fmt_bytes((c.omitted_to - c.omitted_from) as u64),
                c.omitted_lines,
                c.omitted_from,
                c.omitted_to,
                call(
                    CollectOutput::NAME,
                    json!({ "job_id": id, "stream_offset": c.omitted_from, "max_bytes": PAGE_BYTES })
                ),
                c.tail.strip_suffix('\n').unwrap_or(c.tail),
            ));
        } else {
            lines.push(data.strip_suffix('\n').unwrap_or(data).to_owned());
        }
        lines.push(format!("--- end of {name} ---"));
    }
    if truncated {
        lines.push(format!(
            "note: {name} went over the job's output limit; only the first {} were kept{}. Re-run with a larger limits.output (bytes per stream) or write large results to $OUTPUT_DIR as artifacts.",
            fmt_bytes(stored),
            total.map(|t| format!(" of {}", fmt_bytes(t))).unwrap_or_default()
        ));
    }
    lines
}

/// Destinations the job's egress allowlist refused: the model can tell the user what to allow.
pub(super) fn denied(denied: Option<&Value>) -> Option<String> {
    let items: Vec<String> = denied?
        .as_array()?
        .iter()
        .filter_map(|d| {
            let host = string(d, "host")?;
            let port = count(d, "port")?;
            Some(match count(d, "count") {
                Some(n) if n > 1 => format!("{host}:{port} ({n}x)"),
                _ => format!("{host}:{port}"),
            })
        })
        .collect();
    if items.is_empty() {
        return None;
    }
    Some(format!(
        "network denied by the job's egress allowlist: {}. If the job needs them, ask the user to allow them (the job's network.allow, or a set in the worker's network.allowlists).",
        items.join(", ")
    ))
}

/// One line: where the time went and what the job used.
pub(super) fn metrics(metrics: Option<&Value>) -> Option<String> {
    let m = metrics.filter(|m| m.is_object())?;
    let ms = |key: &str| number(m, key).map(|v| format!("{v:.1} ms"));
    let mut bits = Vec::new();
    if let Some(total) = ms("total_ms") {
        bits.push(format!("total {total}"));
    }
    for phase in ["queue", "prepare", "spawn", "execute", "collect", "destroy"] {
        if let Some(v) = ms(&format!("{phase}_ms")) {
            bits.push(format!("{phase} {v}"));
        }
    }
    if let Some(v) = ms("cpu_user_ms") {
        bits.push(format!("cpu user {v}"));
    }
    if let Some(v) = ms("cpu_system_ms") {
        bits.push(format!("cpu sys {v}"));
    }
    if let Some(rss) = count(m, "max_rss_bytes") {
        bits.push(format!("max rss {}", fmt_bytes(rss)));
    }
    if let Some(limits) = m.get("limits").filter(|l| l.is_object()) {
        bits.push(format!("limits {limits}"));
    }
    (!bits.is_empty()).then(|| format!("metrics: {}", bits.join(", ")))
}

pub(super) fn artifacts(artifacts: Option<&Value>, id: &Value, max_content: usize) -> Vec<String> {
    let Some(list) = artifacts
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
    else {
        return Vec::new();
    };
    let mut out = vec![format!("artifacts ({}):", list.len())];
    let mut budget = max_content;
    for a in list.iter().take(200) {
        let size = count(a, "size")
            .map(fmt_bytes)
            .unwrap_or_else(|| "? B".into());
        let sha = string(a, "sha256")
            .map(|s| format!(", sha256 {s}"))
            .unwrap_or_default();
        out.push(format!(
            "- {} ({size}{sha})",
            string(a, "path").unwrap_or("?")
        ));
        let Some(content) = string(a, "content") else {
            continue;
        };
        if string(a, "encoding") == Some("base64") {
            out.push(format!(
                "  (binary content, {} base64 characters, not shown)",
                content.len()
            ));
        } else if budget > 0 {
            let kept = head(content, budget, 400);
            budget -= kept.len();
            out.push(
                kept.strip_suffix('\n')
                    .unwrap_or(kept)
                    .split('\n')
                    .map(|l| format!("  | {l}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
            if kept.len() < content.len() {
                out.push(format!(
                    "  … (content clipped; read it whole with {})",
                    call(
                        CollectOutput::NAME,
                        json!({ "job_id": id, "include_artifacts": true })
                    )
                ));
            }
        } else {
            out.push("  (content not shown: output budget used up)".into());
        }
    }
    if list.len() > 200 {
        out.push(format!("… and {} more", list.len() - 200));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_job_reads_status_output_and_artifacts() {
        let text = job(&json!({
            "job_id": "j1", "status": "finished", "phase": "done", "exit_code": 0,
            "started_at": "2026-11-30T00:00:00.000Z", "ended_at": "2026-11-30T00:00:01.500Z",
            "stdout": "hello\n", "stdout_bytes": 6, "stderr": "",
            "artifacts": [{"path": "r.txt", "size": 3, "content": "ok\n"}],
            "metrics": {"total_ms": 3.25}
        }));
        assert!(
            text.starts_with("job j1 | status: finished | exit code: 0\n"),
            "{text}"
        );
        assert!(text.contains("ran: 1.500 s"), "{text}");
        assert!(text.contains("--- stdout: 6 B ---\nhello\n--- end of stdout ---"));
        assert!(text.contains("--- stderr: (empty) ---"));
        assert!(text.contains("- r.txt (3 B)\n  | ok"));
        assert!(text.contains("metrics: total 3.2 ms") || text.contains("metrics: total 3.3 ms"));
        assert!(!text.contains("NOT finished"));
    }

    #[test]
    fn a_long_output_names_the_call_that_reads_the_middle() {
        let out: String = (0..100_000).map(|i| format!("{i}\n")).collect();
        let text = job(&json!({"job_id": "j", "status": "finished", "stdout": out}));
        assert!(text.len() < BUDGET_BYTES, "{}", text.len());
        assert!(
            text.contains(
                r#"worker_collect_output {"job_id":"j","max_bytes":32768,"stream_offset":"#
            )
        );
        assert!(text.contains("99999\n--- end of stdout ---"));
    }

    #[test]
    fn a_running_job_says_how_to_follow_it() {
        let text = job(&json!({"job_id": "j", "status": "running"}));
        assert!(text.contains(r#"The job has NOT finished yet (status running). Poll it with worker_get_status {"job_id":"j"}"#));
    }
}
