//! A job as the fleet holds it: waiting for a worker, being handed to one, running on the local
//! pool or a remote host, or ended. A remote job's output, artifacts and result are copied here
//! as they arrive, so they outlive the host that produced them.

use super::remote::Live;
use crate::eventlog::EventLog;
use crate::protocol::{Artifact, EndReason, Job, JobStatus, Phase};
use crate::sync::lock;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};
use tokio::sync::watch;

pub struct RoutedJob {
    pub id: String,
    pub created_at: SystemTime,
    /// The command line as listings show it.
    pub command: String,
    /// Indices of the workers this job may run on.
    pub candidates: Vec<usize>,
    /// Subscribers follow this from admission on; a local pool continues the same log.
    pub log: Arc<EventLog>,
    state: Mutex<RoutedState>,
    ended: watch::Sender<bool>,
}

/// What a job not yet handed to a worker carries: the spec a remote worker gets (it checks again
/// under its own config) and the plan the local pool runs. No plan: the job asks more than this
/// worker's governance allows, which only a remote that allows it may take.
pub struct Ticket {
    pub spec: crate::protocol::JobSpec,
    pub plan: Option<crate::plan::JobPlan>,
}

pub enum RoutedState {
    /// In the fleet's queue: no worker has seen it.
    Pending(Box<Ticket>),
    /// Its dispatch request is on its way to `member`.
    Placing {
        member: usize,
        /// A cancel that came while the request was in flight: `Some(reason)`.
        cancel: Option<Option<String>>,
    },
    /// Admitted by the local pool, which answers for it.
    Local {
        member: usize,
    },
    Remote(Box<RemoteRun>),
    Ended(Box<EndedRun>),
}

pub struct RemoteRun {
    pub member: usize,
    pub live: Arc<Live>,
    /// The job as last reported, kept current by its events.
    pub last: Job,
    pub stdout: Captured,
    pub stderr: Captured,
    /// False once the event stream lagged: the copy has holes and is refetched at the end.
    pub complete: bool,
}

pub struct EndedRun {
    pub member: Option<usize>,
    /// The result without output bodies, as `worker_get_status` shows it.
    pub job: Job,
    pub stdout: Captured,
    pub stderr: Captured,
    pub artifacts: Option<Vec<Artifact>>,
    pub at: Instant,
}

/// A copy of one output stream: the bytes the worker kept, and how many the job wrote.
#[derive(Debug, Default, Clone)]
pub struct Captured {
    pub data: Vec<u8>,
    pub total: u64,
}

impl RoutedJob {
    pub fn new(id: String, ticket: Ticket, candidates: Vec<usize>, history_bytes: u64) -> Self {
        let created = Instant::now();
        let spec = &ticket.spec;
        let command = crate::plan::clip_command_line(match (&spec.command, &spec.argv) {
            (Some(command), _) => command.clone(),
            (None, Some(argv)) => argv.join(" "),
            (None, None) => String::new(),
        });
        let log = Arc::new(EventLog::new(history_bytes, created));
        log.state(JobStatus::Queued, Phase::Init);
        RoutedJob {
            id,
            created_at: SystemTime::now(),
            command,
            candidates,
            log,
            state: Mutex::new(RoutedState::Pending(Box::new(ticket))),
            ended: watch::channel(false).0,
        }
    }

    pub fn state(&self) -> MutexGuard<'_, RoutedState> {
        lock(&self.state)
    }

    /// Out of the queue, on its way to `member`: the ticket, unless it already left.
    pub fn begin_placing(&self, member: usize) -> Option<Ticket> {
        let mut state = self.state();
        if !matches!(*state, RoutedState::Pending(_)) {
            return None;
        }
        let placing = RoutedState::Placing {
            member,
            cancel: None,
        };
        match std::mem::replace(&mut *state, placing) {
            RoutedState::Pending(ticket) => Some(*ticket),
            _ => None,
        }
    }

    /// A job the local pool ran has ended (the pool holds its result).
    pub fn mark_ended(&self) {
        self.ended.send_replace(true);
    }

    pub fn is_ended(&self) -> bool {
        *self.ended.borrow()
    }

    pub async fn wait_ended(&self) {
        let mut ended = self.ended.subscribe();
        let _ = ended.wait_for(|ended| *ended).await;
    }

    /// Records the end, tells subscribers and waiters; `announce` adds the final state event
    /// (a remote's own stream already carried it). Later calls change nothing.
    pub fn finish(&self, run: EndedRun, announce: bool) -> bool {
        {
            let mut state = self.state();
            if matches!(*state, RoutedState::Ended(_)) {
                return false;
            }
            if announce {
                self.log.state(run.job.status, Phase::Done);
            }
            self.log.end(run.job.clone());
            *state = RoutedState::Ended(Box::new(run));
        }
        self.ended.send_replace(true);
        true
    }

    /// The job as the fleet knows it before any worker reported on it.
    pub fn unplaced_view(&self, worker: Option<String>) -> Job {
        Job {
            job_id: self.id.clone(),
            session_id: String::new(),
            worker,
            status: JobStatus::Queued,
            phase: Phase::Init,
            created_at: crate::protocol::rfc3339(self.created_at),
            started_at: None,
            ended_at: None,
            exit_code: None,
            signal: None,
            reason: None,
            message: None,
            stdout: None,
            stderr: None,
            stdout_truncated: None,
            stderr_truncated: None,
            stdout_bytes: Some(0),
            stderr_bytes: Some(0),
            artifacts: None,
            metrics: None,
            isolation: None,
            policy_audit: None,
            network_denied: None,
            changes: None,
        }
    }

    /// An end the fleet decides itself (cancelled or shut down before any worker had it, or
    /// the worker lost): `base` is what was known so far.
    pub fn ended_by_fleet(
        &self,
        mut base: Job,
        status: JobStatus,
        reason: EndReason,
        message: String,
    ) -> Job {
        base.status = status;
        base.phase = Phase::Done;
        base.reason = Some(reason);
        base.message = Some(message);
        base.ended_at = Some(crate::protocol::rfc3339(SystemTime::now()));
        base.stdout = None;
        base.stderr = None;
        base.artifacts = None;
        base
    }
}

impl EndedRun {
    /// An end decided before any output existed.
    pub fn unran(job: Job) -> EndedRun {
        EndedRun {
            member: None,
            job,
            stdout: Captured::default(),
            stderr: Captured::default(),
            artifacts: None,
            at: Instant::now(),
        }
    }

    pub fn view(&self, with_result: bool) -> Job {
        let mut job = self.job.clone();
        if with_result {
            job.stdout = Some(String::from_utf8_lossy(&self.stdout.data).into_owned());
            job.stderr = Some(String::from_utf8_lossy(&self.stderr.data).into_owned());
            job.artifacts = self.artifacts.clone();
        }
        job
    }
}

impl RemoteRun {
    pub fn view(&self) -> Job {
        let mut job = self.last.clone();
        job.stdout_bytes = Some(self.stdout.total);
        job.stderr_bytes = Some(self.stderr.total);
        job
    }
}
