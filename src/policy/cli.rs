//! `opencode-worker policy check -- 'CMD'`: the decision for a human.

use super::{Decision, Policy, PolicyConfig, PolicyMode};

/// Prints the decision and the rule that fired to stdout. Returns the exit code: 0 allowed,
/// 1 refused (in `audit` mode too, with a note that the job would still run), 2 config error.
pub fn run_check_cli(cfg: &PolicyConfig, command: &str) -> i32 {
    let policy = match Policy::from_config(cfg) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("policy config error: {e}");
            return 2;
        }
    };
    // The CLI answers "what do the rules say", so `off` mode is reported but still evaluated.
    let mut evaluating = policy.clone();
    evaluating.mode = PolicyMode::Enforce;
    match evaluating.check_command(command) {
        Decision::Allowed => {
            println!("allowed: {command}");
            0
        }
        Decision::Refused(r) => {
            println!("refused by rule `{}`", r.rule);
            if !r.program.is_empty() {
                println!("program: {}", r.program);
            }
            for (i, line) in r.command.lines().enumerate() {
                println!("  {line}");
                if let Some(marks) = underline(&r.command, r.span, i) {
                    println!("  {marks}");
                }
            }
            println!("reason: {}", r.reason);
            println!("message: {}", r.message());
            match policy.mode() {
                PolicyMode::Audit => {
                    println!("note: mode is audit, so this job would run and be reported")
                }
                PolicyMode::Off => println!("note: mode is off, so this job would run unchecked"),
                PolicyMode::Enforce => {}
            }
            1
        }
    }
}

/// `^^^` under the part of line `line_no` that `span` covers, if any.
fn underline(text: &str, span: (usize, usize), line_no: usize) -> Option<String> {
    let mut start = 0;
    for (i, line) in text.split('\n').enumerate() {
        let end = start + line.len();
        if i == line_no {
            let s = span.0.max(start);
            let e = span.1.min(end);
            if s >= e && !(span.0 == span.1 && span.0 >= start && span.0 <= end) {
                return None;
            }
            let pad = text.get(start..s)?.chars().count();
            let width = text.get(s..e)?.chars().count().max(1);
            return Some(format!("{}{}", " ".repeat(pad), "^".repeat(width)));
        }
        start = end + 1;
    }
    None
}
