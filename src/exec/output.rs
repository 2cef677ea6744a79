//! Output capture: keep up to the limit, count the rest, never buffer beyond it.

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Notify;

/// Sees every chunk as it arrives (the job's event log).
pub type Tap = Box<dyn Fn(&[u8]) + Send>;

#[derive(Default)]
pub struct StreamBuffer {
    kept: Vec<u8>,
    total: u64,
    cap: u64,
    /// Bytes kept in memory: the cap, or less when the worker keeps less than the limit.
    keep: u64,
    tap: Option<Tap>,
}

impl std::fmt::Debug for StreamBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamBuffer")
            .field("kept", &self.kept.len())
            .field("total", &self.total)
            .field("cap", &self.cap)
            .field("keep", &self.keep)
            .finish()
    }
}

impl StreamBuffer {
    pub fn new(cap: u64) -> Self {
        StreamBuffer {
            kept: Vec::new(),
            total: 0,
            cap,
            keep: cap,
            tap: None,
        }
    }

    /// Keeps at most `keep` bytes in memory (the limit still decides when the job is killed)
    /// and shows every chunk to `tap`.
    pub fn with(mut self, keep: Option<u64>, tap: Option<Tap>) -> Self {
        self.keep = keep.map_or(self.cap, |keep| keep.min(self.cap));
        self.tap = tap;
        self
    }

    /// Appends what fits and counts the rest; true once the stream has gone past its cap.
    pub fn append(&mut self, chunk: &[u8]) -> bool {
        if let Some(tap) = &self.tap {
            tap(chunk);
        }
        self.total += chunk.len() as u64;
        let room = self.keep.saturating_sub(self.kept.len() as u64) as usize;
        self.kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        self.total > self.cap
    }

    pub fn kept(&self) -> &[u8] {
        &self.kept
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// True once more than the cap was written: the job broke its output limit, however
    /// the race between its exit and the pump's notice went.
    pub fn over_cap(&self) -> bool {
        self.total > self.cap
    }

    pub fn truncated(&self) -> bool {
        self.total > self.kept.len() as u64
    }
}

/// Drains `reader` into `buffer` until EOF. `over_limit` is notified once, the first time the
/// stream passes its cap; reading goes on so the writer never blocks on a full pipe.
pub async fn pump<R: AsyncRead + Unpin>(
    mut reader: R,
    buffer: Arc<Mutex<StreamBuffer>>,
    over_limit: Arc<Notify>,
) {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut announced = false;
    loop {
        let read = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let over = buffer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .append(&chunk[..read]);
        if over && !announced {
            announced = true;
            over_limit.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_up_to_the_cap_and_counts_the_rest() {
        let mut buffer = StreamBuffer::new(5);
        assert!(!buffer.append(b"abc"));
        assert!(!buffer.append(b"de"));
        assert!(buffer.append(b"fgh"));
        assert_eq!(buffer.kept(), b"abcde");
        assert_eq!(buffer.total(), 8);
        assert!(buffer.truncated());
    }
}
