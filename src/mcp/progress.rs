//! Progress notifications while a dispatch call waits: the job's status, the time since the
//! call began and its last output line, from the job's own event stream.

use super::seam::Methods;
use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::{Peer, RoleServer};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A notification at least this often while nothing changes, so a client sees the wait is alive.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Output alone does not notify more often than this.
const OUTPUT_PACE: Duration = Duration::from_millis(250);
/// How long to look for the job before its dispatch has admitted it.
const FIND_PACE: Duration = Duration::from_millis(10);
/// Longest last line carried in a message.
const LINE_CHARS: usize = 200;

/// Reports until the returned token is cancelled (the call answered or was cancelled).
pub fn spawn(
    methods: Arc<Methods>,
    peer: Peer<RoleServer>,
    token: ProgressToken,
    job_id: String,
) -> CancellationToken {
    let done = CancellationToken::new();
    let stop = done.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = report(methods, peer, token, job_id) => {}
        }
    });
    done
}

#[derive(Default)]
struct Seen {
    status: String,
    last_line: String,
    partial: String,
}

impl Seen {
    fn output(&mut self, data: &str) {
        self.partial.push_str(data);
        if let Some(end) = self.partial.rfind('\n') {
            let complete = &self.partial[..end];
            if let Some(line) = complete.rsplit('\n').find(|l| !l.trim().is_empty()) {
                self.last_line = line.chars().take(LINE_CHARS).collect();
            }
            self.partial.drain(..=end);
        }
        if self.partial.len() > 64 * 1024 {
            self.partial.clear();
        }
    }

    fn message(&self, elapsed: Duration) -> String {
        let mut text = format!(
            "{}, {:.1} s",
            if self.status.is_empty() {
                "queued"
            } else {
                &self.status
            },
            elapsed.as_secs_f64()
        );
        if !self.last_line.is_empty() {
            text.push_str(": ");
            text.push_str(&self.last_line);
        }
        text
    }
}

async fn report(
    methods: Arc<Methods>,
    peer: Peer<RoleServer>,
    token: ProgressToken,
    job_id: String,
) {
    let began = Instant::now();
    let mut events = loop {
        match methods.follow(&job_id).await {
            Ok(events) => break events,
            // The dispatch call has not admitted the job yet.
            Err(_) => tokio::time::sleep(FIND_PACE).await,
        }
    };
    let mut seen = Seen::default();
    let mut count = 0u64;
    let mut last_sent = Instant::now() - HEARTBEAT;
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    loop {
        let urgent = tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { return };
                match event.get("kind").and_then(Value::as_str) {
                    Some(kind @ ("state" | "end")) => {
                        let holder = if kind == "end" { &event["job"] } else { &event };
                        // A phase change alone waits for the pace; a new status is news.
                        match holder.get("status").and_then(Value::as_str) {
                            Some(status) if status != seen.status => {
                                seen.status = status.to_owned();
                                true
                            }
                            _ => false,
                        }
                    }
                    Some("stdout" | "stderr") if event["encoding"] == "utf8" => {
                        if let Some(data) = event.get("data").and_then(Value::as_str) {
                            seen.output(data);
                        }
                        false
                    }
                    _ => false,
                }
            }
            _ = heartbeat.tick() => true,
        };
        if !urgent && last_sent.elapsed() < OUTPUT_PACE {
            continue;
        }
        count += 1;
        last_sent = Instant::now();
        let note = ProgressNotificationParam::new(token.clone(), count as f64)
            .with_message(seen.message(began.elapsed()));
        if peer.notify_progress(note).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_complete_line() {
        let mut seen = Seen::default();
        seen.output("one\ntw");
        assert_eq!(seen.last_line, "one");
        seen.output("o\nthr");
        assert_eq!(seen.last_line, "two");
        seen.status = "running".into();
        assert_eq!(
            seen.message(Duration::from_millis(1500)),
            "running, 1.5 s: two"
        );
    }
}
