//! Dispatch-time checks: a `JobSpec` becomes a `JobPlan` or a precise error, before anything
//! is created on disk or started.

use crate::config::{Config, Resolved};
use crate::error::WorkerError;
use crate::exec::Program;
use crate::protocol::{
    EffectiveLimits, FileEncoding, FileEntry, JobSpec, LimitsRequest, NetworkMode, NetworkRequest,
};
use crate::session::InjectedFile;
use base64::Engine;
use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone)]
pub struct JobPlan {
    pub job_id: String,
    pub program: Program,
    pub files: Vec<InjectedFile>,
    pub env: Vec<(String, String)>,
    /// Relative to the session's work dir; `None` with a workspace (see `workspace.cwd`).
    pub cwd: Option<PathBuf>,
    /// The user's project the job works on, checked.
    pub workspace: Option<crate::workspace::WorkspacePlan>,
    pub stdin: Option<Vec<u8>>,
    pub limits: EffectiveLimits,
    pub network: NetworkMode,
    /// With a network allowlist (`network` is then `none`): the rules its egress proxy applies.
    pub egress: Option<std::sync::Arc<crate::egress::Rules>>,
    pub profile: crate::sandbox::Profile,
    pub wait_ms: Option<u64>,
    /// In policy `audit` mode: what would have refused this job.
    pub policy_audit: Option<crate::policy::Refusal>,
}

impl JobPlan {
    /// A one-line rendering of what runs, for listings and logs.
    pub fn command_line(&self) -> String {
        clip_command_line(match &self.program {
            Program::Shell(line) => line.clone(),
            Program::Argv(argv) => argv.join(" "),
        })
    }
}

/// A command line cut to 200 characters, as listings show it.
pub fn clip_command_line(full: String) -> String {
    match full.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &full[..cut]),
        None => full,
    }
}

pub fn plan(spec: JobSpec, config: &Config, resolved: &Resolved) -> Result<JobPlan, WorkerError> {
    let job_id = match spec.job_id {
        Some(id) => {
            check_job_id(&id)?;
            id
        }
        None => uuid::Uuid::now_v7().to_string(),
    };
    let program = match (spec.command, spec.argv) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(WorkerError::invalid_params(
                "command",
                "give exactly one of `command` (a shell string) or `argv` (an array)",
            ));
        }
        (Some(command), None) => {
            if command.trim().is_empty() {
                return Err(WorkerError::invalid_params("command", "must not be empty"));
            }
            if command.contains('\0') {
                return Err(WorkerError::invalid_params(
                    "command",
                    "must not contain NUL",
                ));
            }
            Program::Shell(command)
        }
        (None, Some(argv)) => {
            if argv.first().is_none_or(|program| program.is_empty()) {
                return Err(WorkerError::invalid_params(
                    "argv",
                    "must start with a non-empty program name",
                ));
            }
            if let Some(index) = argv.iter().position(|arg| arg.contains('\0')) {
                return Err(WorkerError::invalid_params(
                    format!("argv[{index}]"),
                    "must not contain NUL",
                ));
            }
            Program::Argv(argv)
        }
    };
    let files = spec
        .files
        .map(|files| check_files(files, config))
        .transpose()?
        .unwrap_or_default();
    let env = spec
        .env
        .map(|env| check_env(env.into_iter().collect()))
        .transpose()?
        .unwrap_or_default();
    let cwd = spec
        .cwd
        .map(|cwd| relative_path(&cwd).map_err(|reason| WorkerError::invalid_params("cwd", reason)))
        .transpose()?
        .filter(|path| !path.as_os_str().is_empty());
    let workspace = spec
        .workspace
        .map(|workspace| crate::workspace::resolve(workspace, cwd.as_deref(), config))
        .transpose()?;
    let cwd = cwd.filter(|_| workspace.is_none());
    let request = spec
        .network
        .or(spec
            .config
            .and_then(|seed| seed.network)
            .map(NetworkRequest::from))
        .or_else(|| config.network.default.clone())
        .unwrap_or(NetworkRequest::Mode(NetworkMode::None));
    let (network, egress) = match request {
        NetworkRequest::Mode(mode) => (mode, None),
        NetworkRequest::Allowlist(list) => {
            let rules = crate::egress::Rules::compile(&list, &config.network.allowlists)
                .map_err(|(field, reason)| WorkerError::invalid_params(field, reason))?;
            (NetworkMode::None, Some(std::sync::Arc::new(rules)))
        }
    };
    if let Some(wait) = spec.wait_ms
        && wait > config.worker.max_wait_ms
    {
        return Err(WorkerError::invalid_params(
            "wait_ms",
            format!("must be at most {}", config.worker.max_wait_ms),
        ));
    }
    // Governance maximums last: a fleet front treats only these as another worker's call.
    let limits = check_limits(spec.limits.unwrap_or_default(), resolved)?;
    if network == NetworkMode::Open && !config.governance.allow_network {
        return Err(WorkerError::LimitOverMaximum {
            field: "network".into(),
            requested: "open".into(),
            maximum: "none".into(),
        });
    }
    Ok(JobPlan {
        job_id,
        program,
        files,
        env,
        cwd,
        workspace,
        stdin: spec.stdin.map(String::into_bytes),
        limits,
        network,
        egress,
        // The worker's profile unless the job asks for a stricter one, never a looser one.
        profile: spec.isolation.map_or(config.isolation.profile, |asked| {
            asked.at_least(config.isolation.profile)
        }),
        wait_ms: spec.wait_ms,
        policy_audit: None,
    })
}

pub fn check_job_id(id: &str) -> Result<(), WorkerError> {
    let valid = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(WorkerError::invalid_params(
            "job_id",
            "must be 1-128 characters of A-Z a-z 0-9 . _ -",
        ))
    }
}

/// A plain relative path: no root, no `..`, no NUL; `.` components are dropped.
fn relative_path(text: &str) -> Result<PathBuf, String> {
    if text.contains('\0') {
        return Err("must not contain NUL".into());
    }
    if text.len() > 4096 {
        return Err("is longer than 4096 bytes".into());
    }
    let mut clean = PathBuf::new();
    for component in Path::new(text).components() {
        match component {
            Component::Normal(name) => clean.push(name),
            Component::CurDir => {}
            Component::ParentDir => return Err("must not contain `..`".into()),
            Component::RootDir | Component::Prefix(_) => {
                return Err("must be relative to the work directory, not absolute".into());
            }
        }
    }
    Ok(clean)
}

fn check_files(
    files: std::collections::BTreeMap<String, FileEntry>,
    config: &Config,
) -> Result<Vec<InjectedFile>, WorkerError> {
    let invalid = |path: &str, reason: String| WorkerError::InvalidFiles {
        field: format!("files.{path}"),
        path: path.to_owned(),
        reason,
    };
    if files.len() > config.session.max_files {
        return Err(WorkerError::InvalidFiles {
            field: "files".into(),
            path: String::new(),
            reason: format!(
                "{} files given; the maximum is {}",
                files.len(),
                config.session.max_files
            ),
        });
    }
    let cap = config.session.max_files_bytes.bytes();
    let mut total: u64 = 0;
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut out = Vec::with_capacity(files.len());
    for (name, entry) in files {
        let path = relative_path(&name).map_err(|reason| invalid(&name, reason))?;
        if path.as_os_str().is_empty() {
            return Err(invalid(&name, "names no file".into()));
        }
        if !seen.insert(path.clone()) {
            return Err(invalid(
                &name,
                "is given twice (after removing `.` components)".into(),
            ));
        }
        let (content, executable) = match entry {
            FileEntry::Text(text) => (text.into_bytes(), false),
            FileEntry::Detailed {
                content,
                encoding: FileEncoding::Utf8,
                executable,
            } => (content.into_bytes(), executable),
            FileEntry::Detailed {
                content,
                encoding: FileEncoding::Base64,
                executable,
            } => (
                base64::engine::general_purpose::STANDARD
                    .decode(content.trim())
                    .map_err(|error| {
                        invalid(&name, format!("content is not valid base64: {error}"))
                    })?,
                executable,
            ),
        };
        total += content.len() as u64;
        if total > cap {
            return Err(WorkerError::InvalidFiles {
                field: "files".into(),
                path: name,
                reason: format!("files add up to more than the {cap}-byte cap"),
            });
        }
        out.push(InjectedFile {
            path,
            content,
            executable,
        });
    }
    // A path that is both a file and a parent directory of another cannot be written.
    for file in &out {
        if let Some(parent) = file
            .path
            .ancestors()
            .skip(1)
            .find(|dir| seen.contains(*dir))
        {
            return Err(invalid(
                &file.path.to_string_lossy(),
                format!("its parent `{}` is also given as a file", parent.display()),
            ));
        }
    }
    Ok(out)
}

fn check_env(env: Vec<(String, String)>) -> Result<Vec<(String, String)>, WorkerError> {
    for (name, value) in &env {
        let field = format!("env.{name}");
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(WorkerError::invalid_params(
                field,
                "a variable name must be non-empty without `=` or NUL",
            ));
        }
        if value.contains('\0') {
            return Err(WorkerError::invalid_params(
                field,
                "a value must not contain NUL",
            ));
        }
    }
    Ok(env)
}

fn check_limits(
    request: LimitsRequest,
    resolved: &Resolved,
) -> Result<EffectiveLimits, WorkerError> {
    let defaults = &resolved.defaults;
    let maximums = &resolved.maximums;
    let over = |name: &str, requested: serde_json::Value, maximum: serde_json::Value| {
        WorkerError::LimitOverMaximum {
            field: format!("limits.{name}"),
            requested,
            maximum,
        }
    };
    let cpu = request.cpu.unwrap_or(defaults.cpu);
    if !(cpu.is_finite() && cpu > 0.0) {
        return Err(WorkerError::invalid_params(
            "limits.cpu",
            "must be a positive number of cores",
        ));
    }
    if cpu > maximums.cpu {
        return Err(over("cpu", cpu.into(), maximums.cpu.into()));
    }
    let memory = request.memory.map_or(defaults.memory, |m| m.bytes());
    if memory == 0 {
        return Err(WorkerError::invalid_params(
            "limits.memory",
            "must be positive",
        ));
    }
    if memory > maximums.memory {
        return Err(over("memory", memory.into(), maximums.memory.into()));
    }
    let timeout = request.timeout.unwrap_or(defaults.timeout);
    if timeout == 0 {
        return Err(WorkerError::invalid_params(
            "limits.timeout",
            "must be at least 1 ms",
        ));
    }
    if timeout > maximums.timeout {
        return Err(over("timeout", timeout.into(), maximums.timeout.into()));
    }
    let output = request.output.map_or(defaults.output, |o| o.bytes());
    if output > maximums.output {
        return Err(over("output", output.into(), maximums.output.into()));
    }
    let pids = request.pids.unwrap_or(defaults.pids);
    if pids == 0 {
        return Err(WorkerError::invalid_params(
            "limits.pids",
            "must be at least 1",
        ));
    }
    if pids > maximums.pids {
        return Err(over("pids", pids.into(), maximums.pids.into()));
    }
    Ok(EffectiveLimits {
        cpu,
        memory,
        timeout,
        output,
        pids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(spec: serde_json::Value) -> Result<JobPlan, WorkerError> {
        let config = Config::default();
        let resolved = config.resolve().unwrap();
        plan(serde_json::from_value(spec).unwrap(), &config, &resolved)
    }

    #[test]
    fn traversal_and_absolute_paths_are_refused() {
        for path in ["../x", "a/../../x", "/etc/passwd", "a/..", ""] {
            let err =
                plan_of(serde_json::json!({"command": "true", "files": {path: "x"}})).unwrap_err();
            assert_eq!(err.code(), -32006, "{path}: {err}");
        }
    }

    #[test]
    fn a_file_cannot_also_be_a_directory() {
        let err = plan_of(serde_json::json!({"command": "true", "files": {"a": "x", "a/b": "y"}}))
            .unwrap_err();
        assert_eq!(err.code(), -32006);
    }

    #[test]
    fn limits_over_the_maximum_name_the_limit() {
        let err = plan_of(serde_json::json!({"command": "true", "limits": {"memory": "1TiB"}}))
            .unwrap_err();
        assert_eq!(err.code(), -32004);
        assert_eq!(err.data()["field"], "limits.memory");
    }

    #[test]
    fn exactly_one_of_command_or_argv() {
        assert_eq!(plan_of(serde_json::json!({})).unwrap_err().code(), -32602);
        assert_eq!(
            plan_of(serde_json::json!({"command": "x", "argv": ["x"]}))
                .unwrap_err()
                .code(),
            -32602
        );
    }

    #[test]
    fn a_job_gets_the_workers_profile_or_a_stricter_one() {
        use crate::sandbox::Profile;
        let mut config = Config::default();
        config.isolation.profile = Profile::None;
        let resolved = config.resolve().unwrap();
        let plan_with = |spec: serde_json::Value| {
            plan(serde_json::from_value(spec).unwrap(), &config, &resolved).unwrap()
        };
        assert_eq!(
            plan_with(serde_json::json!({"command": "true"})).profile,
            Profile::None
        );
        assert_eq!(
            plan_with(serde_json::json!({"command": "true", "isolation": "strict"})).profile,
            Profile::Strict
        );
        config.isolation.profile = Profile::Standard;
        let plan_with = |spec: serde_json::Value| {
            plan(serde_json::from_value(spec).unwrap(), &config, &resolved).unwrap()
        };
        assert_eq!(
            plan_with(serde_json::json!({"command": "true", "isolation": "none"})).profile,
            Profile::Standard
        );
    }

    #[test]
    fn restricted_is_none_and_seed_config_network_applies() {
        let plan =
            plan_of(serde_json::json!({"command": "true", "network": "restricted"})).unwrap();
        assert_eq!(plan.network, NetworkMode::None);
        let plan =
            plan_of(serde_json::json!({"command": "true", "config": {"network": "open"}})).unwrap();
        assert_eq!(plan.network, NetworkMode::Open);
    }

    #[test]
    fn an_allowlist_plans_a_proxied_job_and_bad_entries_name_their_index() {
        let plan = plan_of(
            serde_json::json!({"command": "true", "network": {"allow": ["registry.example:443"]}}),
        )
        .unwrap();
        assert_eq!(plan.network, NetworkMode::None);
        assert_eq!(plan.egress.unwrap().allow_count(), 1);
        let err = plan_of(
            serde_json::json!({"command": "true", "network": {"allow": ["ok.example", "a b"]}}),
        )
        .unwrap_err();
        assert_eq!(err.code(), -32602);
        assert_eq!(err.data()["field"], "network.allow[1]");
        let err =
            plan_of(serde_json::json!({"command": "true", "network": {"allow": ["@missing"]}}))
                .unwrap_err();
        assert_eq!(err.data()["field"], "network.allow[0]");
    }

    #[test]
    fn the_configured_default_applies_to_jobs_that_do_not_say() {
        let mut config = Config::default();
        config
            .network
            .allowlists
            .insert("mirror".into(), vec!["mirror.example".into()]);
        config.network.default =
            Some(serde_json::from_value(serde_json::json!({"allow": ["@mirror"]})).unwrap());
        let resolved = config.resolve().unwrap();
        let spec = serde_json::from_value(serde_json::json!({"command": "true"})).unwrap();
        assert!(plan(spec, &config, &resolved).unwrap().egress.is_some());
        let spec =
            serde_json::from_value(serde_json::json!({"command": "true", "network": "none"}))
                .unwrap();
        assert!(plan(spec, &config, &resolved).unwrap().egress.is_none());
    }
}
