//! What the operator chooses: how strict the sandbox is and which paths it opens or hides.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How much isolation a job gets. Ordered from loosest to strictest, so `max` picks the
/// stricter of two.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// No sandbox layers; limits and the tree kill still apply.
    None,
    /// Every layer the host supports; the rest is reported as degraded or unavailable.
    #[default]
    Standard,
    /// Every layer, or the job is refused with an error naming the missing layer.
    Strict,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::None => "none",
            Profile::Standard => "standard",
            Profile::Strict => "strict",
        }
    }

    /// A job may ask for more isolation than the worker's floor, never less.
    pub fn at_least(self, floor: Profile) -> Profile {
        self.max(floor)
    }
}

/// Sandbox settings of the worker (config file section `sandbox`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// The weakest profile any job may run under.
    pub profile: Profile,
    /// Extra paths jobs may read (they can already read most of the system).
    pub extra_ro: Vec<PathBuf>,
    /// Extra paths jobs may write, besides their session and private tmp.
    pub extra_rw: Vec<PathBuf>,
    /// Paths jobs can neither read nor list; `~/` means the worker user's home.
    pub hidden: Vec<PathBuf>,
    /// Whether jobs may ask for `network: "open"`.
    pub allow_network: bool,
    /// Prepared single-use sandboxes (namespaces, mounts and an init already made) the worker
    /// keeps ready per kind, so a job starts by entering one instead of building it. None is
    /// ever reused: each serves one job and is torn down after it. 0 builds every job's sandbox
    /// when it starts.
    pub warm_slots: u32,
}

/// What an agent-invented command must never read, by category: keys and keyrings, credential
/// stores of coding agents (OpenCode's own first), clouds, registries and VCS hosts, shell and
/// REPL histories, `.env` files and browser profiles (cookies are credentials). A last
/// component ending in `*` hides every entry of that directory starting with the rest.
///
/// The home as a whole stays readable: per-user toolchains (~/.cargo, ~/.rustup, ~/.nvm,
/// ~/.pyenv, ~/.local/bin, ~/.m2, ~/.gradle caches) live there and a job has no other way to
/// them. An operator who wants the stricter view adds `"~"` to `isolation.hidden`.
pub const DEFAULT_HIDDEN: &[(&str, &str)] = &[
    // Private keys and keyrings.
    ("keys_and_keyrings", "~/.ssh"),
    ("keys_and_keyrings", "~/.gnupg"),
    ("keys_and_keyrings", "~/.password-store"),
    ("keys_and_keyrings", "~/.local/share/keyrings"),
    ("keys_and_keyrings", "~/.local/share/kwalletd"),
    ("keys_and_keyrings", "~/.pki"),
    ("keys_and_keyrings", "~/.ollama/id_ed25519"),
    // Coding agents: model-provider API keys, OAuth tokens, transcripts of past sessions.
    ("agent_credentials", "~/.local/share/opencode"),
    ("agent_credentials", "~/.local/state/opencode"),
    ("agent_credentials", "~/.config/opencode"),
    ("agent_credentials", "~/.claude"),
    ("agent_credentials", "~/.claude.json"),
    ("agent_credentials", "~/.codex"),
    ("agent_credentials", "~/.gemini"),
    ("agent_credentials", "~/.qwen"),
    ("agent_credentials", "~/.aider"),
    ("agent_credentials", "~/.aider.conf.yml"),
    ("agent_credentials", "~/.cursor"),
    ("agent_credentials", "~/.config/Cursor"),
    ("agent_credentials", "~/.config/github-copilot"),
    ("agent_credentials", "~/.continue"),
    ("agent_credentials", "~/.codeium"),
    ("agent_credentials", "~/.config/goose"),
    ("agent_credentials", "~/.local/share/amp"),
    ("agent_credentials", "~/.cache/huggingface/token"),
    ("agent_credentials", "~/.huggingface"),
    // Clouds and clusters.
    ("cloud_credentials", "~/.aws"),
    ("cloud_credentials", "~/.azure"),
    ("cloud_credentials", "~/.config/gcloud"),
    ("cloud_credentials", "~/.oci"),
    ("cloud_credentials", "~/.kube"),
    ("cloud_credentials", "~/.docker"),
    ("cloud_credentials", "~/.vault-token"),
    ("cloud_credentials", "~/.terraform.d/credentials.tfrc.json"),
    ("cloud_credentials", "~/.pulumi/credentials.json"),
    ("cloud_credentials", "~/.config/doctl"),
    ("cloud_credentials", "~/.config/rclone"),
    ("cloud_credentials", "~/.s3cfg"),
    ("cloud_credentials", "~/.boto"),
    ("cloud_credentials", "~/.databrickscfg"),
    // Git hosts and package registries.
    ("registry_tokens", "~/.config/gh"),
    ("registry_tokens", "~/.config/hub"),
    ("registry_tokens", "~/.git-credentials"),
    ("registry_tokens", "~/.config/git/credentials"),
    ("registry_tokens", "~/.netrc"),
    ("registry_tokens", "~/.npmrc"),
    ("registry_tokens", "~/.yarnrc.yml"),
    ("registry_tokens", "~/.pypirc"),
    ("registry_tokens", "~/.cargo/credentials"),
    ("registry_tokens", "~/.cargo/credentials.toml"),
    ("registry_tokens", "~/.gem/credentials"),
    ("registry_tokens", "~/.composer/auth.json"),
    ("registry_tokens", "~/.config/composer/auth.json"),
    // Shell and REPL histories: pasted tokens, `export KEY=...`, connection strings.
    ("shell_history", "~/.bash_history"),
    ("shell_history", "~/.zsh_history"),
    ("shell_history", "~/.zhistory"),
    ("shell_history", "~/.histfile"),
    ("shell_history", "~/.sh_history"),
    ("shell_history", "~/.local/share/fish"),
    ("shell_history", "~/.local/share/atuin"),
    ("shell_history", "~/.python_history"),
    ("shell_history", "~/.ipython/profile_default/history.sqlite"),
    ("shell_history", "~/.node_repl_history"),
    ("shell_history", "~/.psql_history"),
    ("shell_history", "~/.mysql_history"),
    ("shell_history", "~/.sqlite_history"),
    ("shell_history", "~/.rediscli_history"),
    ("shell_history", "~/.irb_history"),
    ("shell_history", "~/.lesshst"),
    ("shell_history", "~/.viminfo"),
    ("shell_history", "~/.local/state/nvim/shada"),
    // Environment files in the home.
    ("env_files", "~/.env"),
    ("env_files", "~/.env.*"),
    // Browser profiles: session cookies and saved passwords.
    ("browser_profiles", "~/.mozilla"),
    ("browser_profiles", "~/.config/google-chrome"),
    ("browser_profiles", "~/.config/chromium"),
];

/// The category a hidden path is listed under in `doctor` and `initialize`.
pub fn hidden_category(path: &Path) -> &'static str {
    DEFAULT_HIDDEN
        .iter()
        .find(|(_, default)| Path::new(default) == path)
        .map(|(category, _)| *category)
        .or_else(|| {
            ROOT_HIDDEN
                .iter()
                .any(|root| Path::new(root) == path)
                .then_some("system_secrets")
        })
        .unwrap_or("configured")
}

/// Name prefix of a worker's own dir under the configured session base dir. Several workers
/// may share that base; each job sees only its own session, never a sibling worker's dir.
pub const WORKER_DIR_PREFIX: &str = "opencode-worker-";

/// Readable only by root: hidden too when the worker runs as root, whose jobs keep uid 0 (inside
/// their user namespace) and so pass the permission check. Costs ~140 Landlock rules (the
/// siblings in /etc), so only root workers pay it.
pub const ROOT_HIDDEN: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh",
    "/etc/ssl/private",
];

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            profile: Profile::Standard,
            extra_ro: Vec::new(),
            extra_rw: Vec::new(),
            hidden: DEFAULT_HIDDEN
                .iter()
                .map(|(_, path)| PathBuf::from(path))
                .collect(),
            allow_network: true,
            warm_slots: 2,
        }
    }
}

/// `~/x` becomes `<home>/x`; relative paths other than `~/` are meaningless for a sandbox
/// rule and are dropped by the caller.
pub(super) fn expand_home(path: &Path, home: Option<&Path>) -> Option<PathBuf> {
    match path.strip_prefix("~") {
        Ok(rest) => home.map(|home| home.join(rest)),
        Err(_) if path.is_absolute() => Some(path.to_path_buf()),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_floor_never_loosens() {
        assert_eq!(Profile::None.at_least(Profile::Standard), Profile::Standard);
        assert_eq!(Profile::Strict.at_least(Profile::Standard), Profile::Strict);
        assert_eq!(Profile::None.at_least(Profile::None), Profile::None);
    }

    #[test]
    fn home_expansion() {
        let home = Path::new("/home/u");
        assert_eq!(
            expand_home(Path::new("~/.ssh"), Some(home)),
            Some(PathBuf::from("/home/u/.ssh"))
        );
        assert_eq!(expand_home(Path::new("~/.ssh"), None), None);
        assert_eq!(expand_home(Path::new("rel"), Some(home)), None);
        assert_eq!(
            expand_home(Path::new("/abs"), Some(home)),
            Some(PathBuf::from("/abs"))
        );
    }

    #[test]
    fn config_round_trips_and_rejects_unknown_fields() {
        let config: SandboxConfig = serde_json::from_str(r#"{"profile":"strict"}"#).unwrap();
        assert_eq!(config.profile, Profile::Strict);
        assert!(config.hidden.iter().any(|p| p == Path::new("~/.ssh")));
        assert!(serde_json::from_str::<SandboxConfig>(r#"{"nope":1}"#).is_err());
    }

    #[test]
    fn every_default_has_a_category() {
        // `~/.ssh` first: messages that name the first hidden path under a directory (a
        // workspace refused for holding one) name the store users recognise.
        assert_eq!(DEFAULT_HIDDEN[0].1, "~/.ssh");
        assert_eq!(
            hidden_category(Path::new("~/.local/share/opencode")),
            "agent_credentials"
        );
        for (category, path) in DEFAULT_HIDDEN {
            assert_eq!(hidden_category(Path::new(path)), *category);
        }
        assert_eq!(hidden_category(Path::new("/etc/shadow")), "system_secrets");
        assert_eq!(hidden_category(Path::new("~/mine")), "configured");
    }
}
