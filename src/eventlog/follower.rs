//! Reading one job's log at the reader's own pace, and the process-wide count of readers.

use super::{EventLog, Item, Payload};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::watch;

/// Subscriptions open now, across all jobs (a gauge for the metrics).
static FOLLOWERS: AtomicU64 = AtomicU64::new(0);

pub fn followers() -> u64 {
    FOLLOWERS.load(Ordering::Relaxed)
}

pub(super) enum Read {
    Items(Vec<Item>),
    Wait,
}

/// Reads one job's events in order, at its own pace.
pub struct Follower {
    log: Arc<EventLog>,
    next: u64,
    seen_output: Option<u64>,
    latest: watch::Receiver<u64>,
    done: bool,
}

impl Drop for Follower {
    fn drop(&mut self) {
        FOLLOWERS.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Follower {
    pub(super) fn new(
        log: Arc<EventLog>,
        next: u64,
        seen_output: Option<u64>,
        latest: watch::Receiver<u64>,
    ) -> Follower {
        FOLLOWERS.fetch_add(1, Ordering::Relaxed);
        Follower {
            log,
            next,
            seen_output,
            latest,
            done: false,
        }
    }

    /// The next items, waiting for them; None after the `end` event was handed out.
    pub async fn next_batch(&mut self) -> Option<Vec<Item>> {
        if self.done {
            return None;
        }
        loop {
            self.latest.borrow_and_update();
            if let Read::Items(items) = self.log.read(self.next, self.seen_output) {
                for item in &items {
                    match item {
                        Item::Event(seq, payload) => {
                            self.next = seq + 1;
                            if let Some(seen) = &mut self.seen_output {
                                *seen += payload.output_bytes();
                            }
                            if matches!(**payload, Payload::End(_)) {
                                self.done = true;
                            }
                        }
                        Item::Lagged {
                            seq, missed_bytes, ..
                        } => {
                            self.next = seq + 1;
                            self.seen_output = match (self.seen_output, missed_bytes) {
                                (Some(seen), Some(missed)) => Some(seen + missed),
                                _ => None,
                            };
                        }
                    }
                }
                return Some(items);
            }
            if self.latest.changed().await.is_err() {
                return None;
            }
        }
    }
}
