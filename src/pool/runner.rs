//! One job's lifecycle, INIT -> PREPARE -> EXECUTE -> COLLECT -> DESTROY, run by one task.
//! DESTROY runs whatever happened before it, a panic included.

use super::entry::JobEntry;
use super::state::{ActivePhase, Ended, KillReason, Outcome, StopRequest};
use super::{SHUTDOWN_GRACE, Shared};
use crate::exec::{
    ExitInfo, JobProcess, LaunchSpec, ResourceUse, RlimitPlan, SessionPaths, job_environment, pump,
};
use crate::session::{SessionDirs, collect_artifacts, remove_tree, write_files};
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

/// How long to keep reading output after the job's processes are gone; only an escaped
/// process could still hold the pipes open.
const DRAIN_PATIENCE: Duration = Duration::from_millis(500);
/// Injected files above this size are written off the async threads.
const BLOCKING_WRITE_BYTES: usize = 1 << 20;

/// Milliseconds, to the microsecond.
pub(super) fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

pub(super) async fn run(shared: &Arc<Shared>, entry: &Arc<JobEntry>) -> Ended {
    let started_at = entry
        .record()
        .state
        .started_at()
        .unwrap_or_else(SystemTime::now);
    entry.record().metrics.queue_ms = ms(entry.created.elapsed());
    let planned = SessionDirs::plan(&shared.base_dir, &entry.session_id);
    // The job's span (job_id, session_id) wraps this future: see `Shared::start`.

    let outcome = AssertUnwindSafe(phases(shared, entry))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(panic = %what, "job runner panicked");
            Outcome::SpawnFailed(format!("internal error in the worker: {what}"))
        });

    entry.set_phase(ActivePhase::Destroy);
    let destroy_start = Instant::now();
    if !shared.sessions.destroy(&planned) {
        let root = planned.root.clone();
        let removed = tokio::task::spawn_blocking(move || remove_tree(&root))
            .await
            .unwrap_or_else(|join| Err(std::io::Error::other(join.to_string())));
        if let Err(error) = removed {
            tracing::error!(%error, dir = %planned.root.display(), "session dir could not be removed");
        }
    }
    {
        let mut record = entry.record();
        record.metrics.destroy_ms = ms(destroy_start.elapsed());
        record.metrics.total_ms = ms(entry.created.elapsed());
    }
    super::events::log_job_end(entry, &outcome);
    Ended {
        started_at: Some(started_at),
        ended_at: SystemTime::now(),
        outcome,
    }
}

async fn phases(shared: &Arc<Shared>, entry: &Arc<JobEntry>) -> Outcome {
    let plan = &entry.plan;
    let prepare_start = Instant::now();
    let dirs = match shared.sessions.create(&entry.session_id) {
        Ok(dirs) => dirs,
        Err(error) => {
            return Outcome::PrepareFailed(format!(
                "could not create the session directory: {error}"
            ));
        }
    };
    let dirs = &dirs;
    entry.set_phase(ActivePhase::Prepare);
    if let Err(error) = prepare(plan, dirs).await {
        return Outcome::PrepareFailed(format!("could not write the job's files: {error}"));
    }
    entry.record().metrics.prepare_ms = ms(prepare_start.elapsed());

    entry.set_phase(ActivePhase::Execute);
    let outcome = execute(shared, entry, dirs).await;

    entry.set_phase(ActivePhase::Collect);
    let collect_start = Instant::now();
    let output = dirs.output.clone();
    let caps = shared.artifact_caps();
    let artifacts = tokio::task::spawn_blocking(move || collect_artifacts(&output, caps))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let mut record = entry.record();
    record.artifacts = Some(artifacts);
    record.metrics.collect_ms = ms(collect_start.elapsed());
    outcome
}

async fn prepare(plan: &crate::plan::JobPlan, dirs: &SessionDirs) -> std::io::Result<()> {
    let size: usize = plan.files.iter().map(|f| f.content.len()).sum();
    if size > BLOCKING_WRITE_BYTES {
        let files = plan.files.clone();
        let work = dirs.work.clone();
        tokio::task::spawn_blocking(move || write_files(&work, &files)).await??;
    } else {
        write_files(&dirs.work, &plan.files)?;
    }
    if let Some(cwd) = &plan.cwd {
        std::fs::create_dir_all(dirs.work.join(cwd))?;
    }
    Ok(())
}

/// Why EXECUTE stopped waiting for the job on its own.
enum Interrupt {
    Timeout,
    Stop(StopRequest),
    OutputLimit,
    /// The kernel enforced a limit (an OOM kill, a failed fork at the pids limit).
    Breach(crate::sandbox::Breach),
}

async fn execute(shared: &Arc<Shared>, entry: &Arc<JobEntry>, dirs: &SessionDirs) -> Outcome {
    let plan = &entry.plan;
    let governance = &shared.config.governance;
    let rlimits = RlimitPlan::new(
        plan.limits.timeout,
        plan.limits.cpu,
        governance.max_file_size.bytes(),
        governance.max_open_files,
    );
    let network = &shared.config.network;
    let mut extra_env = Vec::new();
    if plan.egress.is_some() {
        extra_env = crate::egress::proxy_env(network.proxy_port);
    }
    extra_env.extend(plan.env.iter().cloned());
    let env = job_environment(
        &SessionPaths {
            work: &dirs.work,
            output: &dirs.output,
            tmp: &dirs.tmp,
            home: &dirs.home,
        },
        &extra_env,
    );
    let spec = LaunchSpec {
        program: plan.program.clone(),
        cwd: plan
            .cwd
            .as_ref()
            .map_or_else(|| dirs.work.clone(), |cwd| dirs.work.join(cwd)),
        env,
        stdin: plan.stdin.is_some(),
        rlimits,
        cpu_set: shared.cpus.pick(plan.limits.cpu),
    };

    let spawn_start = Instant::now();
    let request = crate::exec::sandbox_request(dirs, plan, plan.profile);
    let sandbox =
        match crate::sandbox::JobSandbox::prepare(&shared.host, &request).and_then(|mut sandbox| {
            if plan.egress.is_some() {
                sandbox.listen_for_egress(network.proxy_port)?;
            }
            Ok(sandbox)
        }) {
            Ok(sandbox) => Arc::new(sandbox),
            Err(error) => return Outcome::PrepareFailed(error.to_string()),
        };
    entry.record().layers = Some(sandbox.layers());
    let mut process = match JobProcess::spawn_sandboxed(spec, Some(sandbox.clone())) {
        Ok(process) => process,
        Err(error) => {
            let program = match &plan.program {
                crate::exec::Program::Shell(_) => "/bin/sh".to_owned(),
                crate::exec::Program::Argv(argv) => argv[0].clone(),
            };
            return Outcome::SpawnFailed(format!("could not start `{program}`: {error}"));
        }
    };
    // Dropping the proxy (any early return) closes the job's listener and connections.
    let proxy = match &plan.egress {
        Some(rules) => {
            let egress = Arc::new(crate::egress::JobEgress::new(rules.clone(), network));
            match sandbox
                .egress_listener()
                .and_then(|listener| crate::egress::JobProxy::start(listener, egress))
            {
                Ok(proxy) => Some(proxy),
                Err(error) => {
                    return Outcome::SpawnFailed(format!(
                        "could not start the job's egress proxy: {error}"
                    ));
                }
            }
        }
        None => None,
    };
    let execute_start = Instant::now();
    entry.record().metrics.spawn_ms = ms(execute_start - spawn_start);
    tracing::debug!(pid = process.pid(), "job started");

    let over_limit = Arc::new(Notify::new());
    let mut pumps = Vec::with_capacity(2);
    if let Some(stdout) = process.stdout.take() {
        pumps.push(tokio::spawn(pump(
            stdout,
            entry.stdout.clone(),
            over_limit.clone(),
        )));
    }
    if let Some(stderr) = process.stderr.take() {
        pumps.push(tokio::spawn(pump(
            stderr,
            entry.stderr.clone(),
            over_limit.clone(),
        )));
    }
    if let (Some(mut stdin), Some(bytes)) = (process.stdin.take(), plan.stdin.clone()) {
        // A job that never reads its stdin must not stall the runner, so the write runs apart.
        tokio::spawn(async move {
            let _ = stdin.write_all(&bytes).await;
        });
    }

    let mut stops = entry.stop_requests();
    let interrupt = tokio::select! {
        biased;
        result = process.exited() => {
            if let Err(error) = result {
                tracing::warn!(%error, "waiting for the job failed");
            }
            None
        }
        _ = over_limit.notified() => Some(Interrupt::OutputLimit),
        breach = sandbox.breached() => Some(Interrupt::Breach(breach)),
        request = stops.wait_for(Option::is_some) => {
            Some(Interrupt::Stop(request.ok().and_then(|r| r.clone()).unwrap_or(StopRequest::Shutdown)))
        }
        _ = tokio::time::sleep(Duration::from_millis(plan.limits.timeout)) => Some(Interrupt::Timeout),
    };

    if let Some(interrupt) = &interrupt {
        let grace = match interrupt {
            Interrupt::OutputLimit | Interrupt::Breach(_) => Duration::ZERO,
            Interrupt::Stop(StopRequest::Shutdown) => SHUTDOWN_GRACE,
            _ => Duration::from_millis(shared.config.session.kill_grace_ms),
        };
        terminate(&process, grace, &mut stops).await;
    }
    let reaped = process.reap();
    if let Some(proxy) = proxy {
        entry.record().metrics.network = Some(proxy.finish().await);
    }
    drain(pumps).await;
    entry.record().metrics.execute_ms = ms(execute_start.elapsed());

    let (exit, usage) = match reaped {
        Ok(reaped) => reaped,
        Err(error) => {
            return Outcome::SpawnFailed(format!(
                "could not collect the job's exit status: {error}"
            ));
        }
    };
    record_usage(entry, usage);
    crate::exec::apply_usage(&mut entry.record().metrics, sandbox.usage());
    // An OOM kill can end the leader before the breach poll sees it: ask once more.
    let interrupt = interrupt.or_else(|| sandbox.breach().map(Interrupt::Breach));
    classify(interrupt, exit, usage, &rlimits)
}

/// SIGTERM to the whole tree, SIGKILL after `grace` (sooner if the worker starts shutting
/// down meanwhile), then wait for the leader.
async fn terminate(
    process: &JobProcess,
    grace: Duration,
    stops: &mut tokio::sync::watch::Receiver<Option<StopRequest>>,
) {
    if !grace.is_zero() {
        process.signal_tree(libc::SIGTERM);
        let shutdown = async {
            loop {
                if stops.borrow().as_ref() == Some(&StopRequest::Shutdown) {
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                    return;
                }
                if stops.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = process.exited() => {}
            _ = tokio::time::sleep(grace) => {}
            _ = shutdown => {}
        }
    }
    process.signal_tree(libc::SIGKILL);
    let _ = process.exited().await;
}

async fn drain(pumps: Vec<tokio::task::JoinHandle<()>>) {
    let deadline = tokio::time::Instant::now() + DRAIN_PATIENCE;
    for pump in pumps {
        let abort = pump.abort_handle();
        if tokio::time::timeout_at(deadline, pump).await.is_err() {
            abort.abort();
        }
    }
}

fn record_usage(entry: &JobEntry, usage: ResourceUse) {
    let mut record = entry.record();
    record.metrics.cpu_user_ms = Some(ms(usage.user));
    record.metrics.cpu_system_ms = Some(ms(usage.system));
    record.metrics.max_rss_bytes = Some(usage.max_rss_bytes);
}

fn classify(
    interrupt: Option<Interrupt>,
    exit: ExitInfo,
    usage: ResourceUse,
    rlimits: &RlimitPlan,
) -> Outcome {
    let exit_seen = Some(exit);
    match interrupt {
        Some(Interrupt::Timeout) => Outcome::TimedOut { exit: exit_seen },
        Some(Interrupt::OutputLimit) => Outcome::Killed {
            reason: KillReason::OutputLimit,
            exit: exit_seen,
        },
        Some(Interrupt::Breach(breach)) => Outcome::Killed {
            reason: match breach {
                crate::sandbox::Breach::MemoryLimit => KillReason::MemoryLimit,
                crate::sandbox::Breach::PidsLimit => KillReason::PidsLimit,
            },
            exit: exit_seen,
        },
        Some(Interrupt::Stop(StopRequest::Cancel(message))) => Outcome::Cancelled {
            message,
            exit: exit_seen,
        },
        Some(Interrupt::Stop(StopRequest::Shutdown)) => Outcome::Killed {
            reason: KillReason::WorkerShutdown,
            exit: exit_seen,
        },
        None => match (exit.code, exit.signal) {
            (Some(code), _) => Outcome::Exited { code },
            (None, Some(signal)) => {
                let cpu = usage.user + usage.system;
                let out_of_cpu = signal == libc::SIGXCPU
                    || (signal == libc::SIGKILL && cpu >= Duration::from_secs(rlimits.cpu_seconds));
                if out_of_cpu {
                    Outcome::Killed {
                        reason: KillReason::CpuTimeLimit,
                        exit: exit_seen,
                    }
                } else {
                    Outcome::Signaled { signal }
                }
            }
            (None, None) => Outcome::Signaled { signal: 0 },
        },
    }
}
