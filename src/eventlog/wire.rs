//! An item as it goes on the wire: the `worker_job_event` body, and the same JSON written
//! straight from the history for output chunks (no copy of the bytes first).

use super::{Item, Output, Payload, Stream};
use crate::protocol::{FileEncoding, JobEvent, JobEventBody, OutputChunk};
use base64::Engine;
use std::borrow::Cow;

/// The one place output becomes wire text: as it is when it is text, base64 when it is not.
fn encode(data: &Output) -> (Cow<'_, str>, FileEncoding) {
    match data {
        Output::Text(text) => (Cow::Borrowed(text), FileEncoding::Utf8),
        Output::Bytes(bytes) => (
            Cow::Owned(base64::engine::general_purpose::STANDARD.encode(bytes)),
            FileEncoding::Base64,
        ),
    }
}

/// An output event as it goes on the wire, borrowing the chunk: the same JSON as
/// [`JobEvent`] with a `stdout`/`stderr` body.
#[derive(serde::Serialize)]
struct WireChunk<'a> {
    job_id: &'a str,
    seq: u64,
    kind: &'static str,
    data: Cow<'a, str>,
    encoding: FileEncoding,
    offset: u64,
    bytes: u64,
}

impl Item {
    /// The wire form as JSON, for the subscription: output chunks are serialized straight from
    /// the history, the rest through [`Item::to_wire`].
    pub fn to_json(&self, job_id: &str) -> serde_json::Result<Box<serde_json::value::RawValue>> {
        if let Item::Event(seq, payload) = self
            && let Payload::Output {
                stream,
                offset,
                data,
            } = &**payload
        {
            let (text, encoding) = encode(data);
            return serde_json::value::to_raw_value(&WireChunk {
                job_id,
                seq: *seq,
                kind: match stream {
                    Stream::Stdout => "stdout",
                    Stream::Stderr => "stderr",
                },
                data: text,
                encoding,
                offset: *offset,
                bytes: data.len() as u64,
            });
        }
        serde_json::value::to_raw_value(&self.to_wire(job_id))
    }

    pub fn is_end(&self) -> bool {
        matches!(self, Item::Event(_, payload) if matches!(**payload, Payload::End(_)))
    }

    /// The wire form.
    pub fn to_wire(&self, job_id: &str) -> JobEvent {
        let (seq, body) = match self {
            Item::Lagged {
                seq,
                first_missed_seq,
                missed_bytes,
            } => (
                *seq,
                JobEventBody::Lagged {
                    first_missed_seq: *first_missed_seq,
                    missed_events: seq + 1 - first_missed_seq,
                    missed_bytes: *missed_bytes,
                },
            ),
            Item::Event(seq, payload) => (
                *seq,
                match &**payload {
                    Payload::State {
                        status,
                        phase,
                        elapsed_ms,
                    } => JobEventBody::State {
                        status: *status,
                        phase: *phase,
                        elapsed_ms: *elapsed_ms,
                    },
                    Payload::Output {
                        stream,
                        offset,
                        data,
                    } => {
                        let (text, encoding) = encode(data);
                        let chunk = OutputChunk {
                            data: text.into_owned(),
                            encoding,
                            offset: *offset,
                            bytes: data.len() as u64,
                        };
                        match stream {
                            Stream::Stdout => JobEventBody::Stdout(chunk),
                            Stream::Stderr => JobEventBody::Stderr(chunk),
                        }
                    }
                    Payload::End(job) => JobEventBody::End { job: job.clone() },
                },
            ),
        };
        JobEvent {
            job_id: job_id.to_owned(),
            seq,
            body,
        }
    }
}
