//! Routing across workers: which worker a job goes to, the fleet's own queue for jobs no worker
//! has room for, and answering for a job wherever it runs.
//!
//! A job leaves the fleet's queue only for a worker with a free slot, so a remote never queues
//! our jobs: when a host is lost, every job sent to it may have started (it ends `worker_lost`)
//! and every job still here has not (it waits for another worker).

mod answers;
mod metrics;
mod mirror;

use super::candidates::candidates;
use super::executor::{Executor, LocalExecutor, Placed};
use super::job::{Captured, EndedRun, RoutedJob, RoutedState, Ticket};
use super::remote::Signal;
use crate::error::WorkerError;
use crate::protocol::*;
use crate::sync::lock;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub struct Member {
    pub name: String,
    pub labels: Vec<String>,
    pub executor: Arc<dyn Executor>,
    dispatched: AtomicU64,
    lost: AtomicU64,
}

struct Book {
    jobs: HashMap<String, Arc<RoutedJob>>,
    queue: VecDeque<Arc<RoutedJob>>,
    /// Ended jobs in the order they ended, for retention.
    ended: VecDeque<Arc<RoutedJob>>,
    in_flight: Vec<usize>,
    accepting: bool,
}

pub struct Router {
    /// This process's pool: it plans every job, and answers for the jobs it runs.
    pub local: Arc<LocalExecutor>,
    pub members: Vec<Member>,
    /// The local member, when the local pool takes jobs.
    local_member: Option<usize>,
    /// Some member is remote: jobs that may go there are held and routed here.
    routing: bool,
    book: Mutex<Book>,
    retain: Duration,
    retain_jobs: usize,
    max_queued: usize,
    history_bytes: u64,
    cancel_patience: Duration,
}

/// Room a cancel reply waits beyond the kill grace for the remote's end event.
const CANCEL_SLACK: Duration = Duration::from_secs(3);

impl Member {
    pub fn new(name: String, labels: Vec<String>, executor: Arc<dyn Executor>) -> Member {
        Member {
            name,
            labels,
            executor,
            dispatched: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        }
    }

    fn is_local(&self) -> bool {
        self.executor.kind() == WorkerKind::Local
    }
}

impl Router {
    pub fn new(local: Arc<LocalExecutor>, members: Vec<Member>) -> Arc<Router> {
        let config = local.worker.pool.config();
        let book = Book {
            jobs: HashMap::new(),
            queue: VecDeque::new(),
            ended: VecDeque::new(),
            in_flight: vec![0; members.len()],
            accepting: true,
        };
        Arc::new(Router {
            local_member: members.iter().position(Member::is_local),
            routing: members.iter().any(|m| !m.is_local()),
            retain: Duration::from_secs(config.worker.retain_secs),
            retain_jobs: config.worker.retain_jobs,
            max_queued: config.worker.max_queued,
            history_bytes: config.worker.event_history_bytes.bytes(),
            cancel_patience: Duration::from_millis(config.session.kill_grace_ms) + CANCEL_SLACK,
            local,
            members,
            book: Mutex::new(book),
        })
    }

    /// Starts one supervisor per remote and the tasks that place queued jobs when a remote
    /// connects or a local slot frees up. A lone local worker needs none of them.
    pub fn start(self: &Arc<Self>) {
        if !self.routing {
            return;
        }
        for member in &self.members {
            let Some(mut dropped) = member.executor.load_dropped() else {
                continue;
            };
            let router = Arc::downgrade(self);
            tokio::spawn(async move {
                while dropped.changed().await.is_ok() {
                    let Some(router) = router.upgrade() else {
                        return;
                    };
                    router.pump();
                }
            });
        }
        let (signals, mut heard) = mpsc::unbounded_channel();
        for (index, member) in self.members.iter().enumerate() {
            member.executor.start(index, signals.clone());
        }
        let router = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(signal) = heard.recv().await {
                let Some(router) = router.upgrade() else {
                    return;
                };
                let (Signal::Up { member } | Signal::Down { member }) = &signal;
                tracing::debug!(worker = %router.members[*member].name, ?signal, "fleet link change");
                router.pump();
            }
        });
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        lock(&self.book)
    }

    /// The workers a job may run on, or which field rules every worker out.
    pub fn candidates(&self, spec: &JobSpec) -> Result<Vec<usize>, WorkerError> {
        let mut chosen = candidates(
            self.members
                .iter()
                .map(|m| (m.name.as_str(), m.labels.as_slice())),
            spec,
        )?;
        if spec.workspace.is_some() {
            // A remote worker has no access to this machine's project.
            chosen.retain(|&m| self.members[m].is_local());
            if chosen.is_empty() {
                return Err(WorkerError::invalid_params(
                    "workspace",
                    "a workspace job runs only on the local worker: the worker(s) this job may \
                     run on are remote and cannot see this machine's project",
                ));
            }
        }
        Ok(chosen)
    }

    fn reaches_remote(&self, candidates: &[usize]) -> bool {
        candidates.iter().any(|&m| !self.members[m].is_local())
    }

    fn pick(&self, book: &Book, candidates: &[usize]) -> Option<usize> {
        candidates
            .iter()
            .copied()
            .filter_map(|index| {
                let executor = &self.members[index].executor;
                let capacity = executor.capacity();
                // `in_flight` holds placements on their way, and every remote job; a member
                // that keeps its own book counts its jobs itself.
                let used = book.in_flight[index] + executor.load();
                (used < capacity).then_some((index, used as f64 / capacity as f64))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(index, _)| index)
    }

    fn find(&self, job_id: &str) -> Option<Arc<RoutedJob>> {
        if !self.routing {
            // Every job went straight to the pool: the book stays empty, skip its lock.
            return None;
        }
        let mut book = self.book();
        self.expire(&mut book);
        book.jobs.get(job_id).cloned()
    }

    fn expire(&self, book: &mut Book) {
        while let Some(oldest) = book.ended.front() {
            let too_many = book.ended.len() > self.retain_jobs;
            let too_old = match &*oldest.state() {
                RoutedState::Ended(run) => run.at.elapsed() > self.retain,
                _ => true,
            };
            if !too_many && !too_old {
                break;
            }
            if let Some(gone) = book.ended.pop_front()
                && book
                    .jobs
                    .get(&gone.id)
                    .is_some_and(|j| Arc::ptr_eq(j, &gone))
            {
                book.jobs.remove(&gone.id);
            }
        }
    }

    pub async fn dispatch(self: &Arc<Self>, mut spec: JobSpec) -> Result<Job, WorkerError> {
        let candidates = self.candidates(&spec)?;
        spec.worker = None;
        spec.labels = None;
        // Checked once, here, as the lone worker checks it: a job that would queue is refused
        // now, not failed when a slot frees up. Governance maximums are each worker's own, so
        // a job over ours waits for a remote that may allow it (which then answers for itself).
        if !self.reaches_remote(&candidates) {
            return self.dispatch_local(spec).await;
        }
        let plan = match self.local.plan(spec.clone()) {
            Ok(plan) => Some(plan),
            Err(WorkerError::LimitOverMaximum { .. }) if self.reaches_remote(&candidates) => None,
            Err(error) => return Err(error),
        };
        // Valid by now: the plan checked them before the maximums.
        let job_id = plan.as_ref().map_or_else(
            || {
                spec.job_id
                    .clone()
                    .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
            },
            |plan| plan.job_id.clone(),
        );
        // The wait is on the routed job, which ends when the pool's or the remote's does.
        let wait = spec.wait_ms.take().map(Duration::from_millis);
        let plan = plan.map(|plan| crate::plan::JobPlan {
            wait_ms: None,
            ..plan
        });
        spec.job_id = Some(job_id.clone());
        let placed = {
            let mut book = self.book();
            self.expire(&mut book);
            if !book.accepting {
                return Err(WorkerError::ShuttingDown);
            }
            if book.jobs.contains_key(&job_id) || self.local.knows(&job_id) {
                return Err(WorkerError::DuplicateJob { job_id });
            }
            let job = Arc::new(RoutedJob::new(
                job_id.clone(),
                Ticket { spec, plan },
                candidates,
                self.history_bytes,
            ));
            let member = self.pick(&book, &job.candidates);
            let ticket = match member {
                Some(member) => {
                    book.in_flight[member] += 1;
                    job.begin_placing(member)
                }
                None if book.queue.len() >= self.max_queued => {
                    return Err(WorkerError::Busy {
                        active: book.in_flight.iter().sum::<usize>() as u64,
                        queued: book.queue.len() as u64,
                        limit: self.max_queued as u64,
                    });
                }
                None => {
                    book.queue.push_back(job.clone());
                    None
                }
            };
            book.jobs.insert(job_id, job.clone());
            (job, member.zip(ticket))
        };
        let (job, placement) = placed;
        tracing::info!(job_id = %job.id, worker = placement.as_ref().map(|(m, _)| self.members[*m].name.as_str()), queued = placement.is_none(), "job routed");
        if let Some((member, ticket)) = placement {
            self.place(job.clone(), member, ticket).await?;
        }
        if let Some(wait) = wait {
            let _ = tokio::time::timeout(wait, job.wait_ended()).await;
        }
        Ok(self.view(&job, true))
    }

    /// A job only the local pool may run goes straight to it: its queue and its book are the
    /// only ones, as for a lone worker.
    async fn dispatch_local(&self, spec: JobSpec) -> Result<Job, WorkerError> {
        let plan = self.local.plan(spec)?;
        // Without remotes the book stays empty and the pool answers shutting-down itself.
        if self.routing {
            let book = self.book();
            if !book.accepting {
                return Err(WorkerError::ShuttingDown);
            }
            if book.jobs.contains_key(&plan.job_id) {
                return Err(WorkerError::DuplicateJob {
                    job_id: plan.job_id,
                });
            }
        }
        let mut view = self.local.run_plan(plan, None).await?;
        if let Some(member) = self.local_member {
            self.members[member]
                .dispatched
                .fetch_add(1, Ordering::Relaxed);
            view.worker = self.worker_name(member);
        }
        Ok(view)
    }

    /// The name a job's view carries: none for a lone worker.
    fn worker_name(&self, member: usize) -> Option<String> {
        self.routing.then(|| self.members[member].name.clone())
    }

    /// Hands a job to `member`. On error the job is gone again (nothing ran).
    async fn place(
        self: &Arc<Self>,
        job: Arc<RoutedJob>,
        member: usize,
        ticket: Ticket,
    ) -> Result<(), WorkerError> {
        let executor = &self.members[member].executor;
        match executor.place(member, &job, ticket).await {
            Placed::Running(state) => {
                self.members[member]
                    .dispatched
                    .fetch_add(1, Ordering::Relaxed);
                let cancel = settle(&job, state);
                if executor.keeps_book() {
                    // The member holds the job and counts its load from now on.
                    self.unplace(&job, member);
                }
                let mirrored = match &*job.state() {
                    RoutedState::Remote(run) => Some(run.live.clone()),
                    _ => None,
                };
                if let Some(live) = mirrored {
                    tokio::spawn(mirror::follow(self.clone(), job.clone(), live));
                }
                executor.admitted(job, cancel).await;
                Ok(())
            }
            Placed::Unreachable(ticket) => {
                // It never left this process: back to the front of the queue.
                *job.state() = RoutedState::Pending(ticket);
                let mut book = self.book();
                book.in_flight[member] -= 1;
                book.queue.push_front(job);
                Ok(())
            }
            Placed::Refused(error) => {
                self.unplace(&job, member);
                Err(error)
            }
            Placed::Lost(why) => {
                let base = job.unplaced_view(Some(self.members[member].name.clone()));
                self.lose(
                    &job,
                    member,
                    base,
                    Captured::default(),
                    Captured::default(),
                    &why,
                );
                Ok(())
            }
        }
    }

    /// A placement that failed before anything ran: the id is free again.
    fn unplace(&self, job: &Arc<RoutedJob>, member: usize) {
        let mut book = self.book();
        book.in_flight[member] -= 1;
        if book.jobs.get(&job.id).is_some_and(|j| Arc::ptr_eq(j, job)) {
            book.jobs.remove(&job.id);
        }
    }

    /// A remote job's end, copied here.
    pub(super) fn remote_ended(self: &Arc<Self>, job: &Arc<RoutedJob>, run: EndedRun) {
        let member = run.member;
        if job.finish(run, false) {
            self.retire(job, member);
        }
    }

    /// The host running the job is gone: the job ends `worker_lost`.
    pub(super) fn lose(
        self: &Arc<Self>,
        job: &Arc<RoutedJob>,
        member: usize,
        base: Job,
        stdout: Captured,
        stderr: Captured,
        why: &str,
    ) {
        let name = &self.members[member].name;
        let view = job.ended_by_fleet(
            base,
            JobStatus::Failed,
            EndReason::WorkerLost,
            format!("worker `{name}` was lost while it had this job: {why}"),
        );
        tracing::warn!(job_id = %job.id, worker = %name, reason = %why, "job lost with its worker");
        let run = EndedRun {
            member: Some(member),
            job: view,
            stdout,
            stderr,
            artifacts: None,
            at: Instant::now(),
        };
        if job.finish(run, true) {
            self.members[member].lost.fetch_add(1, Ordering::Relaxed);
            self.retire(job, Some(member));
        }
    }

    fn retire(self: &Arc<Self>, job: &Arc<RoutedJob>, member: Option<usize>) {
        {
            let mut book = self.book();
            if let Some(member) = member {
                book.in_flight[member] -= 1;
            }
            book.ended.push_back(job.clone());
            self.expire(&mut book);
        }
        self.pump();
    }

    /// Places queued jobs, oldest first, on workers with room; a job whose workers are all full
    /// does not hold back the ones behind it.
    pub fn pump(self: &Arc<Self>) {
        let placements: Vec<(Arc<RoutedJob>, usize, Ticket)> = {
            let mut book = self.book();
            if !book.accepting {
                return;
            }
            let mut placements = Vec::new();
            let mut index = 0;
            while index < book.queue.len() {
                match self.pick(&book, &book.queue[index].candidates) {
                    Some(member) => {
                        // A queued job is pending (a cancel takes it out of the queue under
                        // this same lock), so it always has its ticket.
                        if let Some(job) = book.queue.remove(index)
                            && let Some(ticket) = job.begin_placing(member)
                        {
                            book.in_flight[member] += 1;
                            placements.push((job, member, ticket));
                        }
                    }
                    None => index += 1,
                }
            }
            placements
        };
        for (job, member, ticket) in placements {
            let router = self.clone();
            tokio::spawn(async move {
                if let Err(error) = router.place(job.clone(), member, ticket).await {
                    // Nobody is waiting on a reply: the job itself carries the refusal.
                    let base = job.unplaced_view(Some(router.members[member].name.clone()));
                    let view = job.ended_by_fleet(
                        base,
                        JobStatus::Failed,
                        EndReason::PrepareError,
                        format!(
                            "worker `{}` refused the job: {error}",
                            router.members[member].name
                        ),
                    );
                    router.book().jobs.insert(job.id.clone(), job.clone());
                    if job.finish(EndedRun::unran(view), true) {
                        router.retire(&job, None);
                    }
                }
            });
        }
    }

    /// Whether jobs may leave this process (some member is remote).
    pub fn is_routing(&self) -> bool {
        self.routing
    }

    /// Stops taking jobs, ends the queued ones, closes every remote link (each remote worker
    /// sees its stdin end and stops its jobs) and marks their jobs ended with the worker.
    pub fn shutdown(&self) {
        let (queued, routed) = {
            let mut book = self.book();
            book.accepting = false;
            let queued: Vec<_> = book.queue.drain(..).collect();
            let routed: Vec<_> = book.jobs.values().cloned().collect();
            (queued, routed)
        };
        for job in queued.iter().chain(routed.iter()) {
            let base = match &*job.state() {
                RoutedState::Pending(_) => job.unplaced_view(None),
                RoutedState::Placing { member, .. } => {
                    job.unplaced_view(Some(self.members[*member].name.clone()))
                }
                RoutedState::Remote(run) => run.view(),
                RoutedState::Local { .. } | RoutedState::Ended(_) => continue,
            };
            let view = job.ended_by_fleet(
                base,
                JobStatus::Killed,
                EndReason::WorkerShutdown,
                "the worker shut down; a remote job is stopped with it".into(),
            );
            job.finish(EndedRun::unran(view), true);
        }
        for member in &self.members {
            member.executor.stop();
        }
    }
}

/// Moves a job out of `Placing` into where it now runs; returns a cancel that came meanwhile.
fn settle(job: &RoutedJob, next: RoutedState) -> Option<Option<String>> {
    let mut state = job.state();
    let cancel = match &mut *state {
        RoutedState::Placing { cancel, .. } => cancel.take(),
        _ => None,
    };
    *state = next;
    cancel
}

#[cfg(test)]
mod tests;
