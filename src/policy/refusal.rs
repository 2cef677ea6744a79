//! What a check returns, and the sentence a model reads when it is refused.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Refused(Refusal),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed)
    }

    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Decision::Allowed => None,
            Decision::Refused(r) => Some(r),
        }
    }
}

/// The `data` of a -32002 error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Refusal {
    /// The text that was checked (for an argv job: the argv, shell-quoted and joined).
    pub command: String,
    /// The program the refused part runs, as resolved (`/usr/bin/rm` → `rm`); may be empty when
    /// the refusal is about syntax rather than a program.
    pub program: String,
    /// Name of the rule that fired.
    pub rule: String,
    pub reason: String,
    /// Byte offsets `[start, end)` into `command` of the refused part.
    pub span: (usize, usize),
    /// What to do instead; part of `message()`, not of the wire data.
    #[serde(skip)]
    pub suggestion: String,
}

impl Refusal {
    /// The refused slice of `command`, or the whole command if the span does not fall on
    /// character boundaries (it always should; this keeps `message` infallible).
    pub fn excerpt(&self) -> &str {
        self.command
            .get(self.span.0..self.span.1)
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.command)
    }

    /// One sentence a model can act on: what was refused, by which rule, why, and what to do.
    pub fn message(&self) -> String {
        let mut excerpt: String = self.excerpt().chars().take(120).collect();
        if excerpt.len() < self.excerpt().len() {
            excerpt.push('…');
        }
        let excerpt = excerpt.replace('\n', "⏎");
        let mut msg = format!(
            "Command policy refused `{excerpt}` (rule {}): {}",
            self.rule, self.reason
        );
        if !self.suggestion.is_empty() {
            msg.push_str("; instead, ");
            msg.push_str(&self.suggestion);
        }
        if !msg.ends_with('.') {
            msg.push('.');
        }
        msg
    }
}
