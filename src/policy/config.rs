//! The policy's configuration as it appears in the worker's config file.

use serde::{Deserialize, Serialize};

/// How refusals are acted on. The policy always computes the decision; the mode tells the caller
/// what to do with it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    /// Refused commands are not run; the caller answers -32002.
    #[default]
    Enforce,
    /// Refused commands run anyway; the caller logs and reports what would have been refused.
    Audit,
    /// No checks at all.
    Off,
}

/// What a deny rule's regexes are matched against. Every target is text rebuilt from the parse
/// tree (quotes removed, wrappers peeled), never the raw command string.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RuleTarget {
    /// One simple command: `program arg1 arg2`, program reduced to its base name, arguments
    /// re-quoted only where needed (`'a b'`), expansions kept as written (`$HOME`, `$(...)`).
    /// Checked at every wrapper level: `nice rm -rf /` is checked as `nice ...` and `rm -rf /`.
    #[default]
    Command,
    /// A pipeline: its commands (wrappers peeled) joined by ` | `.
    Pipeline,
    /// A path something writes: output redirections and the files of writers such as `tee`,
    /// `cp`/`mv`/`ln` destinations, `sed -i`, `dd of=`, `curl -o`.
    Write,
    /// Any redirection target, read or write.
    Redirect,
    /// An environment assignment `NAME=value`, whether `NAME=v cmd`, `env NAME=v`, or `export`.
    Env,
}

/// One regex or several: a rule fires when all of `pattern` match and none of `unless` does.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Patterns {
    One(String),
    All(Vec<String>),
}

impl Default for Patterns {
    fn default() -> Self {
        Patterns::All(Vec::new())
    }
}

impl Patterns {
    pub fn as_slice(&self) -> &[String] {
        match self {
            Patterns::One(p) => std::slice::from_ref(p),
            Patterns::All(v) => v,
        }
    }
}

/// A deny rule. Regexes use the `regex` crate's syntax (no look-around).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Named in refusals and in config errors; unique across the rule set.
    pub name: String,
    #[serde(default)]
    pub on: RuleTarget,
    /// Every regex must match for the rule to fire.
    pub pattern: Patterns,
    /// The rule does not fire when any of these match.
    #[serde(default)]
    pub unless: Patterns,
    /// Why the command is refused (shown to the model).
    pub reason: String,
    /// What to do instead (shown to the model).
    #[serde(default)]
    pub suggestion: Option<String>,
    /// Commands this rule must refuse; checked when the config loads.
    #[serde(default, rename = "match")]
    pub match_examples: Vec<String>,
    /// Commands this rule must not refuse; checked when the config loads.
    #[serde(default)]
    pub not_match: Vec<String>,
}

/// The `policy` section of the worker config. `{}` is the default policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    pub mode: PolicyMode,
    /// true: `allow` and `deny_rules` add to the built-in lists (a rule with a built-in rule's
    /// name replaces it). false: they are the whole lists.
    pub extend_defaults: bool,
    /// Program names (base names, e.g. `terraform`) allowed in addition to the defaults.
    pub allow: Vec<String>,
    /// Program names removed from the allowlist.
    pub deny_programs: Vec<String>,
    pub deny_rules: Vec<RuleConfig>,
    /// Names of built-in deny rules to drop.
    pub disable_rules: Vec<String>,
    /// See through `sudo`/`doas` instead of refusing them.
    pub allow_sudo: bool,
    /// Allow programs given by a relative path (`./configure`, `./target/debug/app`) whose base
    /// name is not on the allowlist. Their base name still goes through every rule.
    pub allow_local_programs: bool,
    /// Longest command accepted, in bytes.
    #[schemars(range(min = 1, max = 1048576))]
    pub max_command_bytes: usize,
    /// How many `sh -c`/`eval` levels deep the policy follows before refusing.
    #[schemars(range(min = 1, max = 32))]
    pub max_depth: usize,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            mode: PolicyMode::Enforce,
            extend_defaults: true,
            allow: Vec::new(),
            deny_programs: Vec::new(),
            deny_rules: Vec::new(),
            disable_rules: Vec::new(),
            allow_sudo: false,
            allow_local_programs: true,
            max_command_bytes: 64 * 1024,
            max_depth: 8,
        }
    }
}
