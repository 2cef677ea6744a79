//! A job's event log: its state changes, output chunks and end, numbered 1, 2, 3, ... without
//! gaps, kept in a ring bounded in bytes. Subscribers (the JSON-RPC subscription, `run
//! --follow`) read it at their own pace with a [`Follower`]: the job never waits for them, and a
//! follower that falls behind the ring gets one `lagged` item naming what it missed.

//!
//! The ring and its writers live here; reading at a follower's pace is `follower.rs`, the wire
//! form of an item is `wire.rs`.

mod follower;
mod wire;

use crate::protocol::{Job, JobStatus, Phase};
use follower::Read;
pub use follower::{Follower, followers};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::watch;

/// Bookkeeping bytes charged per event on top of its payload.
const EVENT_OVERHEAD: usize = 96;
/// Events handed to a follower per read.
const BATCH: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

#[derive(Debug)]
pub enum Payload {
    State {
        status: JobStatus,
        phase: Phase,
        elapsed_ms: f64,
    },
    Output {
        stream: Stream,
        offset: u64,
        data: Output,
    },
    End(Box<Job>),
}

/// A chunk of output: text when the bytes are valid UTF-8 (never cut inside a character), raw
/// bytes when they are not.
#[derive(Debug)]
pub enum Output {
    Text(String),
    Bytes(Vec<u8>),
}

impl Output {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Output::Text(text) => text.as_bytes(),
            Output::Bytes(bytes) => bytes,
        }
    }

    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Payload {
    fn output_bytes(&self) -> u64 {
        match self {
            Payload::Output { data, .. } => data.len() as u64,
            _ => 0,
        }
    }

    fn cost(&self) -> usize {
        EVENT_OVERHEAD
            + match self {
                Payload::Output { data, .. } => data.len(),
                Payload::End(_) => 1024,
                Payload::State { .. } => 0,
            }
    }
}

struct Stored {
    seq: u64,
    /// Output bytes in all events up to and including this one.
    output_through: u64,
    payload: Arc<Payload>,
}

struct Inner {
    ring: VecDeque<Stored>,
    bytes: usize,
    next_seq: u64,
    output_total: u64,
    end_seq: Option<u64>,
    /// The start of a UTF-8 character cut off at the end of the last chunk, per stream.
    pending: [Vec<u8>; 2],
    offsets: [u64; 2],
    phase_since: Instant,
    last_phase: Option<Phase>,
}

pub struct EventLog {
    budget: usize,
    created: Instant,
    inner: Mutex<Inner>,
    latest: watch::Sender<u64>,
}

/// What a follower reads next.
#[derive(Debug)]
pub enum Item {
    Event(u64, Arc<Payload>),
    Lagged {
        seq: u64,
        first_missed_seq: u64,
        missed_bytes: Option<u64>,
    },
}

/// Why a subscription cannot start where asked.
#[derive(Debug, PartialEq, Eq)]
pub struct BeyondEnd {
    pub last_seq: u64,
}

impl EventLog {
    /// `budget`: bytes of history kept (the newest event is always kept, whatever its size).
    pub fn new(budget: u64, created: Instant) -> Self {
        EventLog {
            budget: budget as usize,
            created,
            inner: Mutex::new(Inner {
                ring: VecDeque::new(),
                bytes: 0,
                next_seq: 1,
                output_total: 0,
                end_seq: None,
                pending: [Vec::new(), Vec::new()],
                offsets: [0, 0],
                phase_since: created,
                last_phase: None,
            }),
            latest: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        crate::sync::lock(&self.inner)
    }

    /// Bytes of history held now.
    pub fn held_bytes(&self) -> u64 {
        self.lock().bytes as u64
    }

    pub fn last_seq(&self) -> u64 {
        self.lock().next_seq - 1
    }

    fn push(&self, inner: &mut Inner, payload: Payload) {
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.output_total += payload.output_bytes();
        inner.bytes += payload.cost();
        if matches!(payload, Payload::End(_)) {
            inner.end_seq = Some(seq);
        }
        inner.ring.push_back(Stored {
            seq,
            output_through: inner.output_total,
            payload: Arc::new(payload),
        });
        while inner.bytes > self.budget && inner.ring.len() > 1 {
            if let Some(old) = inner.ring.pop_front() {
                inner.bytes -= old.payload.cost();
            }
        }
        self.latest.send_replace(seq);
    }

    /// A status or phase change. Output cut in the middle of a character is flushed first, so
    /// every chunk precedes the state change that followed it.
    pub fn state(&self, status: JobStatus, phase: Phase) {
        let mut inner = self.lock();
        if inner.end_seq.is_some() {
            return;
        }
        self.flush_pending(&mut inner);
        let now = Instant::now();
        if let Some(previous) = inner.last_phase
            && previous != phase
        {
            tracing::debug!(
                phase = ?previous,
                next = ?phase,
                ms = (now - inner.phase_since).as_secs_f64() * 1e3,
                "phase done"
            );
        }
        inner.phase_since = now;
        inner.last_phase = Some(phase);
        let elapsed_ms = ((now - self.created).as_secs_f64() * 1e6).round() / 1e3;
        self.push(
            &mut inner,
            Payload::State {
                status,
                phase,
                elapsed_ms,
            },
        );
    }

    /// Output as the job wrote it. A chunk that ends inside a UTF-8 character keeps that
    /// character's first bytes back for the next chunk, so text chunks are valid text.
    pub fn output(&self, stream: Stream, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut inner = self.lock();
        if inner.end_seq.is_some() {
            return;
        }
        let index = stream.index();
        let mut data = std::mem::take(&mut inner.pending[index]);
        data.extend_from_slice(bytes);
        if let Err(error) = std::str::from_utf8(&data)
            && error.error_len().is_none()
        {
            inner.pending[index] = data.split_off(error.valid_up_to());
        }
        if data.is_empty() {
            return;
        }
        let data = match String::from_utf8(data) {
            Ok(text) => Output::Text(text),
            Err(error) => Output::Bytes(error.into_bytes()),
        };
        self.push_output(&mut inner, stream, data);
    }

    fn push_output(&self, inner: &mut Inner, stream: Stream, data: Output) {
        let index = stream.index();
        let offset = inner.offsets[index];
        inner.offsets[index] += data.len() as u64;
        self.push(
            inner,
            Payload::Output {
                stream,
                offset,
                data,
            },
        );
    }

    fn flush_pending(&self, inner: &mut Inner) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let tail = std::mem::take(&mut inner.pending[stream.index()]);
            if !tail.is_empty() {
                self.push_output(inner, stream, Output::Bytes(tail));
            }
        }
    }

    /// The last event. Later calls change nothing.
    pub fn end(&self, job: Job) {
        let mut inner = self.lock();
        if inner.end_seq.is_some() {
            return;
        }
        self.flush_pending(&mut inner);
        self.push(&mut inner, Payload::End(Box::new(job)));
    }

    /// A follower that starts after `after_seq`.
    pub fn follow(self: &Arc<Self>, after_seq: u64) -> Result<Follower, BeyondEnd> {
        let inner = self.lock();
        let last_seq = inner.next_seq - 1;
        let next = match inner.end_seq {
            Some(end) if after_seq >= end => end,
            _ if after_seq > last_seq => return Err(BeyondEnd { last_seq }),
            _ => after_seq + 1,
        };
        let seen_output = if after_seq == 0 { Some(0) } else { None };
        drop(inner);
        Ok(Follower::new(
            self.clone(),
            next,
            seen_output,
            self.latest.subscribe(),
        ))
    }

    fn read(&self, next: u64, seen_output: Option<u64>) -> Read {
        let inner = self.lock();
        let Some(first) = inner.ring.front() else {
            return Read::Wait;
        };
        if next < first.seq {
            let missed_through = first.output_through - first.payload.output_bytes();
            return Read::Items(vec![Item::Lagged {
                seq: first.seq - 1,
                first_missed_seq: next,
                missed_bytes: seen_output.map(|seen| missed_through.saturating_sub(seen)),
            }]);
        }
        let start = (next - first.seq) as usize;
        if start >= inner.ring.len() {
            return Read::Wait;
        }
        Read::Items(
            inner
                .ring
                .range(start..)
                .take(BATCH)
                .map(|stored| Item::Event(stored.seq, stored.payload.clone()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{FileEncoding, JobEventBody};

    fn job() -> Job {
        serde_json::from_value(serde_json::json!({
            "job_id": "j", "session_id": "s", "status": "finished", "phase": "done",
            "created_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    fn drain(follower: &mut Follower) -> Vec<Item> {
        let mut all = Vec::new();
        while let Some(batch) = futures::executor::block_on(follower.next_batch()) {
            all.extend(batch);
        }
        all
    }

    #[test]
    fn utf8_is_never_cut_and_binary_is_flagged() {
        let log = Arc::new(EventLog::new(1 << 20, Instant::now()));
        let euro = "€".as_bytes();
        log.output(Stream::Stdout, &[b'a', euro[0]]);
        log.output(Stream::Stdout, &euro[1..]);
        log.output(Stream::Stderr, &[0xff, 0x00]);
        log.output(Stream::Stdout, &[euro[0]]);
        log.end(job());
        let items = drain(&mut log.follow(0).unwrap());
        let wire: Vec<_> = items.iter().map(|i| i.to_wire("j")).collect();
        let seqs: Vec<u64> = wire.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        match (&wire[0].body, &wire[1].body, &wire[2].body, &wire[3].body) {
            (
                JobEventBody::Stdout(a),
                JobEventBody::Stdout(b),
                JobEventBody::Stderr(c),
                JobEventBody::Stdout(d),
            ) => {
                assert_eq!((a.data.as_str(), a.offset), ("a", 0));
                assert_eq!((b.data.as_str(), b.offset), ("€", 1));
                assert_eq!(c.encoding, FileEncoding::Base64);
                assert_eq!(
                    (d.encoding, d.offset, d.bytes),
                    (FileEncoding::Base64, 4, 1)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(items[4].is_end());
        for item in &items {
            let fast: serde_json::Value =
                serde_json::from_str(item.to_json("j").unwrap().get()).unwrap();
            assert_eq!(fast, serde_json::to_value(item.to_wire("j")).unwrap());
            assert_eq!(
                item.to_json("j").unwrap().get(),
                serde_json::to_string(&item.to_wire("j")).unwrap(),
                "same bytes, same field order"
            );
        }
    }

    #[test]
    fn a_slow_follower_gets_lagged_then_the_rest() {
        let log = Arc::new(EventLog::new(
            4 * (EVENT_OVERHEAD + 10) as u64,
            Instant::now(),
        ));
        let mut follower = log.follow(0).unwrap();
        for _ in 0..10 {
            log.output(Stream::Stdout, b"0123456789");
        }
        log.end(job());
        assert!(log.held_bytes() <= 4 * (EVENT_OVERHEAD + 10) as u64 + 2048);
        let items = drain(&mut follower);
        match &items[0] {
            Item::Lagged {
                seq,
                first_missed_seq,
                missed_bytes,
            } => {
                assert_eq!(*first_missed_seq, 1);
                assert_eq!(*missed_bytes, Some((*seq) * 10));
                assert_eq!(
                    items[1..]
                        .iter()
                        .map(|i| i.to_wire("j").seq)
                        .collect::<Vec<_>>(),
                    ((*seq + 1)..=11).collect::<Vec<_>>()
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(items.last().unwrap().is_end());
    }

    #[test]
    fn resume_and_bounds() {
        let log = Arc::new(EventLog::new(1 << 20, Instant::now()));
        log.state(JobStatus::Queued, Phase::Init);
        log.state(JobStatus::Running, Phase::Init);
        assert_eq!(log.follow(3).err(), Some(BeyondEnd { last_seq: 2 }));
        log.end(job());
        let items = drain(&mut log.follow(1).unwrap());
        assert_eq!(items.len(), 2);
        // At or past the end: the end again, so every subscription finishes with one.
        let items = drain(&mut log.follow(3).unwrap());
        assert_eq!(items.len(), 1);
        assert!(items[0].is_end());
        assert!(log.follow(99).is_ok());
    }
}
