//! Where jobs run: the in-process worker alone (the default, with no routing cost), or a fleet
//! of workers (`workers` config) that adds remote hosts reached over SSH, each running the same
//! binary and speaking the same protocol.

mod client;
mod job;
mod mirror;
pub mod remote;
mod router;

pub use crate::config::workers::{LocalEntry, SshEntry, WorkerEntry};
pub use router::candidates;

use crate::error::WorkerError;
use crate::protocol::*;
use crate::worker::Worker;
use router::{Member, MemberKind, Router};
use std::sync::Arc;

pub struct Fleet {
    pub local: Arc<Worker>,
    /// The local worker's routing name and labels when it is the only worker.
    solo: (String, Vec<String>),
    router: Option<Arc<Router>>,
}

impl Fleet {
    /// Builds the fleet the config describes; remotes start connecting once a runtime runs
    /// (`start`).
    pub fn new(local: Arc<Worker>) -> Fleet {
        let entries = local.pool.config().workers.clone();
        let remote = entries.iter().any(|e| matches!(e, WorkerEntry::Ssh(_)));
        let solo_entry = entries.iter().find_map(|e| match e {
            WorkerEntry::Local(local) => Some(local.clone()),
            WorkerEntry::Ssh(_) => None,
        });
        let solo = solo_entry
            .as_ref()
            .map(|e| (e.name.clone(), e.labels.clone()))
            .unwrap_or_else(|| ("local".into(), Vec::new()));
        if !remote {
            return Fleet {
                local,
                solo,
                router: None,
            };
        }
        let pool_cap = local.pool.resolved().max_concurrent;
        let members = entries
            .into_iter()
            .map(|entry| match entry {
                WorkerEntry::Local(entry) => Member::new(
                    entry.name,
                    entry.labels,
                    MemberKind::Local {
                        capacity: entry.max_concurrent.unwrap_or(pool_cap).min(pool_cap),
                    },
                ),
                WorkerEntry::Ssh(entry) => Member::new(
                    entry.name.clone(),
                    entry.labels.clone(),
                    MemberKind::Remote(remote::Remote::new(entry)),
                ),
            })
            .collect();
        Fleet {
            router: Some(Router::new(local.clone(), members)),
            local,
            solo,
        }
    }

    /// Starts connecting to the remotes. Needs a tokio runtime.
    pub fn start(&self) {
        if let Some(router) = &self.router {
            router.start();
        }
    }

    pub fn is_routing(&self) -> bool {
        self.router.is_some()
    }

    pub fn initialize(&self, params: InitializeParams) -> InitializeResult {
        self.local.initialize(params)
    }

    pub async fn dispatch(&self, mut spec: JobSpec) -> Result<Job, WorkerError> {
        match &self.router {
            Some(router) => router.dispatch(spec).await,
            None => {
                if spec.worker.is_some() || spec.labels.is_some() {
                    let (name, labels) = &self.solo;
                    candidates(std::iter::once((name.as_str(), labels.as_slice())), &spec)?;
                    spec.worker = None;
                    spec.labels = None;
                }
                self.local.dispatch(spec).await
            }
        }
    }

    pub fn status(&self, job_id: &str) -> Result<Job, WorkerError> {
        match &self.router {
            Some(router) => router.status(job_id),
            None => self.local.pool.status(job_id),
        }
    }

    pub async fn collect(&self, params: CollectParams) -> Result<CollectResult, WorkerError> {
        match &self.router {
            Some(router) => router.collect(params).await,
            None => self.local.pool.collect(params).await,
        }
    }

    pub async fn cancel(&self, job_id: &str, reason: Option<String>) -> Result<Job, WorkerError> {
        match &self.router {
            Some(router) => router.cancel(job_id, reason).await,
            None => self.local.pool.cancel(job_id, reason).await,
        }
    }

    pub fn list(&self, params: ListParams) -> ListResult {
        match &self.router {
            Some(router) => router.list(params),
            None => self.local.pool.list(params),
        }
    }

    pub fn events(&self, job_id: &str) -> Result<Arc<crate::eventlog::EventLog>, WorkerError> {
        match &self.router {
            Some(router) => router.events(job_id),
            None => self.local.pool.events(job_id),
        }
    }

    pub async fn metrics(&self) -> MetricsResult {
        let mut result = self.local.metrics();
        if let Some(router) = &self.router {
            let fleet = router.metrics().await;
            result.queue_depth += fleet.pending;
            result.fleet = Some(fleet);
        }
        result
    }

    /// Ends routed jobs and remote links, then the local pool; true when all ended in time.
    pub async fn stop(&self, patience: std::time::Duration) -> bool {
        if let Some(router) = &self.router {
            router.shutdown();
        }
        self.local.stop(patience).await
    }
}
