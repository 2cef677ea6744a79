//! The single way to stdout: every reply and notification line goes through one channel to the
//! one writer task, and the lines waiting there are bounded in bytes, so a client that stops
//! reading back-pressures the senders instead of growing the worker's memory.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Bytes of lines that may wait for the writer.
pub const OUTBOX_BYTES: usize = 8 << 20;

/// A line for stdout (without its newline), holding its share of the byte budget until written.
pub struct Line {
    pub text: String,
    _permit: Option<OwnedSemaphorePermit>,
}

#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Line>,
    budget: Arc<Semaphore>,
    max: usize,
}

pub fn outbox(budget_bytes: usize) -> (Outbox, mpsc::UnboundedReceiver<Line>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let budget = budget_bytes.clamp(1, Semaphore::MAX_PERMITS);
    (
        Outbox {
            tx,
            budget: Arc::new(Semaphore::new(budget)),
            max: budget,
        },
        rx,
    )
}

impl Outbox {
    /// Queues a line, waiting while the lines already queued use up the budget (a line larger
    /// than the whole budget waits until it has the budget to itself). False once the writer
    /// is gone.
    pub async fn send(&self, text: String) -> bool {
        let cost = (text.len() + 1).min(self.max) as u32;
        let permit = self.budget.clone().acquire_many_owned(cost).await.ok();
        self.tx
            .send(Line {
                text,
                _permit: permit,
            })
            .is_ok()
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_in_bytes() {
        let (out, mut rx) = outbox(10);
        assert!(out.send("12345678".into()).await);
        use futures::FutureExt;
        let blocked = out.send("abcd".into()).now_or_never();
        assert!(blocked.is_none(), "a second line over budget must wait");
        let first = rx.recv().await.unwrap();
        assert_eq!(first.text, "12345678");
        drop(first);
        assert!(out.send("abcd".into()).await);
        assert_eq!(rx.recv().await.unwrap().text, "abcd");
    }
}
