//! Where jobs run: the in-process worker alone (the default, with no routing cost), or a fleet
//! of workers (`workers` config) that adds remote hosts reached over SSH, each running the same
//! binary and speaking the same protocol.

mod candidates;
pub mod client;
mod executor;
mod job;
pub mod remote;
mod router;

pub use crate::config::workers::{LocalEntry, SshEntry, WorkerEntry};
pub use candidates::candidates;

use crate::error::WorkerError;
use crate::protocol::*;
use crate::worker::Worker;
use executor::{LocalExecutor, RemoteExecutor};
use router::{Member, Router};
use std::sync::Arc;

/// The worker as the RPC layer sees it: the local worker and the router in front of it. The
/// router always exists; a lone worker is a fleet of one local member, whose jobs go straight to
/// the pool.
pub struct Fleet {
    pub local: Arc<Worker>,
    router: Arc<Router>,
}

impl Fleet {
    /// Builds the fleet the config describes; remotes start connecting once a runtime runs
    /// (`start`).
    pub fn new(local: Arc<Worker>) -> Fleet {
        let mut entries = local.pool.config().workers.clone();
        if entries.is_empty() {
            // Alone, the worker runs its jobs itself; in a list without a local entry, it does not.
            entries.push(WorkerEntry::Local(LocalEntry {
                name: "local".into(),
                max_concurrent: None,
                labels: Vec::new(),
            }));
        }
        let pool_cap = local.pool.resolved().max_concurrent;
        // At most one local entry (the config checks it); its cap, or the pool's.
        let capacity = entries
            .iter()
            .find_map(|entry| match entry {
                WorkerEntry::Local(entry) => entry.max_concurrent,
                WorkerEntry::Ssh(_) => None,
            })
            .unwrap_or(pool_cap)
            .min(pool_cap);
        let pool = LocalExecutor::new(local.clone(), capacity);
        let members = entries
            .into_iter()
            .map(|entry| match entry {
                WorkerEntry::Local(entry) => Member::new(entry.name, entry.labels, pool.clone()),
                WorkerEntry::Ssh(entry) => Member::new(
                    entry.name.clone(),
                    entry.labels.clone(),
                    Arc::new(RemoteExecutor {
                        remote: remote::Remote::new(entry),
                    }),
                ),
            })
            .collect();
        Fleet {
            router: Router::new(pool, members),
            local,
        }
    }

    /// Starts connecting to the remotes. Needs a tokio runtime.
    pub fn start(&self) {
        self.router.start();
    }

    pub fn is_routing(&self) -> bool {
        self.router.is_routing()
    }

    pub fn initialize(&self, params: InitializeParams) -> InitializeResult {
        self.local.initialize(params)
    }

    pub async fn dispatch(&self, spec: JobSpec) -> Result<Job, WorkerError> {
        self.router.dispatch(spec).await
    }

    pub fn status(&self, job_id: &str) -> Result<Job, WorkerError> {
        self.router.status(job_id)
    }

    pub async fn collect(&self, params: CollectParams) -> Result<CollectResult, WorkerError> {
        self.router.collect(params).await
    }

    pub async fn cancel(&self, job_id: &str, reason: Option<String>) -> Result<Job, WorkerError> {
        self.router.cancel(job_id, reason).await
    }

    pub fn list(&self, params: ListParams) -> ListResult {
        self.router.list(params)
    }

    pub fn events(&self, job_id: &str) -> Result<Arc<crate::eventlog::EventLog>, WorkerError> {
        self.router.events(job_id)
    }

    pub async fn metrics(&self) -> MetricsResult {
        let mut result = self.local.metrics();
        if self.router.is_routing() {
            let fleet = self.router.metrics().await;
            result.queue_depth += fleet.pending;
            result.fleet = Some(fleet);
        }
        result
    }

    /// Ends routed jobs and remote links, then the local pool; true when all ended in time.
    pub async fn stop(&self, patience: std::time::Duration) -> bool {
        self.router.shutdown();
        self.local.stop(patience).await
    }
}
