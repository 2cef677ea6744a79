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
}

/// Credential stores of common tools: what an agent-invented command must never read.
pub const DEFAULT_HIDDEN: &[&str] = &[
    "~/.ssh",
    "~/.aws",
    "~/.azure",
    "~/.gnupg",
    "~/.password-store",
    "~/.config/gh",
    "~/.config/gcloud",
    "~/.config/hub",
    "~/.docker",
    "~/.kube",
    "~/.netrc",
    "~/.git-credentials",
    "~/.npmrc",
    "~/.pypirc",
    "~/.cargo/credentials",
    "~/.cargo/credentials.toml",
    "~/.local/share/keyrings",
    "~/.vault-token",
];

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
            hidden: DEFAULT_HIDDEN.iter().map(PathBuf::from).collect(),
            allow_network: true,
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
}
