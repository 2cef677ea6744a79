//! An error reply as text that names the field or rule at fault and what to change.

use super::*;
use crate::error::code;

fn code_name(code: i64) -> &'static str {
    match code as i32 {
        code::PARSE_ERROR => "parse error",
        code::INVALID_REQUEST => "invalid request",
        code::METHOD_NOT_FOUND => "method not found",
        code::INVALID_PARAMS => "invalid params",
        code::INTERNAL => "internal error",
        code::UNKNOWN_JOB => "unknown job",
        code::POLICY_DENIED => "policy denied",
        code::BUSY => "busy",
        code::LIMIT_OVER_MAXIMUM => "limit over maximum",
        code::DUPLICATE_JOB => "duplicate job id",
        code::INVALID_FILES => "invalid files",
        code::ISOLATION_UNAVAILABLE => "isolation unavailable",
        _ => "error",
    }
}

/// What the model should change, from the error's code and `data`.
fn advice(code: i64, data: &Value) -> String {
    let field = string(data, "field");
    let reason = string(data, "reason");
    let quoted = |v: Option<&Value>| {
        v.cloned()
            .unwrap_or(Value::String(String::new()))
            .to_string()
    };
    match code as i32 {
        code::INVALID_PARAMS => format!(
            "Invalid arguments{}{}. Fix {} to match the tool's parameter schema and call again.",
            field.map(|f| format!(": field `{f}`")).unwrap_or_default(),
            reason.map(|r| format!(" — {r}")).unwrap_or_default(),
            field.map(|f| format!("`{f}`")).unwrap_or_else(|| "the arguments".into()),
        ),
        code::UNKNOWN_JOB => format!(
            "Unknown job {}: no such job (never dispatched, or it expired from retention). List known jobs with worker_list_sessions.",
            quoted(data.get("job_id"))
        ),
        code::POLICY_DENIED => {
            let bits: Vec<String> = [("reason", "reason"), ("rule", "rule"), ("program", "program")]
                .into_iter()
                .filter_map(|(key, label)| string(data, key).map(|v| format!("{label}: {v}")))
                .collect();
            let at = match (data.get("span").and_then(Value::as_array), string(data, "command")) {
                (Some(span), Some(command)) if span.len() == 2 => {
                    let from = span[0].as_u64().unwrap_or(0) as usize;
                    let to = span[1].as_u64().unwrap_or(0) as usize;
                    command
                        .get(from..to)
                        .map(|part| format!(" (at {from}-{to}: `{part}`)"))
                        .unwrap_or_default()
                }
                _ => String::new(),
            };
            format!(
                "The command was refused by the worker's policy{at}; {}. Do not retry the same command: use an allowed program or ask the user.",
                bits.join(", ")
            )
        }
        code::BUSY => format!(
            "The worker is at capacity (active {}, queued {}, limit {}). Wait for running jobs to end (worker_get_status) or cancel some (worker_cancel_job), then retry.",
            shown(data.get("active")),
            shown(data.get("queued")),
            shown(data.get("limit")),
        ),
        code::LIMIT_OVER_MAXIMUM => {
            let maximum = data.get("maximum").map(plain).unwrap_or_else(|| "?".into());
            format!(
                "`{}` asks for {} but this worker's maximum is {maximum}. Ask for at most {maximum} (or leave it out to get the default).",
                field.or(string(data, "limit")).unwrap_or("a limit"),
                data.get("requested").map(plain).unwrap_or_else(|| "?".into()),
            )
        }
        code::DUPLICATE_JOB => format!(
            "A job with id {} already exists. Choose a different job_id, or leave job_id out to get a generated one.",
            quoted(data.get("job_id"))
        ),
        code::INVALID_FILES => format!(
            "Invalid files{}{}. Use relative paths inside the work dir (no absolute paths, no \"..\") within the size cap.",
            data.get("path").map(|p| format!(" entry {p}")).unwrap_or_default(),
            reason.map(|r| format!(" — {r}")).unwrap_or_default(),
        ),
        code::ISOLATION_UNAVAILABLE => format!(
            "This host cannot enforce the isolation asked for{}. Ask for a weaker profile or run `opencode-worker doctor` on the host for the fix.",
            string(data, "layer").map(|l| format!(" (layer {l})")).unwrap_or_default(),
        ),
        code::METHOD_NOT_FOUND => "This opencode-worker does not know the method: the client and the binary are different versions. Update one of them.".into(),
        code::INTERNAL => format!(
            "opencode-worker hit an internal error{}. This is a bug in opencode-worker, not in your arguments; retrying may work.",
            reason.map(|r| format!(" ({r})")).unwrap_or_default(),
        ),
        _ => reason.unwrap_or_default().to_owned(),
    }
}

fn shown(value: Option<&Value>) -> String {
    value.map(plain).unwrap_or_else(|| "?".into())
}

/// The text for a JSON-RPC error object (`code`, `message`, `data`) that `tool` answered.
pub fn error_text(tool: &str, error: &Value) -> String {
    let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
    let message = string(error, "message").unwrap_or("");
    let data = error.get("data").cloned().unwrap_or(Value::Null);
    let details = if data.is_null() {
        String::new()
    } else {
        format!("\ndetails: {data}")
    };
    format!(
        "{tool} failed: {} ({code}): {message}\n{}{details}",
        code_name(code),
        advice(code, &data)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn invalid_params_names_the_field_and_the_fix() {
        let text = error_text(
            "worker_dispatch_job",
            &json!({"code": -32602, "message": "invalid params: `limits.memory` bad",
                    "data": {"field": "limits.memory", "reason": "bad"}}),
        );
        assert!(text.starts_with("worker_dispatch_job failed: invalid params (-32602)"));
        assert!(
            text.contains("Invalid arguments: field `limits.memory` — bad. Fix `limits.memory`")
        );
    }

    #[test]
    fn a_refusal_names_the_rule_and_the_part_refused() {
        let text = error_text(
            "worker_dispatch_job",
            &json!({"code": -32002, "message": "refused",
                    "data": {"rule": "no-sudo", "reason": "root", "command": "x; sudo y", "span": [3, 7]}}),
        );
        assert!(text.contains("(at 3-7: `sudo`)"), "{text}");
        assert!(text.contains("reason: root, rule: no-sudo"), "{text}");
    }
}
