//! A job's state as an enum whose variants carry their own data: a queued job has no start
//! time, a running job has no exit code, and an ended job always says why it ended.

use crate::exec::ExitInfo;
use crate::protocol::{EndReason, JobStatus, Phase};
use std::time::SystemTime;

#[derive(Debug, Clone)]
pub enum JobState {
    Queued,
    Active {
        phase: ActivePhase,
        started_at: SystemTime,
    },
    Ended(Ended),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivePhase {
    Init,
    Prepare,
    Execute,
    Collect,
    Destroy,
}

#[derive(Debug, Clone)]
pub struct Ended {
    /// None for a job that never left the queue.
    pub started_at: Option<SystemTime>,
    pub ended_at: SystemTime,
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Exited {
        code: i32,
    },
    Signaled {
        signal: i32,
    },
    PrepareFailed(String),
    SpawnFailed(String),
    TimedOut {
        exit: Option<ExitInfo>,
    },
    Cancelled {
        message: Option<String>,
        exit: Option<ExitInfo>,
    },
    Killed {
        reason: KillReason,
        exit: Option<ExitInfo>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    MemoryLimit,
    OutputLimit,
    PidsLimit,
    CpuTimeLimit,
    WorkerShutdown,
    DiskLimit,
}

impl KillReason {
    fn end_reason(self) -> EndReason {
        match self {
            KillReason::MemoryLimit => EndReason::MemoryLimit,
            KillReason::OutputLimit => EndReason::OutputLimit,
            KillReason::PidsLimit => EndReason::PidsLimit,
            KillReason::CpuTimeLimit => EndReason::CpuTimeLimit,
            KillReason::WorkerShutdown => EndReason::WorkerShutdown,
            KillReason::DiskLimit => EndReason::DiskLimit,
        }
    }
}

/// Why the worker stopped a running job early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopRequest {
    Cancel(Option<String>),
    Shutdown,
}

impl JobState {
    pub fn status(&self) -> JobStatus {
        match self {
            JobState::Queued => JobStatus::Queued,
            JobState::Active { .. } => JobStatus::Running,
            JobState::Ended(ended) => ended.outcome.status(),
        }
    }

    pub fn phase(&self) -> Phase {
        match self {
            JobState::Queued => Phase::Init,
            JobState::Active { phase, .. } => match phase {
                ActivePhase::Init => Phase::Init,
                ActivePhase::Prepare => Phase::Prepare,
                ActivePhase::Execute => Phase::Execute,
                ActivePhase::Collect => Phase::Collect,
                ActivePhase::Destroy => Phase::Destroy,
            },
            JobState::Ended(_) => Phase::Done,
        }
    }

    pub fn started_at(&self) -> Option<SystemTime> {
        match self {
            JobState::Queued => None,
            JobState::Active { started_at, .. } => Some(*started_at),
            JobState::Ended(ended) => ended.started_at,
        }
    }

    pub fn ended(&self) -> Option<&Ended> {
        match self {
            JobState::Ended(ended) => Some(ended),
            _ => None,
        }
    }
}

impl Outcome {
    pub fn status(&self) -> JobStatus {
        match self {
            Outcome::Exited { code: 0 } => JobStatus::Finished,
            Outcome::Exited { .. }
            | Outcome::Signaled { .. }
            | Outcome::PrepareFailed(_)
            | Outcome::SpawnFailed(_) => JobStatus::Failed,
            Outcome::TimedOut { .. } => JobStatus::Timeout,
            Outcome::Cancelled { .. } => JobStatus::Cancelled,
            Outcome::Killed { .. } => JobStatus::Killed,
        }
    }

    pub fn reason(&self) -> Option<EndReason> {
        match self {
            Outcome::Exited { code: 0 } => None,
            Outcome::Exited { .. } => Some(EndReason::ExitCode),
            Outcome::Signaled { .. } => Some(EndReason::Signal),
            Outcome::PrepareFailed(_) => Some(EndReason::PrepareError),
            Outcome::SpawnFailed(_) => Some(EndReason::SpawnError),
            Outcome::TimedOut { .. } => Some(EndReason::Timeout),
            Outcome::Cancelled { .. } => Some(EndReason::Cancelled),
            Outcome::Killed { reason, .. } => Some(reason.end_reason()),
        }
    }

    pub fn exit(&self) -> Option<ExitInfo> {
        match self {
            Outcome::Exited { code } => Some(ExitInfo::Exited(*code)),
            Outcome::Signaled { signal } => Some(ExitInfo::Signaled(*signal)),
            Outcome::PrepareFailed(_) | Outcome::SpawnFailed(_) => None,
            Outcome::TimedOut { exit }
            | Outcome::Cancelled { exit, .. }
            | Outcome::Killed { exit, .. } => *exit,
        }
    }

    pub fn message(&self) -> Option<String> {
        match self {
            Outcome::Exited { .. } | Outcome::Signaled { .. } => None,
            Outcome::PrepareFailed(message) | Outcome::SpawnFailed(message) => {
                Some(message.clone())
            }
            Outcome::TimedOut { .. } => Some("the wall-clock limit (limits.timeout) passed".into()),
            Outcome::Cancelled { message, .. } => message.clone(),
            Outcome::Killed { reason, .. } => Some(
                match reason {
                    KillReason::MemoryLimit => "the job used more memory than limits.memory",
                    KillReason::OutputLimit => {
                        "the job wrote more output than limits.output; what fit was kept"
                    }
                    KillReason::PidsLimit => "the job ran more processes than limits.pids",
                    KillReason::CpuTimeLimit => "a process of the job used up its CPU time",
                    KillReason::WorkerShutdown => "the worker shut down",
                    KillReason::DiskLimit => {
                        "the job's overlay layer outgrew workspace.max_upper_bytes (or all layers \
                         workspace.max_total_upper_bytes); what it wrote so far is in `changes`"
                    }
                }
                .into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_only_for_exit_zero() {
        assert_eq!(Outcome::Exited { code: 0 }.status(), JobStatus::Finished);
        assert_eq!(Outcome::Exited { code: 0 }.reason(), None);
        assert_eq!(Outcome::Exited { code: 3 }.status(), JobStatus::Failed);
        assert_eq!(
            Outcome::Exited { code: 3 }.reason(),
            Some(EndReason::ExitCode)
        );
        let killed = Outcome::Killed {
            reason: KillReason::OutputLimit,
            exit: None,
        };
        assert_eq!(killed.status(), JobStatus::Killed);
        assert_eq!(killed.reason(), Some(EndReason::OutputLimit));
    }
}
