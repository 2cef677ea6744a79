//! The `workers` config list: where jobs may run. Empty means the in-process worker alone.
//! It lives with the config (not the fleet) so the config depends on nothing above it.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One place jobs can run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum WorkerEntry {
    /// This process's own pool.
    Local(LocalEntry),
    /// `opencode-worker serve` on another host, reached with the system OpenSSH client.
    Ssh(SshEntry),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalEntry {
    #[serde(default = "local_name")]
    pub name: String,
    /// Jobs routed here at once; absent: `worker.max_concurrent_sessions`.
    #[serde(default)]
    pub max_concurrent: Option<usize>,
    #[serde(default)]
    pub labels: Vec<String>,
}

fn local_name() -> String {
    "local".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshEntry {
    pub name: String,
    pub host: String,
    #[serde(default = "ssh_port")]
    pub port: u16,
    /// Absent: the SSH client's own default (`~/.ssh/config`, then the local user name).
    #[serde(default)]
    pub user: Option<String>,
    /// Absent: the SSH client's own identities.
    #[serde(default)]
    pub identity_file: Option<PathBuf>,
    /// Absent: the SSH client's own known_hosts files.
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// Jobs routed to this host at once; the remote worker's own cap lowers it when smaller.
    #[serde(default = "remote_concurrency")]
    pub max_concurrent: usize,
    #[serde(default)]
    pub labels: Vec<String>,
    /// The remote command; a forced command on the host (the recommended setup) replaces it.
    #[serde(default = "remote_command")]
    pub command: String,
    /// `false` accepts and records an unknown host key on first contact (`accept-new`); a
    /// changed key is always refused.
    #[serde(default = "yes")]
    pub strict_host_key_checking: bool,
    /// Seconds of silence before the SSH client probes the server; after
    /// `alive_count_max` unanswered probes the host counts as lost.
    #[serde(default = "alive_interval")]
    pub alive_interval_secs: u64,
    #[serde(default = "alive_count")]
    pub alive_count_max: u64,
    #[serde(default = "connect_timeout")]
    pub connect_timeout_secs: u64,
    /// The SSH client program.
    #[serde(default = "ssh_program")]
    pub program: PathBuf,
}

fn ssh_port() -> u16 {
    22
}
fn remote_concurrency() -> usize {
    4
}
fn remote_command() -> String {
    "opencode-worker serve".into()
}
fn yes() -> bool {
    true
}
fn alive_interval() -> u64 {
    5
}
fn alive_count() -> u64 {
    3
}
fn connect_timeout() -> u64 {
    10
}
fn ssh_program() -> PathBuf {
    "ssh".into()
}

impl WorkerEntry {
    pub fn name(&self) -> &str {
        match self {
            WorkerEntry::Local(local) => &local.name,
            WorkerEntry::Ssh(ssh) => &ssh.name,
        }
    }

    pub fn labels(&self) -> &[String] {
        match self {
            WorkerEntry::Local(local) => &local.labels,
            WorkerEntry::Ssh(ssh) => &ssh.labels,
        }
    }
}

/// Checks the list as a whole: names unique and usable, at most one local entry, sane numbers.
pub fn validate(entries: &[WorkerEntry]) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    let mut locals = 0;
    for (index, entry) in entries.iter().enumerate() {
        let at = format!("workers[{index}]");
        let name = entry.name();
        if name.is_empty()
            || name.len() > 128
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(format!(
                "{at}.name `{name}` must be 1-128 characters of A-Z a-z 0-9 . _ -"
            ));
        }
        if !names.insert(name) {
            return Err(format!("{at}.name `{name}` is used twice"));
        }
        match entry {
            WorkerEntry::Local(local) => {
                locals += 1;
                if local.max_concurrent == Some(0) {
                    return Err(format!("{at}.max_concurrent must be at least 1"));
                }
            }
            WorkerEntry::Ssh(ssh) => {
                if ssh.host.is_empty() || ssh.host.starts_with('-') {
                    return Err(format!(
                        "{at}.host must be a host name or address (not empty, not starting with `-`)"
                    ));
                }
                if ssh.user.as_deref().is_some_and(|user| {
                    user.is_empty() || user.starts_with('-') || user.contains('@')
                }) {
                    return Err(format!("{at}.user must be a plain user name"));
                }
                if ssh.max_concurrent == 0 {
                    return Err(format!("{at}.max_concurrent must be at least 1"));
                }
                if ssh.alive_interval_secs == 0 || ssh.alive_count_max == 0 {
                    return Err(format!(
                        "{at}.alive_interval_secs and alive_count_max must be at least 1, so a silent host is noticed"
                    ));
                }
                if ssh.command.trim().is_empty() {
                    return Err(format!("{at}.command must not be empty"));
                }
            }
        }
    }
    if locals > 1 {
        return Err("workers: at most one `local` entry".into());
    }
    Ok(())
}
