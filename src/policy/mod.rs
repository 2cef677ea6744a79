//! Command policy: parses what a job would run with a real bash parser, follows it through
//! wrappers and nested shells, and refuses what is not allowed with a reason a model can act on.
//! The kernel sandbox stays the wall; this is the line the agent talks to. See docs/policy.md.

mod cli;
mod config;
mod defaults;
mod eval;
mod finding;
mod git;
mod inline;
mod opts;
mod parse;
mod programs;
mod refusal;
mod rules;
mod sed;
mod word;
mod wrappers;

use std::collections::HashSet;

pub use cli::run_check_cli;
pub use config::{Patterns, PolicyConfig, PolicyMode, RuleConfig, RuleTarget};
pub use refusal::{Decision, Refusal};
pub use rules::PolicyConfigError;

use eval::{Eval, Frame, SpanMap, Stdin};
use rules::Rule;
use word::{Word, quote};

/// A compiled policy. Immutable, `Send + Sync`; share it in an `Arc`.
#[derive(Debug, Clone)]
pub struct Policy {
    mode: PolicyMode,
    allow: HashSet<String>,
    deny_programs: HashSet<String>,
    rules: Vec<Rule>,
    allow_sudo: bool,
    allow_local_programs: bool,
    /// Only for checking a rule's examples in isolation.
    allow_any: bool,
    max_command_bytes: usize,
    max_depth: usize,
}

fn check_program_name(name: &str) -> Result<(), PolicyConfigError> {
    if name.is_empty() || name.contains('/') || name.chars().any(char::is_whitespace) {
        return Err(PolicyConfigError::BadProgramName {
            name: name.to_string(),
        });
    }
    Ok(())
}

fn check_limit(
    field: &'static str,
    value: usize,
    min: usize,
    max: usize,
) -> Result<(), PolicyConfigError> {
    if value < min || value > max {
        return Err(PolicyConfigError::BadLimit {
            field,
            value,
            min,
            max,
        });
    }
    Ok(())
}

impl Policy {
    /// Compiles and validates a config: every regex, every rule's `match`/`not_match` example.
    pub fn from_config(cfg: &PolicyConfig) -> Result<Policy, PolicyConfigError> {
        let policy = Self::build(cfg)?;
        // A built-in rule under the default bounds has its examples proven by a unit test
        // (`builtin_rules_compile_and_their_examples_hold`); checking them again cost every
        // start milliseconds.
        let defaults = PolicyConfig::default();
        let default_bounds = cfg.max_command_bytes == defaults.max_command_bytes
            && cfg.max_depth == defaults.max_depth;
        let builtin = defaults::deny_rules();
        policy.check_examples(cfg, |rule| default_bounds && builtin.contains(rule))?;
        Ok(policy)
    }

    /// Each rule's `match` examples must fire it and its `not_match` ones must not, the rule
    /// checked alone; rules `proven` says are known to hold are not run.
    fn check_examples(
        &self,
        cfg: &PolicyConfig,
        proven: impl Fn(&RuleConfig) -> bool,
    ) -> Result<(), PolicyConfigError> {
        for (i, rule_cfg) in self.rule_configs(cfg).into_iter().enumerate() {
            if proven(&rule_cfg) {
                continue;
            }
            let isolated = self.isolated(i);
            for ex in &rule_cfg.match_examples {
                if !isolated.fired_by(ex, &rule_cfg.name) {
                    return Err(PolicyConfigError::MatchExampleNotRefused {
                        rule: rule_cfg.name.clone(),
                        example: ex.clone(),
                    });
                }
            }
            for ex in &rule_cfg.not_match {
                if isolated.fired_by(ex, &rule_cfg.name) {
                    return Err(PolicyConfigError::NotMatchExampleRefused {
                        rule: rule_cfg.name.clone(),
                        example: ex.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The built-in policy (what `{}` configures).
    pub fn default_policy() -> Policy {
        // The built-in rules are constants; a unit test proves they compile and that their
        // examples hold, so this cannot fail at run time.
        Self::build(&PolicyConfig::default())
            .unwrap_or_else(|e| unreachable!("built-in policy rules must compile: {e}"))
    }

    pub fn mode(&self) -> PolicyMode {
        self.mode
    }

    /// Checks a string that `/bin/sh -c` would run. In `off` mode everything is allowed; in
    /// `audit` mode refusals are still returned (the caller runs the job and reports them).
    pub fn check_command(&self, command: &str) -> Decision {
        if self.mode == PolicyMode::Off {
            return Decision::Allowed;
        }
        let mut ev = Eval::new(self, command);
        if command.len() > self.max_command_bytes {
            let r = ev.refusal(
                SpanMap::Offset(0),
                (0, command.len()),
                "",
                "too-long",
                &format!(
                    "the command is longer than {} bytes",
                    self.max_command_bytes
                ),
                "put the script in a file (via `files`) and run that file",
            );
            return Decision::Refused(*r);
        }
        match ev.check_script(command, SpanMap::Offset(0), 0) {
            Ok(()) => Decision::Allowed,
            Err(r) => Decision::Refused(*r),
        }
    }

    /// Checks an argv job (exec'd without a shell) with the same rules. Refusal spans point into
    /// the argv shell-quoted and joined by spaces, which is also the refusal's `command`.
    pub fn check_argv(&self, argv: &[String]) -> Decision {
        if self.mode == PolicyMode::Off {
            return Decision::Allowed;
        }
        let mut text = String::new();
        let mut words = Vec::with_capacity(argv.len());
        for arg in argv {
            if !text.is_empty() {
                text.push(' ');
            }
            let start = text.len();
            text.push_str(&quote(arg));
            words.push(Word::literal_text(arg, (start, text.len())));
        }
        let mut ev = Eval::new(self, &text);
        if text.len() > self.max_command_bytes {
            let r = ev.refusal(
                SpanMap::Offset(0),
                (0, text.len()),
                "",
                "too-long",
                &format!(
                    "the command is longer than {} bytes",
                    self.max_command_bytes
                ),
                "put the data in a file (via `files`) and pass its path",
            );
            return Decision::Refused(*r);
        }
        let frame = Frame {
            src: &text,
            map: SpanMap::Offset(0),
            depth: 0,
        };
        match ev.simple(&frame, &words, &Stdin::Inherit, (0, text.len()), 0) {
            Ok(()) => Decision::Allowed,
            Err(r) => Decision::Refused(*r),
        }
    }

    /// The program allowlist, sorted.
    pub fn allowed_programs(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.allow.iter().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Names of the deny rules in evaluation order.
    pub fn rule_names(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.name.as_str()).collect()
    }

    /// The built-in rule set as config, for documentation and for configs that start from it.
    pub fn default_rules() -> Vec<RuleConfig> {
        defaults::deny_rules()
    }

    pub(crate) fn allows(&self, name: &str) -> bool {
        self.allow_any || self.allow.contains(name)
    }

    pub(crate) fn rules_for(&self, on: RuleTarget) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(move |r| r.on == on)
    }

    pub(crate) fn has_rules_for(&self, on: RuleTarget) -> bool {
        self.rules.iter().any(|r| r.on == on)
    }

    fn build(cfg: &PolicyConfig) -> Result<Policy, PolicyConfigError> {
        check_limit("max_command_bytes", cfg.max_command_bytes, 1, 1 << 20)?;
        check_limit("max_depth", cfg.max_depth, 1, 32)?;
        for name in cfg.allow.iter().chain(&cfg.deny_programs) {
            check_program_name(name)?;
        }
        let configs = Self::merged_rules(cfg)?;
        let rules = configs
            .iter()
            .map(Rule::compile)
            .collect::<Result<Vec<_>, _>>()?;
        let mut allow: HashSet<String> = cfg.allow.iter().cloned().collect();
        if cfg.extend_defaults {
            allow.extend(defaults::ALLOWED_PROGRAMS.iter().map(|s| s.to_string()));
        }
        for d in &cfg.deny_programs {
            allow.remove(d);
        }
        Ok(Policy {
            mode: cfg.mode,
            allow,
            deny_programs: cfg.deny_programs.iter().cloned().collect(),
            rules,
            allow_sudo: cfg.allow_sudo,
            allow_local_programs: cfg.allow_local_programs,
            allow_any: false,
            max_command_bytes: cfg.max_command_bytes,
            max_depth: cfg.max_depth,
        })
    }

    /// Built-in rules (minus disabled ones, user rules replacing same-named ones) then the rest
    /// of the user's rules; or the user's rules alone.
    fn merged_rules(cfg: &PolicyConfig) -> Result<Vec<RuleConfig>, PolicyConfigError> {
        let builtin = defaults::deny_rules();
        for d in &cfg.disable_rules {
            if !builtin.iter().any(|r| &r.name == d) {
                return Err(PolicyConfigError::UnknownDisabledRule { rule: d.clone() });
            }
        }
        let mut seen = HashSet::new();
        for r in &cfg.deny_rules {
            if !seen.insert(r.name.as_str()) {
                return Err(PolicyConfigError::DuplicateRule {
                    rule: r.name.clone(),
                });
            }
        }
        if !cfg.extend_defaults {
            return Ok(cfg.deny_rules.clone());
        }
        let mut out = Vec::new();
        for b in builtin {
            if cfg.disable_rules.contains(&b.name) {
                continue;
            }
            match cfg.deny_rules.iter().find(|r| r.name == b.name) {
                Some(user) => out.push(user.clone()),
                None => out.push(b),
            }
        }
        let placed: HashSet<String> = out.iter().map(|r| r.name.clone()).collect();
        out.extend(
            cfg.deny_rules
                .iter()
                .filter(|r| !placed.contains(&r.name))
                .cloned(),
        );
        Ok(out)
    }

    fn rule_configs(&self, cfg: &PolicyConfig) -> Vec<RuleConfig> {
        // Same order as `self.rules`, since both come from `merged_rules`.
        Self::merged_rules(cfg).unwrap_or_default()
    }

    /// This policy reduced to one rule, everything else allowed: for checking that rule's
    /// examples without other rules or the allowlist getting in the way.
    fn isolated(&self, index: usize) -> Policy {
        Policy {
            mode: PolicyMode::Enforce,
            allow: HashSet::new(),
            deny_programs: HashSet::new(),
            rules: self.rules.get(index).cloned().into_iter().collect(),
            allow_sudo: true,
            allow_local_programs: true,
            allow_any: true,
            max_command_bytes: self.max_command_bytes,
            max_depth: self.max_depth,
        }
    }

    fn fired_by(&self, example: &str, rule: &str) -> bool {
        match self.check_command(example) {
            Decision::Refused(r) => r.rule == rule,
            Decision::Allowed => false,
        }
    }
}

#[cfg(test)]
mod tests;
