//! The fleet's part of `worker_get_metrics`: each worker's link, load and counters, with the
//! remotes' own figures asked for in parallel.

use super::Router;
use crate::protocol::*;
use std::sync::atomic::Ordering;

impl Router {
    pub async fn metrics(&self) -> FleetMetrics {
        let (pending, in_flight) = {
            let book = self.book();
            (book.queue.len() as u64, book.in_flight.clone())
        };
        let probes = self.members.iter().map(|member| member.executor.probe());
        let remotes = futures::future::join_all(probes).await;
        let workers = self
            .members
            .iter()
            .zip(remotes)
            .enumerate()
            .map(|(index, (member, remote))| {
                let executor = &member.executor;
                let mut metrics = WorkerMetrics {
                    name: member.name.clone(),
                    kind: executor.kind(),
                    link: WorkerLink::Up,
                    labels: member.labels.clone(),
                    capacity: executor.capacity() as u64,
                    running: (in_flight[index] + executor.load()) as u64,
                    dispatched: member.dispatched.load(Ordering::Relaxed),
                    lost: member.lost.load(Ordering::Relaxed),
                    address: None,
                    remote_worker_id: None,
                    connects: None,
                    last_error: None,
                    handshake_ms: None,
                    remote,
                };
                executor.describe(&mut metrics);
                metrics
            })
            .collect();
        FleetMetrics { pending, workers }
    }
}
