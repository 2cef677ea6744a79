//! What the router sees of a member: somewhere jobs run. The local pool and a remote worker over
//! ssh are both one, so the router places, counts, watches and stops members through this trait
//! alone and has no arm per kind of member.

use super::client::CallError;
use super::job::{Captured, RemoteRun, RoutedJob, RoutedState, Ticket};
use super::remote::{Link, Remote, Signal};
use crate::error::WorkerError;
use crate::protocol::table;
use crate::protocol::*;
use crate::worker::Worker;
use futures::future::BoxFuture;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// How handing a job to a member went.
pub enum Placed {
    /// The member runs the job now; the routed job moves to this state.
    Running(RoutedState),
    /// The member cannot be reached now and nothing left this process: the job queues again.
    Unreachable(Box<Ticket>),
    /// The member refused the job; nothing ran.
    Refused(WorkerError),
    /// The request may have reached the member and started the job there.
    Lost(String),
}

pub trait Executor: Send + Sync {
    fn kind(&self) -> WorkerKind;

    /// Jobs it takes at once now (none while a remote's link is down).
    fn capacity(&self) -> usize;

    /// Jobs it runs that the router does not count: a member that keeps its own book (the
    /// local pool) counts them itself, so the router forgets a job once the member admits it.
    fn load(&self) -> usize {
        0
    }

    fn keeps_book(&self) -> bool {
        false
    }

    /// Starts whatever keeps it reachable; `signals` hears when it comes up or goes down.
    fn start(&self, _member: usize, _signals: mpsc::UnboundedSender<Signal>) {}

    /// Changes each time a slot frees up, for a member whose load the router does not see.
    fn load_dropped(&self) -> Option<watch::Receiver<u64>> {
        None
    }

    /// Hands the job over.
    fn place<'a>(
        &'a self,
        member: usize,
        job: &'a Arc<RoutedJob>,
        ticket: Ticket,
    ) -> BoxFuture<'a, Placed>;

    /// After the router settled a placed job: passes on a cancel that came while it was being
    /// placed, and ends the routed job when the member's job ends.
    fn admitted(&self, job: Arc<RoutedJob>, cancel: Option<Option<String>>) -> BoxFuture<'_, ()>;

    /// The member's own figures for `worker_get_metrics`, where it has any beyond this process.
    fn probe(&self) -> BoxFuture<'_, Option<RemoteWorkerMetrics>> {
        Box::pin(async { None })
    }

    /// Fills in what `worker_get_metrics` shows of the member's link.
    fn describe(&self, _metrics: &mut WorkerMetrics) {}

    /// Stops taking jobs and closes whatever link it has.
    fn stop(&self) {}
}

/// The local pool: a member whose queue, book and retention are the pool's own.
pub struct LocalExecutor {
    pub worker: Arc<Worker>,
    pub capacity: usize,
}

impl LocalExecutor {
    pub fn new(worker: Arc<Worker>, capacity: usize) -> Arc<LocalExecutor> {
        Arc::new(LocalExecutor { worker, capacity })
    }

    /// Checks a spec as the pool checks every job: parsed into a plan, then the policy.
    pub fn plan(&self, spec: JobSpec) -> Result<crate::plan::JobPlan, WorkerError> {
        self.worker.plan(spec)
    }

    pub async fn run_plan(
        &self,
        plan: crate::plan::JobPlan,
        events: Option<Arc<crate::eventlog::EventLog>>,
    ) -> Result<Job, WorkerError> {
        self.worker.run_plan(plan, events).await
    }

    pub fn knows(&self, job_id: &str) -> bool {
        self.worker.pool.knows(job_id)
    }

    pub fn view(&self, job_id: &str, with_result: bool) -> Result<Job, WorkerError> {
        self.worker.pool.view(job_id, with_result)
    }

    pub fn events(&self, job_id: &str) -> Result<Arc<crate::eventlog::EventLog>, WorkerError> {
        self.worker.pool.events(job_id)
    }

    pub async fn collect(&self, params: CollectParams) -> Result<CollectResult, WorkerError> {
        self.worker.pool.collect(params).await
    }

    pub async fn cancel(&self, job_id: &str, reason: Option<String>) -> Result<Job, WorkerError> {
        self.worker.pool.cancel(job_id, reason).await
    }

    pub fn list(&self, params: ListParams) -> ListResult {
        self.worker.pool.list(params)
    }
}

impl Executor for LocalExecutor {
    fn kind(&self) -> WorkerKind {
        WorkerKind::Local
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn load(&self) -> usize {
        self.worker.pool.load()
    }

    fn keeps_book(&self) -> bool {
        true
    }

    fn load_dropped(&self) -> Option<watch::Receiver<u64>> {
        Some(self.worker.pool.load_dropped())
    }

    fn place<'a>(
        &'a self,
        member: usize,
        job: &'a Arc<RoutedJob>,
        ticket: Ticket,
    ) -> BoxFuture<'a, Placed> {
        Box::pin(async move {
            // No plan: the spec was over this worker's maximums, so planning again refuses it.
            let plan = match ticket.plan {
                Some(plan) => Ok(plan),
                None => self.plan(ticket.spec),
            };
            let admitted = match plan {
                Ok(plan) => self.run_plan(plan, Some(job.log.clone())).await,
                Err(error) => Err(error),
            };
            match admitted {
                Ok(_) => Placed::Running(RoutedState::Local { member }),
                Err(error) => Placed::Refused(error),
            }
        })
    }

    fn admitted(&self, job: Arc<RoutedJob>, cancel: Option<Option<String>>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(reason) = cancel {
                let _ = self.cancel(&job.id, reason).await;
            }
            // For whoever waits on the routed job (a dispatch with `wait_ms`).
            let worker = self.worker.clone();
            tokio::spawn(async move {
                let _ = worker.pool.wait(&job.id).await;
                job.mark_ended();
            });
        })
    }
}

/// A remote worker over ssh: it never queues our jobs (the router sends one only to a free
/// slot), and its jobs are mirrored here as they run.
pub struct RemoteExecutor {
    pub remote: Arc<Remote>,
}

/// A remote's JSON-RPC error as this worker answers it, naming the worker.
pub fn remote_error(name: &str, error: CallError) -> WorkerError {
    match error {
        CallError::Rpc {
            code,
            message,
            data,
        } => {
            let mut data = data.unwrap_or_else(|| serde_json::json!({}));
            if let Some(object) = data.as_object_mut() {
                object.insert("worker".into(), name.into());
            }
            WorkerError::Remote {
                code,
                message,
                data,
            }
        }
        CallError::Lost(why) => {
            WorkerError::internal(format!("worker `{name}` did not answer: {why}"))
        }
    }
}

impl Executor for RemoteExecutor {
    fn kind(&self) -> WorkerKind {
        WorkerKind::Ssh
    }

    fn capacity(&self) -> usize {
        self.remote.live().map_or(0, |live| live.capacity)
    }

    fn start(&self, member: usize, signals: mpsc::UnboundedSender<Signal>) {
        tokio::spawn(self.remote.clone().supervise(member, signals));
    }

    fn place<'a>(
        &'a self,
        member: usize,
        _job: &'a Arc<RoutedJob>,
        ticket: Ticket,
    ) -> BoxFuture<'a, Placed> {
        Box::pin(async move {
            let Some(live) = self.remote.live() else {
                return Placed::Unreachable(Box::new(ticket));
            };
            match live
                .connection
                .request::<table::DispatchJob>(&ticket.spec)
                .await
            {
                Ok(mut view) => {
                    view.worker = Some(self.remote.entry.name.clone());
                    Placed::Running(RoutedState::Remote(Box::new(RemoteRun {
                        member,
                        live,
                        last: view,
                        stdout: Captured::default(),
                        stderr: Captured::default(),
                        complete: true,
                    })))
                }
                Err(refused @ CallError::Rpc { .. }) => {
                    Placed::Refused(remote_error(&self.remote.entry.name, refused))
                }
                Err(CallError::Lost(why)) => Placed::Lost(why),
            }
        })
    }

    fn admitted(&self, job: Arc<RoutedJob>, cancel: Option<Option<String>>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(reason) = cancel else { return };
            let live = match &*job.state() {
                RoutedState::Remote(run) => run.live.clone(),
                _ => return,
            };
            let _ = live
                .connection
                .request::<table::CancelJob>(&CancelParams {
                    job_id: job.id.clone(),
                    reason,
                })
                .await;
        })
    }

    fn probe(&self) -> BoxFuture<'_, Option<RemoteWorkerMetrics>> {
        Box::pin(async move {
            let live = self.remote.live()?;
            let started = std::time::Instant::now();
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
        })
    }

    fn describe(&self, metrics: &mut WorkerMetrics) {
        let stats = self.remote.stats();
        metrics.address = Some(format!(
            "{}:{}",
            self.remote.entry.host, self.remote.entry.port
        ));
        metrics.connects = Some(stats.connects);
        metrics.last_error = stats.last_error;
        metrics.handshake_ms = stats.handshake_ms;
        match self.remote.link() {
            Link::Up(live) => metrics.remote_worker_id = Some(live.worker_id.clone()),
            Link::Connecting => metrics.link = WorkerLink::Connecting,
            Link::Down { .. } => metrics.link = WorkerLink::Down,
        }
    }

    fn stop(&self) {
        self.remote.stop();
    }
}

/// How long `worker_get_metrics` waits for each remote's own figures.
const REMOTE_METRICS_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);
