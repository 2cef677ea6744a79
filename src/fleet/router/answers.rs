//! The router's answers about one job or all of them (status, output, events, cancel, list),
//! wherever each job is: queued here, placed on the local pool, or running on a remote.

use super::Router;
use crate::error::WorkerError;
use crate::fleet::executor::remote_error;
use crate::fleet::job::{Captured, EndedRun, RoutedJob, RoutedState};
use crate::protocol::table;
use crate::protocol::*;
use std::sync::Arc;

impl Router {
    pub fn view(&self, job: &RoutedJob, with_result: bool) -> Job {
        let local = {
            let state = job.state();
            match &*state {
                RoutedState::Pending(_) => return job.unplaced_view(None),
                RoutedState::Placing { member, .. } => {
                    return job.unplaced_view(Some(self.members[*member].name.clone()));
                }
                RoutedState::Remote(run) => return run.view(),
                RoutedState::Ended(run) => return run.view(with_result),
                RoutedState::Local { member } => *member,
            }
        };
        self.local_view(&job.id, with_result, local)
            .unwrap_or_else(|_| job.unplaced_view(None))
    }

    fn local_view(
        &self,
        job_id: &str,
        with_result: bool,
        member: usize,
    ) -> Result<Job, WorkerError> {
        let mut job = self.local.view(job_id, with_result)?;
        job.worker = self.worker_name(member);
        Ok(job)
    }

    pub fn status(&self, job_id: &str) -> Result<Job, WorkerError> {
        match self.find(job_id) {
            Some(job) => Ok(self.view(&job, false)),
            None => self.local_lookup(job_id, false),
        }
    }

    fn local_lookup(&self, job_id: &str, with_result: bool) -> Result<Job, WorkerError> {
        match self.local_member {
            Some(member) => self.local_view(job_id, with_result, member),
            None => Err(WorkerError::UnknownJob {
                job_id: job_id.to_owned(),
            }),
        }
    }

    pub fn events(&self, job_id: &str) -> Result<Arc<crate::eventlog::EventLog>, WorkerError> {
        match self.find(job_id) {
            Some(job) => Ok(job.log.clone()),
            None if self.local_member.is_some() => self.local.events(job_id),
            None => Err(WorkerError::UnknownJob {
                job_id: job_id.to_owned(),
            }),
        }
    }

    pub async fn collect(&self, params: CollectParams) -> Result<CollectResult, WorkerError> {
        let max = crate::page::page_size(params.max_bytes)?;
        let Some(job) = self.find(&params.job_id) else {
            if self.local_member.is_none() {
                return Err(WorkerError::UnknownJob {
                    job_id: params.job_id,
                });
            }
            return self.local.collect(params).await;
        };
        let forward = {
            let state = job.state();
            match &*state {
                RoutedState::Local { .. } => None,
                RoutedState::Remote(run) => Some((run.live.clone(), run.member)),
                RoutedState::Ended(run) => {
                    let page = |c: &Captured| {
                        crate::page::page_of(&c.data, c.total, params.stream_offset, max, true)
                    };
                    return Ok(CollectResult {
                        job_id: run.job.job_id.clone(),
                        status: run.job.status,
                        phase: run.job.phase,
                        exit_code: run.job.exit_code,
                        reason: run.job.reason,
                        stdout: page(&run.stdout),
                        stderr: page(&run.stderr),
                        artifacts: if params.include_artifacts.unwrap_or(true) {
                            run.artifacts.clone()
                        } else {
                            None
                        },
                        metrics: run.job.metrics.clone(),
                    });
                }
                RoutedState::Pending(_) | RoutedState::Placing { .. } => {
                    let empty = crate::page::page_of(&[], 0, 0, max, false);
                    return Ok(CollectResult {
                        job_id: job.id.clone(),
                        status: JobStatus::Queued,
                        phase: Phase::Init,
                        exit_code: None,
                        reason: None,
                        stdout: empty.clone(),
                        stderr: empty,
                        artifacts: None,
                        metrics: None,
                    });
                }
            }
        };
        match forward {
            None => self.local.collect(params).await,
            Some((live, member)) => {
                match live
                    .connection
                    .request::<table::CollectOutput>(&params)
                    .await
                {
                    Ok(result) => Ok(result),
                    Err(error) => {
                        // The job may have ended (or been lost) meanwhile: answer from the copy.
                        if job.is_ended() {
                            return Box::pin(self.collect(params)).await;
                        }
                        Err(self.remote_error(member, error))
                    }
                }
            }
        }
    }

    fn remote_error(&self, member: usize, error: crate::fleet::client::CallError) -> WorkerError {
        remote_error(&self.members[member].name, error)
    }

    pub async fn cancel(&self, job_id: &str, reason: Option<String>) -> Result<Job, WorkerError> {
        let Some(job) = self.find(job_id) else {
            if self.local_member.is_none() {
                return Err(WorkerError::UnknownJob {
                    job_id: job_id.to_owned(),
                });
            }
            let mut view = self.local.cancel(job_id, reason).await?;
            view.worker = self.local_member.and_then(|m| self.worker_name(m));
            return Ok(view);
        };
        enum Next {
            Dequeued,
            Wait,
            Local(usize),
            Remote(Arc<crate::fleet::remote::Live>, usize),
            Done,
        }
        let next = {
            let mut book = self.book();
            let mut state = job.state();
            match &mut *state {
                RoutedState::Pending(_) => {
                    book.queue.retain(|queued| !Arc::ptr_eq(queued, &job));
                    Next::Dequeued
                }
                RoutedState::Placing { cancel, .. } => {
                    *cancel = Some(reason.clone());
                    Next::Wait
                }
                RoutedState::Local { member } => Next::Local(*member),
                RoutedState::Remote(run) => Next::Remote(run.live.clone(), run.member),
                RoutedState::Ended(_) => Next::Done,
            }
        };
        match next {
            Next::Dequeued => {
                let view = job.ended_by_fleet(
                    job.unplaced_view(None),
                    JobStatus::Cancelled,
                    EndReason::Cancelled,
                    reason.unwrap_or_else(|| "cancelled before any worker had it".into()),
                );
                if job.finish(EndedRun::unran(view), true) {
                    let mut book = self.book();
                    book.ended.push_back(job.clone());
                    self.expire(&mut book);
                }
            }
            Next::Wait => {
                let _ = tokio::time::timeout(self.cancel_patience, job.wait_ended()).await;
            }
            Next::Local(member) => {
                let mut view = self.local.cancel(job_id, reason).await?;
                view.worker = self.worker_name(member);
                return Ok(view);
            }
            Next::Remote(live, member) => {
                live.connection
                    .request::<table::CancelJob>(&CancelParams {
                        job_id: job_id.to_owned(),
                        reason,
                    })
                    .await
                    .map(|_| ())
                    .or_else(|error| match error {
                        // Lost: the job ends `worker_lost` by its follower, which we wait for.
                        crate::fleet::client::CallError::Lost(_) => Ok(()),
                        rpc => Err(self.remote_error(member, rpc)),
                    })?;
                let _ = tokio::time::timeout(self.cancel_patience, job.wait_ended()).await;
            }
            Next::Done => {}
        }
        Ok(self.view(&job, false))
    }

    pub fn list(&self, params: ListParams) -> ListResult {
        let mut sessions = Vec::new();
        if let Some(member) = self.local_member {
            let name = self.worker_name(member);
            sessions.extend(self.local.list(params.clone()).sessions.into_iter().map(
                |mut summary| {
                    summary.worker = name.clone();
                    summary
                },
            ));
        }
        if !self.routing {
            return ListResult { sessions };
        }
        let routed: Vec<Arc<RoutedJob>> = {
            let mut book = self.book();
            self.expire(&mut book);
            book.jobs.values().cloned().collect()
        };
        for job in routed {
            if matches!(*job.state(), RoutedState::Local { .. }) {
                continue;
            }
            let summary = JobSummary::of(self.view(&job, false), job.command.clone());
            if params.status.is_none_or(|wanted| wanted == summary.status) {
                sessions.push(summary);
            }
        }
        sessions.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        ListResult { sessions }
    }
}
