//! One job as the pool holds it: its plan, its state, its output, and the channels its runner
//! listens and answers on.

use super::state::{ActivePhase, Ended, JobState, StopRequest};
use crate::eventlog::{EventLog, Stream};
use crate::exec::StreamBuffer;
use crate::plan::JobPlan;
use crate::protocol::rfc3339;
use crate::protocol::{Artifact, Job, JobMetrics, JobSummary};
pub use crate::sync::lock;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};
use tokio::sync::watch;

pub struct JobEntry {
    /// The spec as planned, without its inputs (see `inputs`).
    pub plan: JobPlan,
    /// Files and stdin, until the runner takes them or the job ends unstarted: a queued job
    /// needs them, a started or ended one does not, so retention never holds them.
    inputs: Mutex<Option<Inputs>>,
    pub session_id: String,
    pub created_at: SystemTime,
    pub created: Instant,
    pub stdout: Arc<Mutex<StreamBuffer>>,
    pub stderr: Arc<Mutex<StreamBuffer>>,
    /// State changes and output chunks for subscribers, bounded in bytes.
    pub events: Arc<EventLog>,
    record: Mutex<Record>,
    ended: watch::Sender<bool>,
    stop: watch::Sender<Option<StopRequest>>,
}

#[derive(Default)]
pub struct Inputs {
    pub files: Vec<crate::session::InjectedFile>,
    pub stdin: Option<Vec<u8>>,
}

pub struct Record {
    pub state: JobState,
    pub artifacts: Option<Vec<Artifact>>,
    pub metrics: JobMetrics,
    /// The isolation layers the job actually ran under.
    pub layers: Option<Vec<crate::sandbox::AppliedLayer>>,
    /// What an `overlay` workspace job changed.
    pub changes: Option<crate::protocol::WorkspaceChanges>,
}

impl JobEntry {
    /// `events`: a log the job's subscribers already follow (a job the fleet held back before
    /// it came here); absent, a new one.
    pub fn new(
        mut plan: JobPlan,
        config: &crate::config::Config,
        events: Option<Arc<EventLog>>,
    ) -> Self {
        let output_cap = plan.limits.output;
        let metrics = JobMetrics {
            limits: plan.limits.clone(),
            ..JobMetrics::default()
        };
        let created = Instant::now();
        let events = events.unwrap_or_else(|| {
            Arc::new(EventLog::new(
                config.worker.event_history_bytes.bytes(),
                created,
            ))
        });
        events.state(
            crate::protocol::JobStatus::Queued,
            crate::protocol::Phase::Init,
        );
        let keep = config.session.output_keep_bytes.map(|b| b.bytes());
        let buffer = |stream: Stream| {
            let events = events.clone();
            let tap: crate::exec::Tap = Box::new(move |chunk| events.output(stream, chunk));
            Arc::new(Mutex::new(
                StreamBuffer::new(output_cap).with(keep, Some(tap)),
            ))
        };
        let inputs = Inputs {
            files: std::mem::take(&mut plan.files),
            stdin: plan.stdin.take(),
        };
        JobEntry {
            inputs: Mutex::new(Some(inputs)),
            session_id: uuid::Uuid::now_v7().simple().to_string(),
            created_at: SystemTime::now(),
            created,
            stdout: buffer(Stream::Stdout),
            stderr: buffer(Stream::Stderr),
            events,
            record: Mutex::new(Record {
                state: JobState::Queued,
                artifacts: None,
                metrics,
                layers: None,
                changes: None,
            }),
            ended: watch::channel(false).0,
            stop: watch::channel(None).0,
            plan,
        }
    }

    pub fn id(&self) -> &str {
        &self.plan.job_id
    }

    /// The job's files and stdin, once; later calls get none.
    pub fn take_inputs(&self) -> Inputs {
        lock(&self.inputs).take().unwrap_or_default()
    }

    pub fn record(&self) -> MutexGuard<'_, Record> {
        lock(&self.record)
    }

    pub fn activate(&self) {
        self.record().state = JobState::Active {
            phase: ActivePhase::Init,
            started_at: SystemTime::now(),
        };
        self.log_state();
    }

    pub fn set_phase(&self, next: ActivePhase) {
        if let JobState::Active { phase, .. } = &mut self.record().state {
            *phase = next;
        }
        self.log_state();
    }

    fn log_state(&self) {
        let (status, phase) = {
            let record = self.record();
            (record.state.status(), record.state.phase())
        };
        self.events.state(status, phase);
    }

    /// Records the end and wakes everyone waiting for it. Ending twice keeps the first end.
    pub fn end(&self, ended: Ended) {
        {
            let mut record = self.record();
            if matches!(record.state, JobState::Ended(_)) {
                return;
            }
            record.state = JobState::Ended(ended);
        }
        drop(self.take_inputs());
        self.events.end(self.view(false));
        self.ended.send_replace(true);
    }

    pub fn is_ended(&self) -> bool {
        *self.ended.borrow()
    }

    /// Resolves once the job has ended.
    pub async fn wait_ended(&self) {
        let mut ended = self.ended.subscribe();
        let _ = ended.wait_for(|done| *done).await;
    }

    /// Asks the runner to stop the job; the first request wins.
    pub fn request_stop(&self, request: StopRequest) {
        self.stop.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(request);
                true
            } else {
                false
            }
        });
    }

    pub fn stop_requests(&self) -> watch::Receiver<Option<StopRequest>> {
        self.stop.subscribe()
    }

    /// Bytes this job holds in memory while retained.
    pub fn retained_bytes(&self) -> u64 {
        let output = lock(&self.stdout).kept().len() + lock(&self.stderr).kept().len();
        let artifacts: usize = self
            .record()
            .artifacts
            .iter()
            .flatten()
            .filter_map(|a| a.content.as_ref().map(String::len))
            .sum();
        (output + artifacts + self.plan_bytes()) as u64 + self.events.held_bytes()
    }

    /// What the plan itself still holds once its inputs are gone: the command and environment
    /// can be megabytes too.
    fn plan_bytes(&self) -> usize {
        let program = match &self.plan.program {
            crate::exec::Program::Shell(command) => command.len(),
            crate::exec::Program::Argv(argv) => argv.iter().map(String::len).sum(),
        };
        let env: usize = self.plan.env.iter().map(|(k, v)| k.len() + v.len()).sum();
        program + env
    }

    pub fn summary(&self) -> JobSummary {
        JobSummary::of(self.view(false), self.plan.command_line())
    }

    /// The wire view; output bodies and artifacts only when asked for and the job has ended.
    pub fn view(&self, with_result: bool) -> Job {
        let record = self.record();
        let ended = record.state.ended();
        let exit = ended.and_then(|e| e.outcome.exit());
        let (stdout, stderr) = (lock(&self.stdout), lock(&self.stderr));
        let include = with_result && ended.is_some();
        Job {
            job_id: self.plan.job_id.clone(),
            session_id: self.session_id.clone(),
            worker: None,
            status: record.state.status(),
            phase: record.state.phase(),
            created_at: rfc3339(self.created_at),
            started_at: record.state.started_at().map(rfc3339),
            ended_at: ended.map(|e| rfc3339(e.ended_at)),
            exit_code: exit.and_then(crate::exec::ExitInfo::code),
            signal: exit.and_then(crate::exec::ExitInfo::signal),
            reason: ended.and_then(|e| e.outcome.reason()),
            message: ended.and_then(|e| e.outcome.message()),
            stdout: include.then(|| String::from_utf8_lossy(stdout.kept()).into_owned()),
            stderr: include.then(|| String::from_utf8_lossy(stderr.kept()).into_owned()),
            stdout_truncated: ended.map(|_| stdout.truncated()),
            stderr_truncated: ended.map(|_| stderr.truncated()),
            stdout_bytes: Some(stdout.total()),
            stderr_bytes: Some(stderr.total()),
            artifacts: if include {
                record.artifacts.clone()
            } else {
                None
            },
            metrics: ended.map(|_| record.metrics.clone()),
            isolation: record.layers.clone(),
            policy_audit: self.plan.policy_audit.clone(),
            network_denied: ended
                .and(record.metrics.network.as_ref())
                .map(|network| network.denied.clone()),
            changes: if include {
                record.changes.clone()
            } else {
                None
            },
        }
    }
}
