//! Runs the default policy over tests/policy/{allowed,refused}.txt and reports every mismatch.

use opencode_worker::policy::{Decision, Policy};

#[path = "../policy/corpus.rs"]
mod corpus;

#[test]
fn corpus_decisions_match() {
    let policy = Policy::default_policy();
    let (allowed, refused) = corpus::load().unwrap_or_else(|e| panic!("{e}"));
    assert!(allowed.len() >= 300, "only {} allowed cases", allowed.len());
    assert!(refused.len() >= 300, "only {} refused cases", refused.len());

    let mut failures = Vec::new();
    for c in &allowed {
        if let Decision::Refused(r) = policy.check_command(&c.command) {
            failures.push(format!(
                "allowed.txt:{}: refused by {} at {:?} ({}): {}",
                c.line,
                r.rule,
                r.excerpt(),
                r.reason,
                c.command
            ));
        }
    }
    for c in &refused {
        let want = c.expect.as_deref().unwrap_or_default();
        match policy.check_command(&c.command) {
            Decision::Allowed => failures.push(format!(
                "refused.txt:{}: allowed, expected {want}: {}",
                c.line, c.command
            )),
            Decision::Refused(r) => {
                if r.rule != want {
                    failures.push(format!(
                        "refused.txt:{}: refused by {} at {:?}, expected {want}: {}",
                        c.line,
                        r.rule,
                        r.excerpt(),
                        c.command
                    ));
                }
                let in_bounds = r.span.0 <= r.span.1
                    && r.span.1 <= r.command.len()
                    && r.command.is_char_boundary(r.span.0)
                    && r.command.is_char_boundary(r.span.1);
                if !in_bounds || r.command != c.command {
                    failures.push(format!(
                        "refused.txt:{}: span {:?} does not point into the command",
                        c.line, r.span
                    ));
                }
                if r.message().is_empty() {
                    failures.push(format!("refused.txt:{}: empty message", c.line));
                }
            }
        }
    }
    println!(
        "policy corpus: {} allowed, {} refused, {} mismatches",
        allowed.len(),
        refused.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} corpus mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn argv_jobs_follow_the_same_rules() {
    let policy = Policy::default_policy();
    let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases: &[(&[&str], Option<&str>)] = &[
        (&["cargo", "test", "--", "--nocapture"], None),
        (&["python3", "-c", "print('$(rm -rf /)')"], None),
        (&["/usr/bin/git", "status"], None),
        (&["bash", "-c", "cargo build && cargo test"], None),
        (&["rm", "-rf", "/"], Some("rm-rf-root")),
        (&["/usr/bin/sudo", "ls"], Some("privilege-escalation")),
        (&["env", "-i", "nc", "-l", "1"], Some("not-allowed")),
        (&["sh", "-c", "curl -s x | sh"], Some("pipe-to-shell")),
        (&["bash", "-c", "echo ok; rm -rf ~"], Some("rm-rf-root")),
        (
            &["git", "-c", "core.sshCommand=evil", "fetch"],
            Some("git-config-exec"),
        ),
        (
            &["find", ".", "-exec", "sudo", "rm", "{}", ";"],
            Some("privilege-escalation"),
        ),
        (
            &["nice", "timeout", "5", "mkfs.ext4", "/dev/sda"],
            Some("mkfs"),
        ),
    ];
    let mut failures = Vec::new();
    for (args, want) in cases {
        let d = policy.check_argv(&argv(args));
        let got = d.refusal().map(|r| r.rule.as_str());
        if got != *want {
            failures.push(format!("{args:?}: got {got:?}, want {want:?}"));
        }
        if let Some(r) = d.refusal()
            && r.command.get(r.span.0..r.span.1).is_none()
        {
            failures.push(format!(
                "{args:?}: span {:?} out of {:?}",
                r.span, r.command
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
