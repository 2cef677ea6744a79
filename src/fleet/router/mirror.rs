//! Follows one remote job's event stream: keeps the fleet's copy (state, output) current, feeds
//! local subscribers, and on the end event fetches artifacts and any output the stream missed.
//! A stream that stops without an end event means the host was lost.

use super::Router;
use crate::eventlog::Stream;
use crate::fleet::client::CallError;
use crate::fleet::job::{Captured, EndedRun, RoutedJob, RoutedState};
use crate::fleet::remote::Live;
use crate::protocol::table;
use crate::protocol::{
    CollectParams, CollectResult, FileEncoding, Job, JobEventBody, JobStatus, OutputChunk,
};
use std::sync::Arc;
use std::time::Instant;

pub async fn follow(router: Arc<Router>, job: Arc<RoutedJob>, live: Arc<Live>) {
    let mut events = match live.connection.subscribe(&job.id, 0).await {
        Ok(events) => events,
        Err(error) => {
            let why = match error {
                CallError::Lost(why) => why,
                CallError::Rpc { message, .. } => format!("could not follow the job: {message}"),
            };
            return lost(&router, &job, &why);
        }
    };
    while let Some(event) = events.recv().await {
        match event.body {
            JobEventBody::State { status, phase, .. } => {
                if let RoutedState::Remote(run) = &mut *job.state() {
                    run.last.status = status;
                    run.last.phase = phase;
                    if status == JobStatus::Running && run.last.started_at.is_none() {
                        run.last.started_at =
                            Some(crate::protocol::rfc3339(std::time::SystemTime::now()));
                    }
                }
                job.log.state(status, phase);
            }
            JobEventBody::Stdout(chunk) => output(&job, Stream::Stdout, &chunk),
            JobEventBody::Stderr(chunk) => output(&job, Stream::Stderr, &chunk),
            JobEventBody::Lagged { missed_events, .. } => {
                tracing::debug!(job_id = %job.id, missed_events, "remote job stream lagged; output is refetched at the end");
                if let RoutedState::Remote(run) = &mut *job.state() {
                    run.complete = false;
                }
            }
            JobEventBody::End { job: ended } => {
                return finish(&router, &job, &live, *ended).await;
            }
        }
    }
    lost(&router, &job, &live.connection.why());
}

fn output(job: &RoutedJob, stream: Stream, chunk: &OutputChunk) {
    let Some(bytes) = decode(&chunk.data, chunk.encoding) else {
        return;
    };
    if let RoutedState::Remote(run) = &mut *job.state() {
        let copy = match stream {
            Stream::Stdout => &mut run.stdout,
            Stream::Stderr => &mut run.stderr,
        };
        if chunk.offset != copy.total {
            run.complete = false;
        }
        copy.data.extend_from_slice(&bytes);
        copy.total = chunk.offset + chunk.bytes;
    }
    job.log.output(stream, &bytes);
}

fn decode(data: &str, encoding: FileEncoding) -> Option<Vec<u8>> {
    match encoding {
        FileEncoding::Utf8 => Some(data.as_bytes().to_vec()),
        FileEncoding::Base64 => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(data).ok()
        }
    }
}

fn lost(router: &Arc<Router>, job: &Arc<RoutedJob>, why: &str) {
    let taken = {
        let state = job.state();
        match &*state {
            RoutedState::Remote(run) => Some((
                run.member,
                run.view(),
                run.stdout.clone(),
                run.stderr.clone(),
            )),
            _ => None,
        }
    };
    if let Some((member, base, stdout, stderr)) = taken {
        router.lose(job, member, base, stdout, stderr, why);
    }
}

/// The remote job ended: make the copy whole (what the remote kept, byte for byte, plus its
/// artifacts), then record the end.
async fn finish(router: &Arc<Router>, job: &Arc<RoutedJob>, live: &Live, mut ended: Job) {
    let (member, mut stdout, mut stderr, complete) = {
        let mut state = job.state();
        let RoutedState::Remote(run) = &mut *state else {
            return;
        };
        (
            run.member,
            std::mem::take(&mut run.stdout),
            std::mem::take(&mut run.stderr),
            run.complete,
        )
    };
    ended.worker = Some(router.members[member].name.clone());
    let mut artifacts = None;
    let first = live
        .connection
        .request::<table::CollectOutput>(&CollectParams {
            job_id: job.id.clone(),
            stream_offset: 0,
            max_bytes: Some(1),
            include_artifacts: Some(true),
        })
        .await;
    match first {
        Ok(result) => {
            artifacts = result.artifacts;
            let whole = complete
                && stdout.data.len() as u64 >= result.stdout.kept_bytes
                && stderr.data.len() as u64 >= result.stderr.kept_bytes;
            if whole {
                stdout.data.truncate(result.stdout.kept_bytes as usize);
                stderr.data.truncate(result.stderr.kept_bytes as usize);
                stdout.total = result.stdout.total_bytes;
                stderr.total = result.stderr.total_bytes;
            } else if let Err(why) = refetch(live, &job.id, &mut stdout, &mut stderr).await {
                tracing::warn!(job_id = %job.id, reason = %why, "could not copy all of a remote job's output");
                ended.message = Some(match ended.message.take() {
                    Some(message) => format!("{message}; output copy incomplete: {why}"),
                    None => format!("output copy incomplete: {why}"),
                });
            }
        }
        Err(error) => {
            tracing::warn!(job_id = %job.id, ?error, "could not fetch a remote job's artifacts");
        }
    }
    router.remote_ended(
        job,
        EndedRun {
            member: Some(member),
            job: ended,
            stdout,
            stderr,
            artifacts,
            at: Instant::now(),
        },
    );
}

/// Pages both streams from the remote from the start.
async fn refetch(
    live: &Live,
    job_id: &str,
    stdout: &mut Captured,
    stderr: &mut Captured,
) -> Result<(), String> {
    let mut fresh = [Captured::default(), Captured::default()];
    let mut offset = 0u64;
    loop {
        let page: CollectResult = live
            .connection
            .request::<table::CollectOutput>(&CollectParams {
                job_id: job_id.to_owned(),
                stream_offset: offset,
                max_bytes: Some(crate::page::MAX_PAGE_BYTES),
                include_artifacts: Some(false),
            })
            .await
            .map_err(|error| format!("{error:?}"))?;
        let mut advanced = false;
        for (copy, window) in fresh.iter_mut().zip([&page.stdout, &page.stderr]) {
            copy.total = window.total_bytes;
            if window.offset == copy.data.len() as u64 && window.next_offset > window.offset {
                let bytes = decode(&window.data, window.encoding).ok_or("a page did not decode")?;
                copy.data.extend_from_slice(&bytes);
                advanced = true;
            }
        }
        let done = fresh[0].data.len() as u64 >= page.stdout.kept_bytes
            && fresh[1].data.len() as u64 >= page.stderr.kept_bytes;
        if done {
            break;
        }
        if !advanced {
            return Err("paging made no progress".into());
        }
        offset = fresh[0].data.len().min(fresh[1].data.len()) as u64;
        // One stream may be ahead of the other; page from the shorter one's end.
        if fresh[0].data.len() as u64 >= page.stdout.kept_bytes {
            offset = fresh[1].data.len() as u64;
        } else if fresh[1].data.len() as u64 >= page.stderr.kept_bytes {
            offset = fresh[0].data.len() as u64;
        }
    }
    let [out, err] = fresh;
    *stdout = out;
    *stderr = err;
    Ok(())
}
