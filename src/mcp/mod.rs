//! `opencode-worker mcp`: the worker's tools over the Model Context Protocol on stdio, with the
//! official SDK (`rmcp`). The same configuration, pool, sandbox, policy, fleet and limits as
//! `serve`; only the surface differs. Nothing but protocol goes to stdout.
//!
//! How it ends: when the client closes stdin (how MCP clients stop a stdio server), or on
//! SIGTERM, SIGINT or SIGHUP, every job is stopped and every session dir removed, then the
//! process exits 0. MCP has no "serve what was read" drain: a client that closes stdin is done.

mod progress;
mod roots;
pub mod seam;
mod server;
mod start;

use crate::config::Config;
use rmcp::ServiceExt;
use rmcp::transport::async_rw::AsyncRwTransport;
use start::{Started, Starter};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// Budget for ending jobs, inside the 2 s `serve` promises too.
const STOP_PATIENCE: Duration = Duration::from_millis(1400);

pub fn run(config: Config) -> i32 {
    crate::serve::run_to_exit(run_async(config))
}

async fn run_async(config: Config) -> i32 {
    let max_line = config.worker.max_line_bytes.bytes() as usize;
    let started: Arc<OnceCell<Result<Started, String>>> = Arc::new(OnceCell::new());
    let in_flight = config.worker.max_in_flight;
    let handler = server::WorkerServer::new(Starter::new(config), started.clone(), in_flight);
    let transport = AsyncRwTransport::new_server(tokio::io::stdin(), tokio::io::stdout())
        .with_max_line_length(max_line);
    tracing::info!("serving MCP on stdio");
    let service = match handler.serve(transport).await {
        Ok(service) => service,
        Err(error) => {
            tracing::error!(%error, "the MCP handshake failed");
            return 1;
        }
    };
    let cancel = service.cancellation_token();
    tokio::select! {
        reason = service.waiting() => tracing::info!(?reason, "the MCP session ended"),
        name = crate::serve::first_signal() => {
            tracing::info!(signal = name, "shutting down");
            cancel.cancel();
        }
    }
    if let Some(Ok(started)) = started.get() {
        tracing::info!("stopping every job");
        started.worker.shutdown.cancel();
        if !started.fleet.stop(STOP_PATIENCE).await {
            tracing::warn!("some jobs did not finish stopping in time");
        }
    }
    tracing::info!("stopped");
    0
}
