//! `opencode-worker serve`: the stdio protocol loop and its orderly end.
//!
//! Every reply and notification goes through one byte-bounded channel (the outbox) to one
//! writer task, so lines never interleave and a client that stops reading holds back the
//! senders rather than the worker's memory. On
//! stdin EOF, `shutdown`, SIGTERM, SIGINT or SIGHUP: every job is stopped, every session dir
//! removed, pending replies flushed, and the process exits 0.

use crate::config::Config;
use crate::fleet::Fleet;
use crate::rpc::{Dispatcher, Line, LineReader, OUTBOX_BYTES, build_module, outbox};
use crate::worker::Worker;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::BufReader;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Budget for ending jobs at shutdown, inside the 2 s the contract promises.
const STOP_PATIENCE: Duration = Duration::from_millis(1400);
const FLUSH_PATIENCE: Duration = Duration::from_millis(300);

pub fn serve(config: Config) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "could not start the async runtime");
            return 1;
        }
    };
    let code = runtime.block_on(serve_async(config));
    // Not dropping the runtime is deliberate: its stdin reader may sit in a read(2) that
    // nothing can cancel, and dropping would wait for it.
    std::process::exit(code)
}

async fn serve_async(config: Config) -> i32 {
    let max_line = config.worker.max_line_bytes.bytes() as usize;
    let worker = match Worker::start(config) {
        Ok(worker) => Arc::new(worker),
        Err(error) => {
            tracing::error!(%error, "could not start");
            eprintln!("opencode-worker: {error}");
            return 2;
        }
    };
    tracing::info!(worker_id = %worker.worker_id, base_dir = %worker.pool.base_dir().display(), "serving JSON-RPC on stdio");
    let fleet = Arc::new(Fleet::new(worker.clone()));
    fleet.start();
    let dispatcher = Arc::new(Dispatcher::new(build_module(fleet.clone())));
    let (replies, lines) = outbox(OUTBOX_BYTES);
    let shutdown = worker.shutdown.clone();
    let writer = tokio::task::spawn_blocking(move || write_replies(lines, shutdown));
    tokio::spawn(stop_on_signals(worker.shutdown.clone()));

    let requests = TaskTracker::new();
    let mut reader = LineReader::new(
        BufReader::with_capacity(64 * 1024, tokio::io::stdin()),
        max_line,
    );
    loop {
        let frame = tokio::select! {
            _ = worker.shutdown.cancelled() => break,
            frame = reader.next() => frame,
        };
        match frame {
            Ok(Some(frame)) => {
                let dispatcher = dispatcher.clone();
                let replies = replies.clone();
                requests.spawn(async move { dispatcher.serve(frame, &replies).await });
            }
            Ok(None) => {
                tracing::info!("stdin closed; shutting down");
                break;
            }
            Err(error) => {
                tracing::error!(%error, "reading stdin failed; shutting down");
                break;
            }
        }
    }
    worker.shutdown.cancel();
    if !fleet.stop(STOP_PATIENCE).await {
        tracing::warn!("some jobs did not finish stopping in time");
    }
    requests.close();
    let _ = tokio::time::timeout(FLUSH_PATIENCE, requests.wait()).await;
    drop(replies);
    drop(dispatcher);
    let _ = tokio::time::timeout(FLUSH_PATIENCE, writer).await;
    tracing::info!("stopped");
    0
}

/// The single writer: its own thread with blocking writes to fd 1, so a line costs no hop
/// through the async runtime, and lines waiting together go out in one write.
fn write_replies(mut outbox: mpsc::UnboundedReceiver<Line>, shutdown: CancellationToken) {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    // SAFETY: fd 1 stays open for the life of the process; ManuallyDrop never closes it.
    let fd = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(1) });
    let mut stdout = std::io::BufWriter::with_capacity(256 * 1024, &*fd);
    while let Some(line) = outbox.blocking_recv() {
        let mut batch = Some(line);
        let mut failed = false;
        while let Some(line) = batch.take() {
            failed |= stdout.write_all(line.text.as_bytes()).is_err();
            failed |= stdout.write_all(b"\n").is_err();
            batch = outbox.try_recv().ok();
        }
        // EPIPE only shows on flush: the client is gone, so nobody can be answered anymore.
        if failed || stdout.flush().is_err() {
            tracing::info!("stdout closed; shutting down");
            shutdown.cancel();
            while outbox.blocking_recv().is_some() {}
            return;
        }
    }
    let _ = stdout.flush();
}

async fn stop_on_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("could not install signal handlers");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = hup.recv() => "SIGHUP",
    };
    tracing::info!(signal = name, "shutting down");
    shutdown.cancel();
}
