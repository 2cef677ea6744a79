//! The worker: the pool plus what `initialize` and `worker_get_metrics` report. The RPC
//! handlers and the `run` command are both thin layers over this.

use crate::config::{Config, ConfigError};
use crate::error::WorkerError;
use crate::pool::Pool;
use crate::protocol::*;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub struct Worker {
    pub pool: Pool,
    /// Compiled once at start-up; a rule that does not compile stops the start.
    pub policy: crate::policy::Policy,
    pub worker_id: String,
    pub started: Instant,
    /// What `initialize` reports, made on first use: `run` never asks for it.
    isolation: std::sync::OnceLock<IsolationReport>,
    /// Fired by the `shutdown` method, stdin EOF or a signal.
    pub shutdown: CancellationToken,
    tools: std::sync::OnceLock<Vec<ToolDescriptor>>,
    host: Mutex<Option<sysinfo::System>>,
    /// Holds the private base dir when the worker made it; removed after the pool shuts down.
    private_base: Mutex<Option<tempfile::TempDir>>,
    /// An exclusive flock on `<base>/.lock` for the worker's whole life: a worker that starts
    /// later can tell this base dir from one a killed worker left behind.
    _liveness: std::fs::File,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("policy: {0}")]
    Policy(#[from] crate::policy::PolicyConfigError),
    #[error("session base dir {path}: {source}")]
    BaseDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Worker {
    pub fn start(config: Config) -> Result<Worker, StartError> {
        Worker::start_with(config, None)
    }

    /// A worker for one job (`run`): no spare session dirs made ahead (see `Pool::with_spares`).
    pub fn start_for_one_job(config: Config) -> Result<Worker, StartError> {
        Worker::start_with(config, Some(0))
    }

    fn start_with(config: Config, spares: Option<usize>) -> Result<Worker, StartError> {
        let worker_id = uuid::Uuid::now_v7().simple().to_string();
        let policy = crate::policy::Policy::from_config(&config.policy)?;
        let (base, private_base, liveness) = session_base(&config, &worker_id)?;
        crate::workspace::journal_in(&base);
        let pool = Pool::with_spares(config, base, spares)?;
        Ok(Worker {
            pool,
            policy,
            worker_id,
            started: Instant::now(),
            isolation: std::sync::OnceLock::new(),
            shutdown: CancellationToken::new(),
            tools: std::sync::OnceLock::new(),
            host: Mutex::new(sysinfo::System::new().ok()),
            private_base: Mutex::new(private_base),
            _liveness: liveness,
        })
    }

    pub fn isolation(&self) -> &IsolationReport {
        self.isolation.get_or_init(|| {
            crate::exec::isolation_report(crate::isolation::baseline_report(), self.pool.host())
        })
    }

    pub fn tools(&self) -> &[ToolDescriptor] {
        self.tools.get_or_init(tools::tool_descriptors)
    }

    pub fn initialize(&self, _params: InitializeParams) -> InitializeResult {
        let resolved = self.pool.resolved();
        InitializeResult {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            protocol: PROTOCOL_VERSION,
            worker_id: self.worker_id.clone(),
            limits: LimitsInfo {
                defaults: resolved.defaults.clone(),
                maximums: resolved.maximums.clone(),
            },
            isolation: self.isolation().clone(),
            tools: self.tools().to_vec(),
        }
    }

    pub async fn dispatch(&self, spec: JobSpec) -> Result<Job, WorkerError> {
        let plan = self.plan(spec)?;
        self.run_plan(plan, None).await
    }

    /// A spec checked as this worker checks every job it accepts, wherever it then runs:
    /// parsed into a plan, then the command policy. A fleet does this once, before routing.
    pub fn plan(&self, spec: JobSpec) -> Result<crate::plan::JobPlan, WorkerError> {
        crate::plan::plan(spec, self.pool.config(), self.pool.resolved())
            .and_then(|plan| self.check_policy(plan))
            .inspect_err(|_| self.pool.metrics().rejected())
    }

    /// Runs a checked plan on this host: the isolation it needs must exist here, then the pool
    /// admits it.
    pub async fn run_plan(
        &self,
        plan: crate::plan::JobPlan,
        events: Option<std::sync::Arc<crate::eventlog::EventLog>>,
    ) -> Result<Job, WorkerError> {
        let plan = self
            .check_isolation(plan)
            .inspect_err(|_| self.pool.metrics().rejected())?;
        self.pool.dispatch_with(plan, events).await
    }

    /// The command policy, before anything is created: refused in `enforce`, logged and
    /// reported on the job in `audit`.
    fn check_policy(
        &self,
        mut plan: crate::plan::JobPlan,
    ) -> Result<crate::plan::JobPlan, WorkerError> {
        use crate::policy::{Decision, PolicyMode};
        if self.policy.mode() == PolicyMode::Off {
            return Ok(plan);
        }
        let decision = match &plan.program {
            crate::exec::Program::Shell(command) => self.policy.check_command(command),
            crate::exec::Program::Argv(argv) => self.policy.check_argv(argv),
        };
        let Decision::Refused(refusal) = decision else {
            return Ok(plan);
        };
        if self.policy.mode() == PolicyMode::Audit {
            tracing::warn!(job_id = %plan.job_id, rule = %refusal.rule, program = %refusal.program, "policy audit: would refuse");
            plan.policy_audit = Some(refusal);
            return Ok(plan);
        }
        Err(WorkerError::PolicyDenied {
            message: refusal.message(),
            data: serde_json::to_value(&refusal).unwrap_or_default(),
        })
    }

    /// `strict` fails closed: refused here, before anything runs, naming the missing layer.
    fn check_isolation(
        &self,
        plan: crate::plan::JobPlan,
    ) -> Result<crate::plan::JobPlan, WorkerError> {
        if plan.profile != crate::sandbox::Profile::Strict {
            return Ok(plan);
        }
        match self.pool.host().strict_gaps().into_iter().next() {
            None => Ok(plan),
            Some(gap) => Err(WorkerError::IsolationUnavailable {
                reason: format!(
                    "isolation `strict` cannot run here: layer `{}` is not available ({}); run `opencode-worker doctor` for the fix, or use isolation `standard`",
                    gap.name, gap.detail
                ),
                layer: gap.name,
            }),
        }
    }

    pub fn metrics(&self) -> MetricsResult {
        let (queued, running, retained) = self.pool.occupancy();
        let host = {
            let mut guard = crate::sync::lock(&self.host);
            let mut host = HostMetrics {
                cpus: crate::config::host_cpus() as u64,
                load_average_1m: sysinfo::System::load_average().map_or(0.0, |load| load.one),
                ..HostMetrics::default()
            };
            if let Some(system) = guard.as_mut() {
                system.refresh_memory();
                system.refresh_cpu_usage();
                host.cpu_usage_percent = system.global_cpu_usage();
                host.memory_total_bytes = system.total_memory();
                host.memory_available_bytes = system.available_memory();
            }
            host
        };
        MetricsResult {
            worker_id: self.worker_id.clone(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            jobs: self.pool.metrics().counts(queued, running),
            queue_depth: queued,
            active_sessions: running,
            retained,
            max_concurrent_sessions: self.pool.resolved().max_concurrent as u64,
            max_queued: self.pool.config().worker.max_queued as u64,
            latency_ms: self.pool.metrics().latency(),
            host,
            process: crate::metrics::process_metrics(),
            job_resources: Some(self.pool.metrics().job_resources()),
            subscriptions: Some(crate::eventlog::followers()),
            egress: Some(self.pool.metrics().egress_totals()),
            warm_sandboxes: self.pool.host().warm_metrics(),
            fleet: None,
            format: None,
            text: None,
        }
    }

    /// Ends every job and removes every session dir; true when everything ended in time.
    pub async fn stop(&self, patience: Duration) -> bool {
        let clean = self.pool.shutdown(patience).await;
        if let Some(dir) = crate::sync::lock(&self.private_base).take() {
            let path = dir.path().to_owned();
            // A janitor thread may still be finishing a removal inside it: try twice.
            let removed =
                crate::session::remove_tree(&path).or_else(|_| crate::session::remove_tree(&path));
            if let Err(error) = removed {
                tracing::error!(%error, dir = %path.display(), "could not remove the session base dir");
            }
            std::mem::forget(dir);
        }
        clean
    }
}

/// The configured base gets a per-worker subdir, so two workers never share session dirs and
/// one removal at shutdown sweeps everything. Dirs of workers that died without cleaning up
/// (SIGKILL, power loss) are swept here.
fn session_base(
    config: &Config,
    worker_id: &str,
) -> Result<(PathBuf, Option<tempfile::TempDir>, std::fs::File), StartError> {
    let parent = config
        .session
        .base_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    if let Err(source) = std::fs::create_dir_all(&parent) {
        return Err(StartError::BaseDir {
            path: parent,
            source,
        });
    }
    sweep_abandoned(&parent);
    let failed = |source| StartError::BaseDir {
        path: parent.clone(),
        source,
    };
    let dir = tempfile::Builder::new()
        .prefix(&format!(
            "{BASE_PREFIX}{}-",
            &worker_id[worker_id.len() - 8..]
        ))
        .tempdir_in(&parent)
        .map_err(failed)?;
    let lock = std::fs::File::create(dir.path().join(LOCK_FILE)).map_err(failed)?;
    if !try_lock(&lock) {
        return Err(failed(std::io::Error::other(
            "could not lock the new base dir",
        )));
    }
    Ok((dir.path().to_owned(), Some(dir), lock))
}

const BASE_PREFIX: &str = crate::sandbox::WORKER_DIR_PREFIX;
pub const LOCK_FILE: &str = ".lock";
/// A base dir this young without a lock file may belong to a worker still starting up.
const UNLOCKED_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

fn try_lock(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

fn sweep_abandoned(parent: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(BASE_PREFIX) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let abandoned = match std::fs::File::open(path.join(LOCK_FILE)) {
            Ok(lock) => try_lock(&lock),
            Err(_) => meta
                .modified()
                .ok()
                .and_then(|at| at.elapsed().ok())
                .is_some_and(|age| age > UNLOCKED_GRACE),
        };
        if abandoned {
            crate::workspace::sweep_journal(&path);
            match crate::session::remove_tree(&path) {
                Ok(()) => {
                    tracing::info!(dir = %path.display(), "removed a session base dir a dead worker left")
                }
                Err(error) => {
                    tracing::warn!(%error, dir = %path.display(), "could not remove an abandoned session base dir")
                }
            }
        }
    }
}
