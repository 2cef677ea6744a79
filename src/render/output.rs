//! A page of output (`worker_collect_output` results).

use super::job::{artifacts, metrics};
use super::*;
use crate::protocol::table::{CollectOutput, Method};
use serde_json::json;

pub fn output(page: &Value) -> String {
    let id = page.get("job_id").cloned().unwrap_or(Value::Null);
    let mut out = vec![format!(
        "job {} | status: {}{}",
        string(page, "job_id").unwrap_or("?"),
        string(page, "status").unwrap_or("unknown"),
        string(page, "phase")
            .map(|p| format!(" | phase: {p}"))
            .unwrap_or_default()
    )];
    if !is_terminal(page.get("status").unwrap_or(&Value::Null)) {
        out.push("The job has NOT finished yet: this is its output so far.".into());
    }
    let streams: Vec<(&str, &Value)> = ["stdout", "stderr"]
        .into_iter()
        .filter_map(|name| page.get(name).filter(|p| p.is_object()).map(|p| (name, p)))
        .collect();
    let has_artifacts = page
        .get("artifacts")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let artifact_budget = if has_artifacts { 16 * 1024 } else { 0 };
    let per = (BUDGET_BYTES - 2048 - artifact_budget) / streams.len().max(1);
    let line_budget = (BUDGET_LINES - 60) / streams.len().max(1);
    let mut next_pages: Vec<(&str, u64)> = Vec::new();
    for (name, stream) in streams {
        let data = string(stream, "data").unwrap_or("");
        let offset = count(stream, "offset").unwrap_or(0);
        let total = count(stream, "total_bytes");
        let kept_bytes = count(stream, "kept_bytes");
        let mut next = count(stream, "next_offset").unwrap_or(offset + data.len() as u64);
        let eof = stream.get("eof") == Some(&Value::Bool(true));
        let head_line = format!(
            "--- {name}: bytes {offset}-{next}{}{}{}{} ---",
            kept_bytes
                .map(|k| format!(" of {k} kept"))
                .unwrap_or_default(),
            match total {
                Some(t) if Some(t) != kept_bytes => format!(" ({t} written)"),
                _ => String::new(),
            },
            if eof { ", end" } else { "" },
            if stream.get("truncated") == Some(&Value::Bool(true)) {
                "; the output limit was hit: bytes past the kept ones are lost"
            } else {
                ""
            },
        );
        if string(stream, "encoding") == Some("base64") {
            out.push(format!("{head_line} binary (base64):"));
            out.push(head(data, per.min(8192), 50).to_owned());
        } else if data.is_empty() {
            out.push(head_line);
            out.push("(no data in this range)".into());
        } else {
            let kept = head(data, per, line_budget);
            if kept.len() < data.len() {
                next = offset + kept.len() as u64;
                out.push(format!(
                    "--- {name}: bytes {offset}-{next} (this page was clipped to fit; {} bytes kept in all) ---",
                    kept_bytes
                        .or(total)
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "?".into())
                ));
            } else {
                out.push(head_line);
            }
            out.push(kept.strip_suffix('\n').unwrap_or(kept).to_owned());
            out.push(format!("--- end of {name} page ---"));
        }
        let more = match kept_bytes.or(total) {
            Some(kept) => next < kept,
            None => stream.get("eof") == Some(&Value::Bool(false)),
        };
        if more {
            next_pages.push((name, next));
        }
    }
    if !next_pages.is_empty() {
        let from = next_pages.iter().map(|(_, o)| *o).min().unwrap_or(0);
        let both = next_pages.len() > 1 && next_pages[0].1 != next_pages[1].1;
        out.push(format!(
            "More output: {}. Next page: {}{}.",
            next_pages
                .iter()
                .map(|(s, o)| format!("{s} from byte {o}"))
                .collect::<Vec<_>>()
                .join(", "),
            call(
                CollectOutput::NAME,
                json!({ "job_id": id, "stream_offset": from, "max_bytes": PAGE_BYTES })
            ),
            if both {
                " (stream_offset applies to both streams)"
            } else {
                ""
            },
        ));
    }
    out.extend(artifacts(
        page.get("artifacts"),
        &id,
        if artifact_budget > 0 {
            artifact_budget
        } else {
            8 * 1024
        },
    ));
    if let Some(metrics) = metrics(page.get("metrics")) {
        out.push(metrics);
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_page_names_the_next_one() {
        let text = output(&json!({
            "job_id": "j", "status": "finished", "phase": "done",
            "stdout": {"data": "abc\n", "encoding": "utf8", "offset": 0, "next_offset": 4,
                       "kept_bytes": 10, "total_bytes": 10, "truncated": false, "eof": false},
        }));
        assert!(
            text.contains("--- stdout: bytes 0-4 of 10 kept ---\nabc\n--- end of stdout page ---"),
            "{text}"
        );
        assert!(text.contains(r#"Next page: worker_collect_output {"job_id":"j","max_bytes":32768,"stream_offset":4}."#), "{text}");
    }
}
