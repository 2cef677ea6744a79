//! What inspecting one command's arguments turns up for the evaluator to check next.

use super::word::Word;

pub(crate) enum Finding {
    /// A command this one runs (a wrapper's inner command, `find -exec`, `xargs`): checked as a
    /// simple command of its own, every rule included.
    Run(Vec<Word>),
    /// Shell text this one runs through a shell (`git rebase --exec`, `trap`, `alias`).
    Script(Word),
    /// `NAME=VALUE` placed in the environment of what it runs.
    Assign(Word),
    /// A path it writes.
    Write(Word),
    /// A structural refusal found while reading the arguments.
    Refuse {
        rule: &'static str,
        reason: &'static str,
        suggestion: &'static str,
        at: (usize, usize),
    },
}

impl Finding {
    pub fn refuse(
        rule: &'static str,
        reason: &'static str,
        suggestion: &'static str,
        at: (usize, usize),
    ) -> Finding {
        Finding::Refuse {
            rule,
            reason,
            suggestion,
            at,
        }
    }
}
