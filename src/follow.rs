//! `opencode-worker run --follow`: the job's output as it is written, from its event log. On
//! a terminal, a progress line (status, elapsed time, bytes so far) stays at the bottom of
//! stderr; otherwise only the output itself is written, line by line as it comes.

use crate::eventlog::{EventLog, Item, Payload, Stream};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Redraws of the progress line at most this often.
const REDRAW: Duration = Duration::from_millis(100);

struct Progress {
    enabled: bool,
    shown: bool,
    last: Option<Instant>,
    started: Instant,
    status: String,
    bytes: [u64; 2],
    /// The terminal's cursor is inside a line of output: drawing would erase it.
    mid_line: bool,
}

impl Progress {
    fn clear(&mut self, err: &mut impl Write) {
        if self.shown {
            let _ = err.write_all(b"\r\x1b[2K");
            self.shown = false;
        }
    }

    fn draw(&mut self, err: &mut impl Write, force: bool) {
        if !self.enabled || self.mid_line {
            return;
        }
        if !force && self.last.is_some_and(|at| at.elapsed() < REDRAW) {
            return;
        }
        self.clear(err);
        let _ = write!(
            err,
            "\x1b[2m[{} {:.1}s | stdout {} | stderr {}]\x1b[0m",
            self.status,
            self.started.elapsed().as_secs_f64(),
            human(self.bytes[0]),
            human(self.bytes[1])
        );
        let _ = err.flush();
        self.shown = true;
        self.last = Some(Instant::now());
    }
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1 << 20 => format!("{:.1} KiB", b as f64 / 1024.0),
        b if b < 1 << 30 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b => format!("{:.2} GiB", b as f64 / (1 << 30) as f64),
    }
}

/// Writes the job's output live until its end event.
pub async fn follow(log: Arc<EventLog>) {
    let Ok(mut follower) = log.follow(0) else {
        return;
    };
    let mut progress = Progress {
        enabled: std::io::stderr().is_terminal(),
        shown: false,
        last: None,
        started: Instant::now(),
        status: "queued".into(),
        bytes: [0, 0],
        mid_line: false,
    };
    let mut ticker = tokio::time::interval(REDRAW);
    loop {
        let batch = tokio::select! {
            batch = follower.next_batch() => batch,
            _ = ticker.tick(), if progress.enabled => {
                progress.draw(&mut std::io::stderr().lock(), true);
                continue;
            }
        };
        let Some(batch) = batch else { break };
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        for item in batch {
            match item {
                Item::Event(_, payload) => match &*payload {
                    Payload::Output { stream, data, .. } => {
                        let data = data.as_bytes();
                        progress.clear(&mut err);
                        progress.mid_line = data.last() != Some(&b'\n');
                        match stream {
                            Stream::Stdout => {
                                progress.bytes[0] += data.len() as u64;
                                let _ = out.write_all(data);
                                let _ = out.flush();
                            }
                            Stream::Stderr => {
                                progress.bytes[1] += data.len() as u64;
                                let _ = err.write_all(data);
                            }
                        }
                    }
                    Payload::State { status, phase, .. } => {
                        progress.status = match status {
                            crate::protocol::JobStatus::Running => {
                                format!("{phase:?}").to_lowercase()
                            }
                            other => other.as_str().to_owned(),
                        };
                    }
                    Payload::End(_) => {}
                },
                Item::Lagged { missed_bytes, .. } => {
                    progress.clear(&mut err);
                    let _ = writeln!(
                        err,
                        "opencode-worker: output fell behind; {} not shown (worker_collect_output has what was kept)",
                        missed_bytes.map_or_else(|| "some output".into(), human)
                    );
                }
            }
        }
        progress.draw(&mut err, false);
    }
    progress.clear(&mut std::io::stderr().lock());
}
