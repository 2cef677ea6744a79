//! The in-process session pool: admits jobs up to the concurrency cap, queues the rest in
//! FIFO order up to a bound, retains ended jobs for a while, and stops everything on shutdown.

pub mod entry;
mod runner;
pub mod state;

pub use entry::JobEntry;

use crate::config::{Config, Resolved};
use crate::error::WorkerError;
use crate::exec::CpuPicker;
use crate::metrics::{LatencyPhase, Metrics};
use crate::plan::JobPlan;
use crate::protocol::{CollectParams, CollectResult, Job, ListParams, ListResult, StreamPage};
use entry::lock;
use state::{Ended, JobState, KillReason, Outcome, StopRequest};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio_util::task::TaskTracker;

/// Longest a cancel call waits for the job to be gone before answering.
const CANCEL_REPLY_SLACK: Duration = Duration::from_millis(1000);
/// Grace between SIGTERM and SIGKILL when the worker itself is stopping.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(300);

pub struct Pool {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub config: Config,
    pub resolved: Resolved,
    pub base_dir: PathBuf,
    pub sessions: crate::session::SessionStore,
    /// What the kernel offers, probed once at start-up.
    pub host: crate::sandbox::Host,
    pub metrics: Metrics,
    pub cpus: CpuPicker,
    pub runners: TaskTracker,
    /// Change sets of ended overlay jobs, until applied, discarded or expired.
    pub changes: crate::workspace::PendingChanges,
    /// Bumped whenever a job leaves the pool's load (ended, or dropped from its queue), so a
    /// fleet waiting for a local slot hears of it.
    load_dropped: tokio::sync::watch::Sender<u64>,
    state: Mutex<PoolState>,
}

struct PoolState {
    jobs: HashMap<String, Arc<JobEntry>>,
    queue: VecDeque<Arc<JobEntry>>,
    running: usize,
    retained: VecDeque<(Arc<JobEntry>, Instant, u64)>,
    retained_bytes: u64,
    accepting: bool,
}

impl Pool {
    /// `base_dir` must exist and be private to this worker; the pool removes it on shutdown.
    pub fn new(config: Config, base_dir: PathBuf) -> Result<Pool, crate::config::ConfigError> {
        Pool::with_spares(config, base_dir, None)
    }

    /// `new`, keeping `spares` empty session skeletons ready instead of one per concurrent
    /// job: a worker that runs a single job (`run`) wants none, its INIT makes its own dirs
    /// and nothing is left to make and remove that no job uses.
    pub fn with_spares(
        config: Config,
        base_dir: PathBuf,
        spares: Option<usize>,
    ) -> Result<Pool, crate::config::ConfigError> {
        let resolved = config.resolve()?;
        let spares = spares.unwrap_or_else(|| resolved.max_concurrent.clamp(2, 16));
        let host = crate::sandbox::Host::probe(&config.sandbox());
        tracing::info!(probe_ms = host.probe_ms(), "sandbox probed");
        host.start_warm(resolved.max_concurrent);
        let retain = Duration::from_secs(config.worker.retain_secs);
        Ok(Pool {
            shared: Arc::new(Shared {
                config,
                resolved,
                sessions: crate::session::SessionStore::new(base_dir.clone(), spares),
                host,
                base_dir,
                metrics: Metrics::default(),
                cpus: CpuPicker::from_current_affinity(),
                runners: TaskTracker::new(),
                changes: crate::workspace::PendingChanges::new(retain),
                load_dropped: tokio::sync::watch::Sender::new(0),
                state: Mutex::new(PoolState {
                    jobs: HashMap::new(),
                    queue: VecDeque::new(),
                    running: 0,
                    retained: VecDeque::new(),
                    retained_bytes: 0,
                    accepting: true,
                }),
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    pub fn resolved(&self) -> &Resolved {
        &self.shared.resolved
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    pub fn base_dir(&self) -> &Path {
        &self.shared.base_dir
    }

    /// Pending workspace change sets (`worker_apply_changes`, `worker_discard_changes`).
    pub fn changes(&self) -> &crate::workspace::PendingChanges {
        &self.shared.changes
    }

    pub fn host(&self) -> &crate::sandbox::Host {
        &self.shared.host
    }

    /// Admits a checked plan: starts it when a slot is free, queues it otherwise.
    pub async fn dispatch(&self, plan: JobPlan) -> Result<Job, WorkerError> {
        self.dispatch_with(plan, None).await
    }

    /// `dispatch`, continuing an event log subscribers already follow.
    pub async fn dispatch_with(
        &self,
        plan: JobPlan,
        events: Option<Arc<crate::eventlog::EventLog>>,
    ) -> Result<Job, WorkerError> {
        let wait = plan.wait_ms.map(Duration::from_millis);
        let entry = Arc::new(JobEntry::new(plan, &self.shared.config, events));
        let start_now = {
            let mut state = lock(&self.shared.state);
            let admitted = self.shared.admit(&mut state, &entry);
            if admitted.is_err() {
                self.shared.metrics.rejected();
            }
            admitted?
        };
        self.shared.metrics.dispatched();
        tracing::info!(job_id = entry.id(), session_id = %entry.session_id, queued = !start_now, "job admitted");
        if start_now {
            Shared::start(&self.shared, entry.clone());
        }
        if let Some(wait) = wait {
            let _ = tokio::time::timeout(wait, entry.wait_ended()).await;
        }
        Ok(entry.view(true))
    }

    fn find(&self, job_id: &str) -> Result<Arc<JobEntry>, WorkerError> {
        let mut state = lock(&self.shared.state);
        self.shared.expire(&mut state);
        state
            .jobs
            .get(job_id)
            .cloned()
            .ok_or_else(|| WorkerError::UnknownJob {
                job_id: job_id.to_owned(),
            })
    }

    /// Waits for the job to end and returns its full result.
    pub async fn wait(&self, job_id: &str) -> Result<Job, WorkerError> {
        let entry = self.find(job_id)?;
        entry.wait_ended().await;
        Ok(entry.view(true))
    }

    /// The job's event log, for a subscriber.
    pub fn events(&self, job_id: &str) -> Result<Arc<crate::eventlog::EventLog>, WorkerError> {
        Ok(self.find(job_id)?.events.clone())
    }

    /// Whether a live or retained job has this id.
    pub fn knows(&self, job_id: &str) -> bool {
        self.find(job_id).is_ok()
    }

    pub fn status(&self, job_id: &str) -> Result<Job, WorkerError> {
        Ok(self.find(job_id)?.view(false))
    }

    /// `status`, with output bodies and artifacts once the job has ended when `with_result`.
    pub fn view(&self, job_id: &str, with_result: bool) -> Result<Job, WorkerError> {
        Ok(self.find(job_id)?.view(with_result))
    }

    pub async fn collect(&self, params: CollectParams) -> Result<CollectResult, WorkerError> {
        let max = crate::page::page_size(params.max_bytes)?;
        let entry = self.find(&params.job_id)?;
        let include_artifacts = params.include_artifacts.unwrap_or(true);
        let ended = entry.is_ended();
        let stdout = page(&lock(&entry.stdout), params.stream_offset, max, ended);
        let stderr = page(&lock(&entry.stderr), params.stream_offset, max, ended);
        let artifacts = if !include_artifacts {
            None
        } else if ended {
            entry.record().artifacts.clone()
        } else {
            self.live_artifacts(&entry).await
        };
        let job = entry.view(false);
        Ok(CollectResult {
            job_id: job.job_id,
            status: job.status,
            phase: job.phase,
            exit_code: job.exit_code,
            reason: job.reason,
            stdout,
            stderr,
            artifacts,
            metrics: job.metrics,
        })
    }

    /// What a running job has written to its output dir so far.
    async fn live_artifacts(&self, entry: &JobEntry) -> Option<Vec<crate::protocol::Artifact>> {
        let output =
            crate::session::SessionDirs::plan(&self.shared.base_dir, &entry.session_id).output;
        let caps = self.shared.artifact_caps();
        let bounds = crate::session::CollectBounds::new(Default::default());
        tokio::task::spawn_blocking(move || {
            crate::session::collect_artifacts(&output, caps, &bounds).ok()
        })
        .await
        .ok()
        .flatten()
    }

    pub async fn cancel(&self, job_id: &str, reason: Option<String>) -> Result<Job, WorkerError> {
        let entry = self.find(job_id)?;
        let dequeued = {
            let mut state = lock(&self.shared.state);
            match entry.record().state {
                JobState::Queued => {
                    state.queue.retain(|queued| !Arc::ptr_eq(queued, &entry));
                    true
                }
                _ => false,
            }
        };
        if dequeued {
            self.shared.end_unstarted(
                &entry,
                Outcome::Cancelled {
                    message: reason,
                    exit: None,
                },
            );
        } else if !entry.is_ended() {
            entry.request_stop(StopRequest::Cancel(reason));
            let patience = Duration::from_millis(self.shared.config.session.kill_grace_ms)
                + CANCEL_REPLY_SLACK;
            let _ = tokio::time::timeout(patience, entry.wait_ended()).await;
        }
        Ok(entry.view(false))
    }

    pub fn list(&self, params: ListParams) -> ListResult {
        let mut entries: Vec<Arc<JobEntry>> = {
            let mut state = lock(&self.shared.state);
            self.shared.expire(&mut state);
            state.jobs.values().cloned().collect()
        };
        entries.sort_by_key(|entry| entry.created);
        let sessions = entries
            .iter()
            .map(|entry| entry.summary())
            .filter(|summary| params.status.is_none_or(|wanted| summary.status == wanted))
            .collect();
        ListResult { sessions }
    }

    /// (queued, running, retained)
    /// Changes whenever the pool's load drops (see `load`).
    pub fn load_dropped(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.load_dropped.subscribe()
    }

    /// Jobs admitted and not ended: running plus queued.
    pub fn load(&self) -> usize {
        let state = lock(&self.shared.state);
        state.running + state.queue.len()
    }

    pub fn occupancy(&self) -> (u64, u64, u64) {
        let state = lock(&self.shared.state);
        (
            state.queue.len() as u64,
            state.running as u64,
            state.retained.len() as u64,
        )
    }

    /// Stops admitting, ends queued jobs, stops running ones with a short grace, and waits (up
    /// to `patience`) for every session to be destroyed. Returns false if some runner did not
    /// finish in time.
    pub async fn shutdown(&self, patience: Duration) -> bool {
        let (queued, running): (Vec<_>, Vec<_>) = {
            let mut state = lock(&self.shared.state);
            state.accepting = false;
            let queued = state.queue.drain(..).collect();
            let running = state
                .jobs
                .values()
                .filter(|entry| matches!(entry.record().state, JobState::Active { .. }))
                .cloned()
                .collect();
            (queued, running)
        };
        for entry in &queued {
            self.shared.end_unstarted(
                entry,
                Outcome::Killed {
                    reason: KillReason::WorkerShutdown,
                    exit: None,
                },
            );
        }
        for entry in &running {
            entry.request_stop(StopRequest::Shutdown);
        }
        self.shared.runners.close();
        let finished = tokio::time::timeout(patience, self.shared.runners.wait())
            .await
            .is_ok();
        self.shared.sessions.close();
        finished
    }
}

impl Shared {
    fn admit(&self, state: &mut PoolState, entry: &Arc<JobEntry>) -> Result<bool, WorkerError> {
        if !state.accepting {
            return Err(WorkerError::ShuttingDown);
        }
        self.expire(state);
        if state.jobs.contains_key(entry.id()) {
            return Err(WorkerError::DuplicateJob {
                job_id: entry.id().to_owned(),
            });
        }
        let start_now = if state.running < self.resolved.max_concurrent {
            state.running += 1;
            entry.activate();
            true
        } else if state.queue.len() < self.config.worker.max_queued {
            state.queue.push_back(entry.clone());
            false
        } else {
            return Err(WorkerError::Busy {
                active: state.running as u64,
                queued: state.queue.len() as u64,
                limit: self.config.worker.max_queued as u64,
            });
        };
        state.jobs.insert(entry.id().to_owned(), entry.clone());
        Ok(start_now)
    }

    /// Runs on the caller's runtime worker thread: the job's parent-death signal is tied to it.
    fn start(shared: &Arc<Shared>, entry: Arc<JobEntry>) {
        use tracing::Instrument;
        let shared_for_task = shared.clone();
        let span = tracing::info_span!("job", job_id = entry.id(), session_id = %entry.session_id);
        shared.runners.spawn(
            async move {
                let outcome_entry = entry.clone();
                let ended = runner::run(&shared_for_task, &entry).await;
                Shared::finish(&shared_for_task, &outcome_entry, ended);
            }
            .instrument(span),
        );
    }

    /// A runner is done: record the end, free the slot, and start the next queued job.
    fn finish(shared: &Arc<Shared>, entry: &Arc<JobEntry>, ended: Ended) {
        let status = ended.outcome.status();
        let reason = ended.outcome.reason();
        let phases = {
            let metrics = &entry.record().metrics;
            [
                (LatencyPhase::Queue, metrics.queue_ms),
                (LatencyPhase::Prepare, metrics.prepare_ms),
                (LatencyPhase::Spawn, metrics.spawn_ms),
                (LatencyPhase::Execute, metrics.execute_ms),
                (LatencyPhase::Collect, metrics.collect_ms),
                (LatencyPhase::Destroy, metrics.destroy_ms),
                (LatencyPhase::Total, metrics.total_ms),
            ]
        };
        // Counters and retention are updated before anyone waiting is woken, so a reply that
        // shows the job ended never precedes its accounting.
        shared.metrics.ended(status, reason, &phases);
        {
            let metrics = &entry.record().metrics;
            if let (Some(user), Some(system)) = (metrics.cpu_user_ms, metrics.cpu_system_ms) {
                shared
                    .metrics
                    .job_usage(user + system, metrics.max_rss_bytes.unwrap_or(0));
            }
            if let Some(network) = &metrics.network {
                shared.metrics.egress(network);
            }
        }
        let next = {
            let mut state = lock(&shared.state);
            state.running -= 1;
            shared.retain(&mut state, entry);
            entry.end(ended);
            match state.queue.pop_front() {
                Some(next) if state.accepting => {
                    state.running += 1;
                    next.activate();
                    Some(next)
                }
                Some(next) => {
                    state.queue.push_front(next);
                    None
                }
                None => None,
            }
        };
        match next {
            Some(next) => Shared::start(shared, next),
            None => shared.load_dropped.send_modify(|n| *n = n.wrapping_add(1)),
        }
    }

    fn end_unstarted(&self, entry: &Arc<JobEntry>, outcome: Outcome) {
        let status = outcome.status();
        let reason = outcome.reason();
        let queue_ms = runner::ms(entry.created.elapsed());
        entry.record().metrics.queue_ms = queue_ms;
        self.metrics
            .ended(status, reason, &[(LatencyPhase::Queue, queue_ms)]);
        {
            let mut state = lock(&self.state);
            self.retain(&mut state, entry);
            entry.end(Ended {
                started_at: None,
                ended_at: SystemTime::now(),
                outcome,
            });
        }
        self.load_dropped.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn retain(&self, state: &mut PoolState, entry: &Arc<JobEntry>) {
        let bytes = entry.retained_bytes();
        state.retained_bytes += bytes;
        state
            .retained
            .push_back((entry.clone(), Instant::now(), bytes));
        self.expire(state);
    }

    /// Drops the oldest ended jobs beyond the count, age and memory bounds.
    fn expire(&self, state: &mut PoolState) {
        let max_age = Duration::from_secs(self.config.worker.retain_secs);
        let max_jobs = self.config.worker.retain_jobs;
        let max_bytes = self.config.worker.retain_bytes.bytes();
        while let Some((entry, since, bytes)) = state.retained.front() {
            let over = state.retained.len() > max_jobs
                || since.elapsed() > max_age
                || state.retained_bytes > max_bytes;
            if !over {
                break;
            }
            let id = entry.id().to_owned();
            state.retained_bytes -= bytes;
            state.retained.pop_front();
            state.jobs.remove(&id);
        }
    }

    pub fn artifact_caps(&self) -> crate::session::ArtifactCaps {
        crate::session::ArtifactCaps {
            max_files: self.config.session.max_artifacts,
            inline_bytes: self.config.session.artifact_inline_bytes.bytes(),
            total_inline_bytes: self.config.session.artifact_total_bytes.bytes(),
        }
    }
}

/// A window of a stream that stays on UTF-8 character boundaries when the text is UTF-8.
fn page(buffer: &crate::exec::StreamBuffer, offset: u64, max: u64, ended: bool) -> StreamPage {
    crate::page::page_of(buffer.kept(), buffer.total(), offset, max, ended)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::StreamBuffer;
    use crate::protocol::FileEncoding;

    #[test]
    fn pages_never_split_a_character() {
        let mut buffer = StreamBuffer::new(1024);
        buffer.append("aé€b".as_bytes());
        let first = page(&buffer, 0, 3, true);
        assert_eq!(first.data, "aé");
        assert_eq!(first.next_offset, 3);
        let second = page(&buffer, first.next_offset, 100, true);
        assert_eq!(second.data, "€b");
        assert!(second.eof);
    }

    #[test]
    fn binary_pages_are_base64() {
        let mut buffer = StreamBuffer::new(1024);
        buffer.append(&[0xff, 0x00, 0xfe]);
        let window = page(&buffer, 0, 100, false);
        assert_eq!(window.encoding, FileEncoding::Base64);
        assert!(!window.eof);
    }
}
