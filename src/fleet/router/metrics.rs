//! The fleet's part of `worker_get_metrics`: each worker's link, load and counters, with the
//! remotes' own figures asked for in parallel.

use super::{MemberKind, REMOTE_METRICS_PATIENCE, Router};
use crate::fleet::remote::Link;
use crate::protocol::table;
use crate::protocol::*;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Router {
    pub async fn metrics(&self) -> FleetMetrics {
        let (pending, in_flight) = {
            let book = self.book();
            (book.queue.len() as u64, book.in_flight.clone())
        };
        let probes = self.members.iter().map(|member| async move {
            let MemberKind::Remote(remote) = &member.kind else {
                return None;
            };
            let live = remote.live()?;
            let started = Instant::now();
            let answer = tokio::time::timeout(
                REMOTE_METRICS_PATIENCE,
                live.connection
                    .request::<table::GetMetrics>(&MetricsParams::default()),
            )
            .await;
            let Ok(Ok(theirs)) = answer else { return None };
            Some(RemoteWorkerMetrics {
                uptime_ms: theirs.uptime_ms,
                queue_depth: theirs.queue_depth,
                active_sessions: theirs.active_sessions,
                max_concurrent_sessions: theirs.max_concurrent_sessions,
                host: theirs.host,
                process: theirs.process,
                rtt_ms: started.elapsed().as_secs_f64() * 1e3,
            })
        });
        let remotes = futures::future::join_all(probes).await;
        let workers = self
            .members
            .iter()
            .zip(remotes)
            .enumerate()
            .map(|(index, (member, remote))| {
                let mut metrics = WorkerMetrics {
                    name: member.name.clone(),
                    kind: WorkerKind::Local,
                    link: WorkerLink::Up,
                    labels: member.labels.clone(),
                    capacity: member.capacity() as u64,
                    running: (in_flight[index]
                        + match member.kind {
                            MemberKind::Local { .. } => self.local.pool.load(),
                            MemberKind::Remote(_) => 0,
                        }) as u64,
                    dispatched: member.dispatched.load(Ordering::Relaxed),
                    lost: member.lost.load(Ordering::Relaxed),
                    address: None,
                    remote_worker_id: None,
                    connects: None,
                    last_error: None,
                    handshake_ms: None,
                    remote,
                };
                if let MemberKind::Remote(link) = &member.kind {
                    let stats = link.stats();
                    metrics.kind = WorkerKind::Ssh;
                    metrics.address = Some(format!("{}:{}", link.entry.host, link.entry.port));
                    metrics.connects = Some(stats.connects);
                    metrics.last_error = stats.last_error;
                    metrics.handshake_ms = stats.handshake_ms;
                    match link.link() {
                        Link::Up(live) => {
                            metrics.remote_worker_id = Some(live.worker_id.clone());
                        }
                        Link::Connecting => metrics.link = WorkerLink::Connecting,
                        Link::Down { .. } => metrics.link = WorkerLink::Down,
                    }
                }
                metrics
            })
            .collect();
        FleetMetrics { pending, workers }
    }
}
