//! One job's lifecycle, INIT -> PREPARE -> EXECUTE -> COLLECT -> DESTROY, run by one task.
//! DESTROY runs whatever happened before it, a panic included.

use super::entry::JobEntry;
use super::state::{ActivePhase, Ended, KillReason, Outcome, StopRequest};
use super::{SHUTDOWN_GRACE, Shared};
use crate::exec::{
    ExitInfo, JobProcess, LaunchSpec, ResourceUse, RlimitPlan, SessionPaths, job_environment, pump,
};
use crate::protocol::WorkspaceMode;
use crate::session::{
    CollectBounds, SessionDirs, collect_artifacts, output_is_empty, remove_tree, write_files,
};
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
    log_job_end(entry, &outcome);
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
    // Taken, not borrowed: once the job has started its entry holds no inputs.
    let inputs = entry.take_inputs();
    if let Err(error) = prepare(plan, inputs.files, dirs).await {
        return Outcome::PrepareFailed(format!("could not write the job's files: {error}"));
    }
    // Held until the job's processes are gone: it owns the placeholders its mounts sit on.
    let protection = match plan
        .workspace
        .as_ref()
        .filter(|w| w.mode == WorkspaceMode::Write)
    {
        Some(workspace) => match crate::workspace::Protection::prepare(workspace) {
            Ok(protection) => Some(protection),
            Err(error) => {
                return Outcome::PrepareFailed(format!(
                    "could not prepare the workspace's protected paths: {error}"
                ));
            }
        },
        None => None,
    };
    let (layer, run) = match plan
        .workspace
        .as_ref()
        .filter(|w| w.mode == WorkspaceMode::Overlay)
    {
        Some(workspace) => match overlay_layer(shared, entry, workspace, dirs).await {
            Ok(pair) => pair,
            Err(outcome) => return outcome,
        },
        None => (None, WorkspaceRun::default()),
    };
    // Merged into the worker's cache once the job's processes are gone.
    // Where overlays cannot be mounted the caches stay as they were: read-only.
    let caches = match plan
        .workspace
        .as_ref()
        .filter(|_| run.copy.is_none() && crate::workspace::probe::overlay_available())
    {
        Some(_) => match crate::workspace::caches::JobCaches::prepare(
            &shared.base_dir,
            &entry.session_id,
            &shared.config.workspace.shared_caches,
        ) {
            Ok(caches) => Some(caches),
            Err(error) => {
                return Outcome::PrepareFailed(format!(
                    "could not prepare the toolchain cache layers: {error}"
                ));
            }
        },
        None => None,
    };
    let view = plan
        .workspace
        .as_ref()
        .filter(|_| run.copy.is_none())
        .map(|w| {
            crate::exec::workspace_view(
                w,
                protection.as_ref(),
                layer.as_ref().map(|l| l.dirs()),
                caches.as_ref(),
            )
        });
    let env = caches.as_ref().map(|c| c.env.clone()).unwrap_or_default();
    let run = WorkspaceRun { view, env, ..run };
    entry.record().metrics.prepare_ms = ms(prepare_start.elapsed());

    entry.set_phase(ActivePhase::Execute);
    let copy = run.copy.clone();
    let outcome = execute(shared, entry, dirs, inputs.stdin, run).await;
    drop(protection);
    if let Some(caches) = caches {
        let _ = tokio::task::spawn_blocking(move || caches.merge()).await;
    }

    entry.set_phase(ActivePhase::Collect);
    let collect_start = Instant::now();
    let (artifacts, outcome) = collect(shared, entry, dirs, outcome).await;
    let changes = match (layer, &plan.workspace) {
        (Some(layer), Some(workspace)) => Some(
            collect_changes(
                shared,
                &entry.session_id,
                &plan.job_id,
                layer,
                workspace,
                copy,
            )
            .await,
        ),
        _ => None,
    };
    let mut record = entry.record();
    record.artifacts = Some(artifacts);
    record.changes = changes;
    record.metrics.collect_ms = ms(collect_start.elapsed());
    outcome
}

/// COLLECT, bounded (see `CollectBounds`) and stoppable: a cancel or shutdown that arrives
/// now stops the hashing at once, and a cancel turns a job that ended on its own into a
/// cancelled one (it was still running as far as the client could tell).
async fn collect(
    shared: &Arc<Shared>,
    entry: &Arc<JobEntry>,
    dirs: &SessionDirs,
    outcome: Outcome,
) -> (Vec<crate::protocol::Artifact>, Outcome) {
    if output_is_empty(&dirs.output) {
        return (Vec::new(), outcome);
    }
    let output = dirs.output.clone();
    let caps = shared.artifact_caps();
    let bounds = CollectBounds::new(Arc::default());
    let stop = bounds.stop.clone();
    let mut stops = entry.stop_requests();
    // A stop seen during EXECUTE already shaped the outcome; only a new one counts here.
    let stopped_before = stops.borrow_and_update().is_some();
    let mut work = tokio::task::spawn_blocking(move || collect_artifacts(&output, caps, &bounds));
    let mut late_stop = None;
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            request = stops.wait_for(Option::is_some), if !stopped_before && late_stop.is_none() => {
                late_stop = Some(request.ok().and_then(|r| r.clone()).unwrap_or(StopRequest::Shutdown));
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    };
    let artifacts = result.ok().and_then(Result::ok).unwrap_or_default();
    let outcome = match (late_stop, outcome) {
        (Some(StopRequest::Cancel(message)), Outcome::Exited { code }) => Outcome::Cancelled {
            message,
            exit: Some(ExitInfo::Exited(code)),
        },
        (Some(StopRequest::Cancel(message)), Outcome::Signaled { signal }) => Outcome::Cancelled {
            message,
            exit: Some(ExitInfo::Signaled(signal)),
        },
        (_, outcome) => outcome,
    };
    (artifacts, outcome)
}

/// Most diff text a result carries.
const DIFF_CAP: usize = 256 << 10;

/// How an `overlay` job sees its workspace.
#[derive(Default)]
struct WorkspaceRun {
    /// What the sandbox mounts; `None` for a job on a copy (it lives in the session).
    view: Option<crate::sandbox::WorkspaceView>,
    /// The copy fallback: where the copy is and why there is no overlay.
    copy: Option<CopyRun>,
    /// Variables pointing the job's tools at the toolchain caches.
    env: Vec<(String, String)>,
}

#[derive(Clone)]
struct CopyRun {
    dir: std::path::PathBuf,
    /// The job's start directory in the copy.
    cwd: std::path::PathBuf,
    reason: String,
}

/// The layer of an `overlay` job: an overlayfs upper, or a copy of the project in the
/// session where the host cannot mount one (refused under `strict`).
async fn overlay_layer(
    shared: &Arc<Shared>,
    entry: &Arc<JobEntry>,
    workspace: &crate::workspace::WorkspacePlan,
    dirs: &SessionDirs,
) -> Result<(Option<crate::workspace::Layer>, WorkspaceRun), Outcome> {
    let config = &shared.config.workspace;
    let profile = entry.plan.profile.at_least(shared.host.config().profile);
    let Some(reason) = crate::workspace::probe::copy_reason(config, &shared.host, profile) else {
        return match crate::workspace::Layer::create(&shared.base_dir, &entry.session_id) {
            Ok(layer) => Ok((Some(layer), WorkspaceRun::default())),
            Err(error) => Err(Outcome::PrepareFailed(format!(
                "could not create the workspace's overlay layer: {error}"
            ))),
        };
    };
    if profile == crate::sandbox::Profile::Strict {
        return Err(Outcome::PrepareFailed(
            crate::sandbox::SandboxError::Refused {
                layer: "workspace".into(),
                why: format!("an overlay job would run on a copy of the project: {reason}"),
            }
            .to_string(),
        ));
    }
    let name = workspace
        .path
        .file_name()
        .map_or_else(|| "project".into(), |n| n.to_os_string());
    let dir = dirs.work.join(name);
    let caps = crate::workspace::copy::CopyCaps {
        max_files: config.copy_max_files,
        max_bytes: config.copy_max_bytes.bytes(),
    };
    let (project, target) = (workspace.path.clone(), dir.clone());
    let copied = tokio::task::spawn_blocking(move || {
        crate::workspace::copy::copy_tree(&project, &target, caps)
    })
    .await
    .map_err(|join| Outcome::PrepareFailed(format!("copying the workspace: {join}")))?;
    let stats = copied.map_err(|error| {
        Outcome::PrepareFailed(format!(
            "workspace.path: {} cannot run on a copy: {error}",
            workspace.path.display()
        ))
    })?;
    tracing::info!(?stats, %reason, "overlay job runs on a copy of the project");
    let layer = crate::workspace::Layer::for_copy(&shared.base_dir, &entry.session_id).map_err(
        |error| Outcome::PrepareFailed(format!("could not create the workspace's layer: {error}")),
    )?;
    let cwd = dir.join(
        workspace
            .cwd
            .strip_prefix(&workspace.path)
            .unwrap_or(std::path::Path::new("")),
    );
    let reason = format!(
        "copy fallback: {reason}; the job saw a copy of {} at {} ({} entries, {} bytes, {} \
         cloned), without the paths the project's ignore rules exclude",
        workspace.path.display(),
        dir.display(),
        stats.entries,
        stats.bytes,
        stats.cloned
    );
    Ok((
        Some(layer),
        WorkspaceRun {
            view: None,
            copy: Some(CopyRun { dir, cwd, reason }),
            env: Vec::new(),
        },
    ))
}

/// The change set of an overlay job, read once its processes are gone; the layer is kept for
/// `worker_apply_changes` while there is something to apply.
async fn collect_changes(
    shared: &Arc<Shared>,
    session: &str,
    job_id: &str,
    layer: crate::workspace::Layer,
    workspace: &crate::workspace::WorkspacePlan,
    copy: Option<CopyRun>,
) -> crate::protocol::WorkspaceChanges {
    layer.unmounted();
    shared.changes.note_running(session, None);
    let shared = shared.clone();
    let job_id = job_id.to_owned();
    let workspace = workspace.clone();
    let degraded = copy.as_ref().map(|c| c.reason.clone());
    let computed = tokio::task::spawn_blocking(move || {
        let diff_file = layer.diff_file();
        let diff = crate::workspace::changes::DiffOut {
            file: &diff_file,
            cap: DIFF_CAP,
        };
        let changes = match (&copy, layer.copy_mark) {
            (Some(copy), Some(mark)) => layer.adopt(&copy.dir).and_then(|()| {
                crate::workspace::changes::compute_copy(&workspace.path, &layer.upper, mark, diff)
            }),
            _ => crate::workspace::changes::compute(&workspace.path, &layer.upper, diff),
        };
        match &changes {
            Ok(changes) if !changes.files.is_empty() => {
                let files = changes.files.clone();
                if let Err(error) = shared.changes.keep(&job_id, layer, &workspace, &files) {
                    tracing::error!(%error, "the overlay job's changes cannot be kept for apply");
                }
            }
            _ => {
                if let Err(error) = layer.remove() {
                    tracing::warn!(%error, "overlay layer could not be removed");
                }
            }
        }
        changes
    })
    .await
    .unwrap_or_else(|join| Err(std::io::Error::other(join.to_string())));
    let mut changes = computed.unwrap_or_else(|error| {
        tracing::error!(%error, "reading the overlay job's changes failed");
        crate::protocol::WorkspaceChanges::default()
    });
    changes.degraded = degraded;
    changes
}

async fn prepare(
    plan: &crate::plan::JobPlan,
    files: Vec<crate::session::InjectedFile>,
    dirs: &SessionDirs,
) -> std::io::Result<()> {
    let size: usize = files.iter().map(|f| f.content.len()).sum();
    if size > BLOCKING_WRITE_BYTES {
        let work = dirs.work.clone();
        tokio::task::spawn_blocking(move || write_files(&work, &files)).await??;
    } else {
        write_files(&dirs.work, &files)?;
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
    /// The overlay layer outgrew the workspace disk budget.
    DiskLimit,
    /// The kernel enforced a limit (an OOM kill, a failed fork at the pids limit).
    Breach(crate::sandbox::Breach),
}

async fn execute(
    shared: &Arc<Shared>,
    entry: &Arc<JobEntry>,
    dirs: &SessionDirs,
    stdin: Option<Vec<u8>>,
    run: WorkspaceRun,
) -> Outcome {
    let workspace = run.view;
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
    extra_env.extend(run.env.iter().cloned());
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
        cwd: match (&plan.workspace, &plan.cwd) {
            (Some(_), _) if run.copy.is_some() => {
                run.copy.as_ref().map(|c| c.cwd.clone()).unwrap_or_default()
            }
            (Some(workspace), _) => workspace.cwd.clone(),
            (None, Some(cwd)) => dirs.work.join(cwd),
            (None, None) => dirs.work.clone(),
        },
        env,
        stdin: stdin.is_some(),
        rlimits,
        cpu_set: shared.cpus.pick(plan.limits.cpu),
    };

    let upper = workspace
        .as_ref()
        .and_then(|w| w.overlay.as_ref())
        .map(|o| o.upper.clone())
        .or_else(|| run.copy.as_ref().map(|c| c.dir.clone()));
    let spawn_start = Instant::now();
    let request = crate::exec::sandbox_request(dirs, plan, plan.profile, workspace);
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
    let mut layers = sandbox.layers();
    if let Some(copy) = &run.copy {
        layers.push(crate::sandbox::AppliedLayer {
            name: "workspace".into(),
            mechanism: format!("degraded: {}", copy.reason),
        });
    }
    entry.record().layers = Some(layers);
    entry.record().metrics.sandbox_start = Some(sandbox.start_kind());
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
    if let (Some(mut stdin), Some(bytes)) = (process.stdin.take(), stdin) {
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
        _ = watch_disk(shared, &entry.session_id, upper.as_deref()) => Some(Interrupt::DiskLimit),
        request = stops.wait_for(Option::is_some) => {
            Some(Interrupt::Stop(request.ok().and_then(|r| r.clone()).unwrap_or(StopRequest::Shutdown)))
        }
        _ = tokio::time::sleep(Duration::from_millis(plan.limits.timeout)) => Some(Interrupt::Timeout),
    };

    if let Some(interrupt) = &interrupt {
        let grace = match interrupt {
            Interrupt::OutputLimit | Interrupt::Breach(_) | Interrupt::DiskLimit => Duration::ZERO,
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
    // The job may exit right after passing its output cap, before the pump's notice won the
    // select: the byte count decides, not the timing.
    let over_cap = [&entry.stdout, &entry.stderr]
        .iter()
        .any(|buffer| crate::sync::lock(buffer).over_cap());
    let interrupt = interrupt.or_else(|| over_cap.then_some(Interrupt::OutputLimit));
    // An OOM kill can end the leader before the breach poll sees it: ask once more.
    let interrupt = interrupt.or_else(|| sandbox.breach().map(Interrupt::Breach));
    classify(interrupt, exit, usage, &rlimits)
}

/// How often a running overlay job's layer is measured.
const DISK_POLL: Duration = Duration::from_millis(200);

/// Resolves when the overlay layer at `upper` outgrows the job's or the worker's budget;
/// never without a layer.
async fn watch_disk(shared: &Arc<Shared>, session: &str, upper: Option<&std::path::Path>) {
    let Some(upper) = upper else {
        return std::future::pending().await;
    };
    let config = &shared.config.workspace;
    let (per_job, total) = (
        config.max_upper_bytes.bytes(),
        config.max_total_upper_bytes.bytes(),
    );
    loop {
        tokio::time::sleep(DISK_POLL).await;
        let dir = upper.to_path_buf();
        let bytes = tokio::task::spawn_blocking(move || crate::workspace::apply::disk_usage(&dir))
            .await
            .unwrap_or(0);
        shared.changes.note_running(session, Some(bytes));
        if bytes > per_job || shared.changes.total_bytes() > total {
            tracing::warn!(bytes, per_job, total, "overlay layer over the disk budget");
            return;
        }
    }
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
        Some(Interrupt::DiskLimit) => Outcome::Killed {
            reason: KillReason::DiskLimit,
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
        None => match exit {
            ExitInfo::Exited(code) => Outcome::Exited { code },
            ExitInfo::Signaled(signal) => {
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
        },
    }
}

/// The one line that tells a job's story: how it ended, each phase's duration, the limits
/// applied, the isolation layers used and what it consumed.
fn log_job_end(entry: &super::JobEntry, outcome: &super::state::Outcome) {
    let record = entry.record();
    let m = &record.metrics;
    let exit = outcome.exit();
    let layers = record.layers.as_ref().map(|layers| {
        serde_json::to_value(layers)
            .map(|value| value.to_string())
            .unwrap_or_default()
    });
    tracing::info!(
        status = outcome.status().as_str(),
        reason = outcome.reason().map(|r| r.as_str()),
        exit_code = exit.and_then(ExitInfo::code),
        signal = exit.and_then(ExitInfo::signal),
        message = outcome.message(),
        queue_ms = m.queue_ms,
        prepare_ms = m.prepare_ms,
        spawn_ms = m.spawn_ms,
        execute_ms = m.execute_ms,
        collect_ms = m.collect_ms,
        destroy_ms = m.destroy_ms,
        total_ms = m.total_ms,
        cpu_ms = m.cpu_user_ms.zip(m.cpu_system_ms).map(|(u, s)| u + s),
        max_rss_bytes = m.max_rss_bytes,
        limit_cpu = m.limits.cpu,
        limit_memory = m.limits.memory,
        limit_timeout_ms = m.limits.timeout,
        limit_output = m.limits.output,
        limit_pids = m.limits.pids,
        isolation = layers,
        "job ended"
    );
}
