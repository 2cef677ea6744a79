//! The job's environment: an allowlist of harmless variables from the worker, the session's
//! own paths, then the job's `env`. Nothing else of the worker's environment (tokens, agent
//! sockets, keys) reaches a job.

use std::ffi::OsString;
use std::path::Path;

/// Copied from the worker when set; everything else is dropped.
const PASSED_THROUGH: &[&str] = &[
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "TERM",
    "USER",
    "LOGNAME",
];
/// Where toolchains live; HOME points into the session, so shims such as rustup's `cargo`
/// would otherwise look for their installation there. Paths, never credentials.
const TOOLCHAIN_HOMES: &[&str] = &[
    "RUSTUP_HOME",
    "CARGO_HOME",
    "PYENV_ROOT",
    "GOROOT",
    "JAVA_HOME",
    "NVM_DIR",
];
/// Toolchain homes under the worker's HOME that imply the variable when it is unset.
const IMPLIED_HOMES: &[(&str, &str)] = &[("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo")];
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct SessionPaths<'a> {
    pub work: &'a Path,
    pub output: &'a Path,
    pub tmp: &'a Path,
    pub home: &'a Path,
}

pub fn job_environment(
    paths: &SessionPaths<'_>,
    extra: &[(String, String)],
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = Vec::with_capacity(16 + extra.len());
    let path = std::env::var_os("PATH")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_PATH.into());
    env.push(("PATH".into(), path));
    for name in PASSED_THROUGH {
        if let Some(value) = std::env::var_os(name) {
            env.push(((*name).into(), value));
        }
    }
    for name in TOOLCHAIN_HOMES {
        if let Some(value) = std::env::var_os(name) {
            env.push(((*name).into(), value));
        }
    }
    if let Some(home) = std::env::var_os("HOME").map(std::path::PathBuf::from) {
        for (name, dir) in IMPLIED_HOMES {
            let implied = home.join(dir);
            if std::env::var_os(name).is_none() && implied.is_dir() {
                env.push(((*name).into(), implied.into_os_string()));
            }
        }
    }
    if std::env::var_os("LANG").is_none() {
        env.push(("LANG".into(), "C.UTF-8".into()));
    }
    if std::env::var_os("TERM").is_none() {
        env.push(("TERM".into(), "dumb".into()));
    }
    env.push(("HOME".into(), paths.home.into()));
    env.push(("TMPDIR".into(), paths.tmp.into()));
    env.push(("OUTPUT_DIR".into(), paths.output.into()));
    env.push(("WORK_DIR".into(), paths.work.into()));
    env.push(("SHELL".into(), "/bin/sh".into()));
    for (name, value) in extra {
        env.retain(|(existing, _)| existing != name.as_str());
        env.push((name.into(), value.into()));
    }
    env
}
