//! Deny rules compiled from config, and the errors a config can have.

use regex::Regex;

use super::config::{RuleConfig, RuleTarget};

#[derive(Debug, thiserror::Error)]
pub enum PolicyConfigError {
    #[error("policy rule `{rule}`: pattern `{pattern}` does not compile: {source}")]
    BadRegex {
        rule: String,
        pattern: String,
        #[source]
        source: Box<regex::Error>,
    },
    #[error("policy rule `{rule}` has no pattern")]
    EmptyRule { rule: String },
    #[error("policy rule name `{rule}` is used twice")]
    DuplicateRule { rule: String },
    #[error("policy rule name `{rule}` must be non-empty letters, digits, `-`, `_` or `.`")]
    BadRuleName { rule: String },
    #[error("policy rule `{rule}`: example `{example}` should be refused by it but is not")]
    MatchExampleNotRefused { rule: String, example: String },
    #[error("policy rule `{rule}`: example `{example}` should not be refused by it but is")]
    NotMatchExampleRefused { rule: String, example: String },
    #[error("policy `disable_rules` names `{rule}`, which is not a built-in rule")]
    UnknownDisabledRule { rule: String },
    #[error("policy program name `{name}` must be a bare program name (no `/`, no spaces)")]
    BadProgramName { name: String },
    #[error("policy `{field}` must be between {min} and {max}, not {value}")]
    BadLimit {
        field: &'static str,
        value: usize,
        min: usize,
        max: usize,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub name: String,
    pub on: RuleTarget,
    pattern: Vec<Regex>,
    unless: Vec<Regex>,
    pub reason: String,
    pub suggestion: String,
}

impl Rule {
    pub fn compile(cfg: &RuleConfig) -> Result<Rule, PolicyConfigError> {
        let valid_name = !cfg.name.is_empty()
            && cfg
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid_name {
            return Err(PolicyConfigError::BadRuleName {
                rule: cfg.name.clone(),
            });
        }
        let compile = |p: &String| {
            Regex::new(p).map_err(|e| PolicyConfigError::BadRegex {
                rule: cfg.name.clone(),
                pattern: p.clone(),
                source: Box::new(e),
            })
        };
        let pattern = cfg
            .pattern
            .as_slice()
            .iter()
            .map(compile)
            .collect::<Result<Vec<_>, _>>()?;
        if pattern.is_empty() {
            return Err(PolicyConfigError::EmptyRule {
                rule: cfg.name.clone(),
            });
        }
        let unless = cfg
            .unless
            .as_slice()
            .iter()
            .map(compile)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Rule {
            name: cfg.name.clone(),
            on: cfg.on,
            pattern,
            unless,
            reason: cfg.reason.clone(),
            suggestion: cfg.suggestion.clone().unwrap_or_default(),
        })
    }

    pub fn matches(&self, text: &str) -> bool {
        self.pattern.iter().all(|r| r.is_match(text))
            && !self.unless.iter().any(|r| r.is_match(text))
    }
}
