//! Configuration: built-in defaults, then `opencode-worker.json`, then `OPENCODE_WORKER_*`
//! variables, then command-line flags, each layer overriding the one before.
//!
//! Environment keys use `__` between section and key (`OPENCODE_WORKER_WORKER__MAX_QUEUED=5`);
//! variables without `__` (such as `OPENCODE_WORKER_BIN`, read by the plugin) are not config.

pub mod workers;

use crate::protocol::{ByteSize, EffectiveLimits};
use figment::Figment;
use figment::providers::{Env, Format, Json, Serialized};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub const CONFIG_FILE_ENV: &str = "OPENCODE_WORKER_CONFIG";
pub const DEFAULT_CONFIG_FILE: &str = "opencode-worker.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub worker: WorkerSection,
    pub session: SessionSection,
    pub governance: GovernanceSection,
    /// The command policy (`security` is accepted as the seed's name for this section).
    #[serde(alias = "security")]
    pub policy: crate::policy::PolicyConfig,
    /// Kernel sandbox: profile floor, extra and hidden paths.
    pub isolation: crate::sandbox::SandboxConfig,
    pub logging: LoggingSection,
    /// Where jobs may run: `local` and `ssh` entries. Empty: this process alone.
    pub workers: Vec<workers::WorkerEntry>,
    /// Egress allowlists: named sets, the default for jobs that do not say, name pins.
    pub network: crate::egress::NetworkConfig,
    /// The user's projects jobs may work on (`JobSpec.workspace`).
    pub workspace: crate::workspace::WorkspaceConfig,
    /// The configuration file this was loaded from, if any: protected in `write` workspaces.
    #[serde(skip)]
    pub loaded_from: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSection {
    /// Jobs running at once; 0 means one per CPU.
    pub max_concurrent_sessions: usize,
    /// Jobs waiting for a slot before dispatch answers busy.
    pub max_queued: usize,
    /// How long an ended job stays answerable.
    pub retain_secs: u64,
    /// How many ended jobs stay answerable, oldest out first.
    pub retain_jobs: usize,
    /// Bytes all retained ended jobs may hold together (output, inline artifacts, event
    /// history, command and environment); the oldest go first beyond it.
    pub retain_bytes: ByteSize,
    /// Longest request line accepted, in bytes.
    pub max_line_bytes: ByteSize,
    /// Longest `wait_ms` accepted.
    pub max_wait_ms: u64,
    /// Bytes of event history (state changes, output chunks) kept per job for subscribers.
    pub event_history_bytes: ByteSize,
    /// Requests read and not yet answered, per connection (a batch counts each element);
    /// at the bound the worker stops reading stdin until replies are written.
    pub max_in_flight: usize,
    /// Most elements in one batch; a longer batch is refused whole with -32600.
    pub max_batch: usize,
    /// After `shutdown` or a signal: how long requests already read may still be served
    /// (waits honoured) before every job is killed.
    pub shutdown_grace_ms: u64,
}

impl Default for WorkerSection {
    fn default() -> Self {
        WorkerSection {
            max_concurrent_sessions: 0,
            max_queued: 1000,
            retain_secs: 3600,
            retain_jobs: 1000,
            retain_bytes: ByteSize::gib(1),
            max_line_bytes: ByteSize::mib(16),
            max_wait_ms: 3_600_000,
            event_history_bytes: ByteSize::mib(1),
            max_in_flight: 1024,
            max_batch: 500,
            shutdown_grace_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSection {
    /// Where session dirs are made; a private 0700 dir under the system temp dir when absent.
    pub base_dir: Option<PathBuf>,
    /// Total bytes of injected files per job.
    pub max_files_bytes: ByteSize,
    /// Number of injected files per job.
    pub max_files: usize,
    /// Artifacts listed per job.
    pub max_artifacts: usize,
    /// Largest artifact whose content is returned inline.
    pub artifact_inline_bytes: ByteSize,
    /// Total inline artifact content kept per job.
    pub artifact_total_bytes: ByteSize,
    /// Time between SIGTERM and SIGKILL when a job is cancelled or times out.
    pub kill_grace_ms: u64,
    /// Most bytes of each output stream kept in memory for the result and
    /// `worker_collect_output`; absent: the job's output limit. The stream sees everything.
    pub output_keep_bytes: Option<ByteSize>,
}

impl Default for SessionSection {
    fn default() -> Self {
        SessionSection {
            base_dir: None,
            max_files_bytes: ByteSize::mib(64),
            max_files: 10_000,
            max_artifacts: 1000,
            artifact_inline_bytes: ByteSize::mib(1),
            artifact_total_bytes: ByteSize::mib(16),
            kill_grace_ms: 2000,
            output_keep_bytes: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GovernanceSection {
    pub defaults: LimitsConfig,
    pub maximums: LimitsConfig,
    /// Whether jobs may ask for `network: "open"`.
    pub allow_network: bool,
    /// Largest file a job process may write (RLIMIT_FSIZE).
    pub max_file_size: ByteSize,
    /// Open files per job process (RLIMIT_NOFILE).
    pub max_open_files: u64,
}

impl Default for GovernanceSection {
    fn default() -> Self {
        let cpus = host_cpus() as f64;
        GovernanceSection {
            defaults: LimitsConfig {
                cpu: Some(cpus),
                memory: Some(ByteSize::gib(2)),
                timeout: Some(300_000),
                output: Some(ByteSize::mib(8)),
                pids: Some(512),
            },
            maximums: LimitsConfig {
                cpu: Some(cpus),
                memory: Some(ByteSize::gib(16)),
                timeout: Some(3_600_000),
                output: Some(ByteSize::mib(256)),
                pids: Some(4096),
            },
            allow_network: true,
            max_file_size: ByteSize::gib(2),
            max_open_files: 4096,
        }
    }
}

/// Limits as written in config: a partial set, completed from the built-in values.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub cpu: Option<f64>,
    pub memory: Option<ByteSize>,
    pub timeout: Option<u64>,
    pub output: Option<ByteSize>,
    pub pids: Option<u64>,
}

impl LimitsConfig {
    fn resolve(&self, fallback: &LimitsConfig) -> EffectiveLimits {
        EffectiveLimits {
            cpu: self.cpu.or(fallback.cpu).unwrap_or(1.0),
            memory: self.memory.or(fallback.memory).map_or(0, ByteSize::bytes),
            timeout: self.timeout.or(fallback.timeout).unwrap_or(300_000),
            output: self.output.or(fallback.output).map_or(0, ByteSize::bytes),
            pids: self.pids.or(fallback.pids).unwrap_or(512),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingSection {
    /// A tracing filter such as `info` or `opencode_worker=debug`; `RUST_LOG` wins when set.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LoggingSection {
    fn default() -> Self {
        LoggingSection {
            level: "info".into(),
            format: LogFormat::Auto,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when stderr is not a terminal, pretty when it is.
    #[default]
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(String),
    #[error("configuration file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

/// Limits and pool size after defaults are applied and cross-checked.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub defaults: EffectiveLimits,
    pub maximums: EffectiveLimits,
    pub max_concurrent: usize,
}

impl Config {
    /// The sandbox settings as the sandbox reads them: `governance.allow_network` is the one
    /// switch for network access.
    pub fn sandbox(&self) -> crate::sandbox::SandboxConfig {
        crate::sandbox::SandboxConfig {
            allow_network: self.governance.allow_network,
            ..self.isolation.clone()
        }
    }

    /// Layers defaults, the file (explicit path, `$OPENCODE_WORKER_CONFIG`, or
    /// `./opencode-worker.json` when it exists), the environment, then `overrides` (dotted
    /// keys with JSON values, from the command line).
    pub fn load(
        explicit_file: Option<&std::path::Path>,
        overrides: &[(String, serde_json::Value)],
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        let file = explicit_file
            .map(PathBuf::from)
            .or_else(|| std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from))
            .or_else(|| {
                let local = PathBuf::from(DEFAULT_CONFIG_FILE);
                local.exists().then_some(local)
            });
        let loaded_from = file
            .as_ref()
            .map(|path| std::fs::canonicalize(path).unwrap_or_else(|_| path.clone()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::File {
                    path,
                    reason: "not found or not a file".into(),
                });
            }
            figment = figment.merge(Json::file_exact(path));
        }
        figment = figment.merge(
            Env::prefixed("OPENCODE_WORKER_")
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        );
        for (key, value) in overrides {
            figment = figment.merge(Serialized::default(key, value));
        }
        let mut config: Config = figment
            .extract()
            .map_err(|error| ConfigError::Invalid(describe_figment_error(error)))?;
        config.loaded_from = loaded_from;
        config.resolve()?;
        Ok(config)
    }

    pub fn resolve(&self) -> Result<Resolved, ConfigError> {
        let builtin = GovernanceSection::default();
        let defaults = self.governance.defaults.resolve(&builtin.defaults);
        let maximums = self.governance.maximums.resolve(&builtin.maximums);
        let checks: [(&str, bool); 5] = [
            ("cpu", defaults.cpu <= maximums.cpu && defaults.cpu > 0.0),
            ("memory", defaults.memory <= maximums.memory),
            (
                "timeout",
                defaults.timeout <= maximums.timeout && defaults.timeout > 0,
            ),
            ("output", defaults.output <= maximums.output),
            ("pids", defaults.pids <= maximums.pids && defaults.pids > 0),
        ];
        for (name, ok) in checks {
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "governance.defaults.{name} must be positive and at most governance.maximums.{name}"
                )));
            }
        }
        if self.worker.max_line_bytes.bytes() < 1024 {
            return Err(ConfigError::Invalid(
                "worker.max_line_bytes must be at least 1KiB".into(),
            ));
        }
        if self.worker.max_in_flight == 0 || self.worker.max_batch == 0 {
            return Err(ConfigError::Invalid(
                "worker.max_in_flight and worker.max_batch must be at least 1".into(),
            ));
        }
        if self.worker.max_batch > self.worker.max_in_flight {
            return Err(ConfigError::Invalid(
                "worker.max_batch must be at most worker.max_in_flight".into(),
            ));
        }
        workers::validate(&self.workers).map_err(ConfigError::Invalid)?;
        self.network.validate().map_err(ConfigError::Invalid)?;
        let max_concurrent = match self.worker.max_concurrent_sessions {
            0 => host_cpus(),
            n => n,
        };
        Ok(Resolved {
            defaults,
            maximums,
            max_concurrent,
        })
    }
}

fn describe_figment_error(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            if key.is_empty() {
                e.kind.to_string()
            } else {
                format!("key `{key}`: {}", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn host_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Parses a `--set key=value` argument; the value is JSON when it parses as JSON, else a string.
pub fn parse_override(text: &str) -> Result<(String, serde_json::Value), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not key=value"))?;
    let value =
        serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.into()));
    Ok((key.trim().to_owned(), value))
}
