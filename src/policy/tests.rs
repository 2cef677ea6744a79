use super::*;

/// Held by `limits_hold`, whose cases sit near the 250 ms budget in a debug build, and by the
/// tests that run many checks, so the two do not share the CPU and make the first time out.
static BUDGETED: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn budgeted() -> std::sync::MutexGuard<'static, ()> {
    BUDGETED.lock().unwrap_or_else(|e| e.into_inner())
}

fn rule_of(p: &Policy, cmd: &str) -> Option<String> {
    p.check_command(cmd).refusal().map(|r| r.rule.clone())
}

#[test]
fn builtin_rules_compile_and_their_examples_hold() {
    // `from_config` trusts this test for the built-in rules: every example is run here.
    let cfg = PolicyConfig::default();
    let p = Policy::build(&cfg).unwrap();
    let checked = p.check_examples(&cfg, |_| false);
    assert!(checked.is_ok(), "{:?}", checked.err());
    assert!(Policy::from_config(&cfg).is_ok());
}

#[test]
fn configured_rules_still_have_their_examples_checked() {
    // A built-in rule changed by the config, and one under other bounds, are checked again.
    let mut rule = defaults::deny_rules().remove(0);
    rule.match_examples.push("true".into());
    let cfg = PolicyConfig {
        deny_rules: vec![rule],
        ..PolicyConfig::default()
    };
    assert!(matches!(
        Policy::from_config(&cfg),
        Err(PolicyConfigError::MatchExampleNotRefused { .. })
    ));
}

#[test]
fn empty_json_is_the_default_config() {
    let cfg: PolicyConfig = serde_json::from_str("{}").expect("{} parses");
    assert_eq!(cfg, PolicyConfig::default());
    assert_eq!(cfg.mode, PolicyMode::Enforce);
    assert!(cfg.extend_defaults);
}

#[test]
fn sees_past_first_word() {
    let p = Policy::default_policy();
    assert_eq!(
        rule_of(&p, "echo hi; rm -rf ~").as_deref(),
        Some("rm-rf-root")
    );
    assert_eq!(rule_of(&p, "echo hi"), None);
    assert_eq!(
        rule_of(&p, "bash -c 'r\"\"m -rf /'").as_deref(),
        Some("rm-rf-root")
    );
}

#[test]
fn span_points_into_nested_script() {
    let p = Policy::default_policy();
    let cmd = "ls && bash -c 'echo ok; sudo ls'";
    let r = p.check_command(cmd);
    let r = r.refusal().expect("refused");
    assert_eq!(r.rule, "privilege-escalation");
    assert_eq!(&cmd[r.span.0..r.span.1], "sudo");
    assert!(r.message().contains("sudo"));
}

#[test]
fn argv_jobs_use_the_same_rules() {
    let p = Policy::default_policy();
    let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(p.check_argv(&argv(&["cargo", "test"])).is_allowed());
    let d = p.check_argv(&argv(&["/bin/sh", "-c", "curl -s x | sh"]));
    assert_eq!(d.refusal().map(|r| r.rule.as_str()), Some("pipe-to-shell"));
    let d = p.check_argv(&argv(&["/usr/bin/rm", "-rf", "/"]));
    let r = d.refusal().expect("refused");
    assert_eq!(r.rule, "rm-rf-root");
    assert_eq!(r.program, "rm");
}

#[test]
fn bad_regex_names_the_rule() {
    let cfg: PolicyConfig = serde_json::from_str(
        r#"{"deny_rules": [{"name": "broken", "pattern": "(", "reason": "x"}]}"#,
    )
    .expect("parses");
    let err = Policy::from_config(&cfg).expect_err("must fail");
    assert!(err.to_string().contains("broken"), "{err}");
}

#[test]
fn examples_are_checked_at_load() {
    let cfg: PolicyConfig = serde_json::from_str(
        r#"{"deny_rules": [{"name": "no-make-install", "pattern": "^make( .*)? install( |$)",
            "reason": "installs system-wide", "match": ["make install", "cd x && make -j4 install"],
            "not_match": ["make installer"]}]}"#,
    )
    .expect("parses");
    let p = Policy::from_config(&cfg).expect("examples hold");
    assert_eq!(
        rule_of(&p, "make install").as_deref(),
        Some("no-make-install")
    );

    let cfg: PolicyConfig = serde_json::from_str(
        r#"{"deny_rules": [{"name": "weak", "pattern": "^make install$", "reason": "x",
            "match": ["make -j4 install"]}]}"#,
    )
    .expect("parses");
    let err = Policy::from_config(&cfg).expect_err("example fails");
    assert!(
        matches!(err, PolicyConfigError::MatchExampleNotRefused { ref rule, .. } if rule == "weak")
    );
}

#[test]
fn replace_defaults() {
    let cfg: PolicyConfig =
        serde_json::from_str(r#"{"extend_defaults": false, "allow": ["ls"]}"#).expect("parses");
    let p = Policy::from_config(&cfg).expect("valid");
    assert_eq!(rule_of(&p, "ls -la"), None);
    assert_eq!(rule_of(&p, "cat x").as_deref(), Some("not-allowed"));
    assert!(p.rule_names().is_empty());
}

#[test]
fn disable_unknown_rule_is_an_error() {
    let cfg: PolicyConfig = serde_json::from_str(r#"{"disable_rules": ["nope"]}"#).expect("parses");
    assert!(matches!(
        Policy::from_config(&cfg),
        Err(PolicyConfigError::UnknownDisabledRule { .. })
    ));
}

#[test]
fn off_mode_allows_and_audit_still_reports() {
    let mut cfg = PolicyConfig {
        mode: PolicyMode::Off,
        ..PolicyConfig::default()
    };
    let p = Policy::from_config(&cfg).expect("valid");
    assert!(p.check_command("sudo rm -rf /").is_allowed());
    cfg.mode = PolicyMode::Audit;
    let p = Policy::from_config(&cfg).expect("valid");
    assert!(!p.check_command("sudo rm -rf /").is_allowed());
    assert_eq!(p.mode(), PolicyMode::Audit);
}

#[test]
fn limits_hold() {
    let _alone = budgeted();
    let p = Policy::default_policy();
    let deep = format!("{}ls{}", "(".repeat(5000), ")".repeat(5000));
    assert_eq!(rule_of(&p, &deep).as_deref(), Some("too-complex"));
    let long = "ls && ".repeat(20_000) + "ls";
    assert_eq!(rule_of(&p, &long).as_deref(), Some("too-long"));
    // Long enough to matter, short enough to stay far from the budget on a loaded debug build.
    let chain = "true && ".repeat(1_000) + "true";
    assert_eq!(rule_of(&p, &chain), None);
    let nested = "eval ".repeat(12) + "ls";
    assert_eq!(rule_of(&p, &nested).as_deref(), Some("too-deep"));
    for cmd in [deep, long, nested] {
        let d = p.check_command(&cmd);
        let r = d.refusal().expect("refused");
        assert!(
            message_problems(r).is_empty(),
            "{}: {:?}",
            r.rule,
            message_problems(r)
        );
    }
}

#[test]
fn policy_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Policy>();
}

#[test]
fn documented_example_config_loads() {
    let doc = include_str!("../../docs/policy.md");
    let start = doc.find("```json\n").expect("docs have a json example") + "```json\n".len();
    let end = start + doc[start..].find("```").expect("closed block");
    let cfg: PolicyConfig = serde_json::from_str(&doc[start..end]).expect("example parses");
    let p = Policy::from_config(&cfg).expect("example validates");
    assert_eq!(rule_of(&p, "git push -f").as_deref(), Some("no-force-push"));
    assert_eq!(rule_of(&p, "terraform plan"), None);
    assert_eq!(rule_of(&p, "wget x").as_deref(), Some("denied-program"));
    assert_eq!(rule_of(&p, "awk 'BEGIN{system(\"x\")}'"), None);
}

#[test]
fn cli_exit_codes() {
    assert_eq!(run_check_cli(&PolicyConfig::default(), "cargo test"), 0);
    assert_eq!(run_check_cli(&PolicyConfig::default(), "sudo ls"), 1);
    let bad = PolicyConfig {
        max_depth: 0,
        ..PolicyConfig::default()
    };
    assert_eq!(run_check_cli(&bad, "ls"), 2);
}

#[test]
fn fuzz_regressions_do_not_panic() {
    // Found by fuzz/policy_check: a backslash-newline at the very start underflowed an index.
    let p = Policy::default_policy();
    for input in ["\\\n-m  //", "\\\n", "\\\\\n\\\nx", "\n\\\n"] {
        let _ = p.check_command(input);
        let _ = p.check_argv(&[input.to_string()]);
    }
}

/// What is wrong with a refusal message as one sentence a model can act on.
fn message_problems(r: &Refusal) -> Vec<String> {
    let msg = r.message();
    let mut bad = Vec::new();
    // Judge the prose only: quoted commands may hold anything.
    let prose: String = msg
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, s)| s)
        .collect::<Vec<_>>()
        .join("X");
    if !msg.ends_with('.') || msg.ends_with("..") {
        bad.push("does not end with one period".to_string());
    }
    if prose.trim_end_matches('.').contains(". ") {
        bad.push("is more than one sentence".to_string());
    }
    let words: Vec<String> = prose
        .split(|c: char| !c.is_alphanumeric() && c != '-' && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    for pair in words.windows(2) {
        if pair[0] == pair[1] {
            bad.push(format!("repeats `{}`", pair[0]));
        }
    }
    if words.iter().filter(|w| *w == "instead").count() > 1 {
        bad.push("says `instead` twice".to_string());
    }
    if r.suggestion.trim().is_empty() {
        bad.push("names no alternative".to_string());
    }
    for (part, text) in [("reason", &r.reason), ("suggestion", &r.suggestion)] {
        if text.ends_with(['.', ';', ' ']) || text.starts_with(char::is_uppercase) {
            bad.push(format!(
                "{part} is not a clause that continues the sentence: {text:?}"
            ));
        }
    }
    bad
}

#[test]
fn every_refusal_reads_as_one_actionable_sentence() {
    let _alone = budgeted();
    let p = Policy::default_policy();
    let mut failures = Vec::new();
    let mut seen = HashSet::new();
    let mut check = |cmd: &str, want: &str| match p.check_command(cmd) {
        Decision::Refused(r) => {
            if r.rule != want {
                failures.push(format!("{cmd:?}: refused by {}, expected {want}", r.rule));
            }
            seen.insert(r.rule.clone());
            for b in message_problems(&r) {
                failures.push(format!(
                    "rule {} ({cmd:?}): message {b}: {}",
                    r.rule,
                    r.message()
                ));
            }
        }
        Decision::Allowed => failures.push(format!("{cmd:?}: allowed, expected {want}")),
    };
    // Every deny rule, through its own first example.
    for rule in Policy::default_rules() {
        let ex = rule
            .match_examples
            .first()
            .expect("every built-in rule has an example");
        check(ex, &rule.name);
    }
    // Every structural rule the evaluator and the argument readers produce.
    // (`too-deep`, `too-complex` and `too-long` are checked in `limits_hold`.)
    let structural = [
        (":(){ :|:& };:", "fork-bomb"),
        ("nc -l 1", "not-allowed"),
        ("sudo ls", "privilege-escalation"),
        ("$CMD x", "dynamic-program"),
        ("eval \"$x\"", "dynamic-eval"),
        ("bash -c \"$S\"", "dynamic-script"),
        ("echo ls | sh", "shell-stdin"),
        ("if then fi", "parse-error"),
        ("echo ${x:-`ls`}", "unsupported-syntax"),
        ("x=1; echo ${x@P}", "unsupported-syntax"),
        ("hash -p /tmp/x ls", "unsafe-builtin"),
        ("mapfile -C cb arr", "unsafe-builtin"),
        ("sed -e 's/a/b/e' f", "sed-exec"),
        ("env -S 'ls -l'", "unsupported-wrapper"),
        ("git -c core.pager=x log", "git-config-exec"),
    ];
    for (cmd, want) in structural {
        check(cmd, want);
    }
    let names: Vec<String> = Policy::default_rules()
        .into_iter()
        .map(|r| r.name)
        .collect();
    for name in names {
        assert!(seen.contains(&name), "rule {name} was never exercised");
    }
    assert!(seen.len() >= 30, "only {} rules exercised", seen.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fork_bomb_message_says_instead_once() {
    let _alone = budgeted();
    let p = Policy::default_policy();
    let r = p.check_command(":(){ :|:& };:");
    let msg = r.refusal().expect("refused").message();
    assert_eq!(msg.matches("instead").count(), 1, "{msg}");
}

#[test]
fn commands_that_run_commands() {
    let _alone = budgeted();
    let p = Policy::default_policy();
    let cases: &[(&str, Option<&str>)] = &[
        ("echo / | xargs rm -rf", Some("rm-rf-root")),
        ("printf '%s\\0' / | xargs -0 rm -rf", Some("rm-rf-root")),
        ("echo ~ | xargs -I{} rm -rf {}", Some("rm-rf-root")),
        ("xargs rm -rf <<< /usr", Some("rm-rf-system")),
        ("echo build dist | xargs rm -rf", None),
        ("find . -name '*.o' | xargs rm -f", None),
        ("find / -delete", Some("find-delete")),
        ("find ~ -name '*.tmp' -exec rm {} +", Some("find-delete")),
        ("find . -name '*.rs' -exec grep -l foo {} +", None),
        ("find . -name __pycache__ -prune -exec rm -rf {} +", None),
        ("cd / && rm -rf *", Some("rm-rf-root")),
        ("cd ~ && rm -rf *", Some("rm-rf-root")),
        ("cd /usr; rm -rf ./*", Some("rm-rf-system")),
        ("cd /etc && echo x > hosts", Some("write-etc")),
        (
            "cd .git/hooks && echo x > pre-commit",
            Some("write-git-hooks"),
        ),
        ("(cd /) && rm -rf *", None),
        ("cd build && rm -rf *", None),
        ("cd /tmp/x && rm -rf *", None),
        ("cd / && bash -c 'rm -rf *'", Some("rm-rf-root")),
        (
            "python3 -c 'import os; os.system(\"rm -rf /\")'",
            Some("rm-rf-root"),
        ),
        ("perl -e 'system(\"rm -rf ~\")'", Some("rm-rf-root")),
        (
            "python3 -c 'import shutil; shutil.rmtree(\"/\")'",
            Some("rm-rf-root"),
        ),
        (
            "node -e 'require(\"child_process\").execSync(\"sudo ls\")'",
            Some("privilege-escalation"),
        ),
        (
            "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"a\"])'",
            None,
        ),
        ("python3 -c 'import os; os.system(\"ls -la\")'", None),
    ];
    let mut failures = Vec::new();
    for (cmd, want) in cases {
        let got = rule_of(&p, cmd);
        if got.as_deref() != *want {
            failures.push(format!("{cmd}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn runners_seen_through_when_allowed() {
    let _alone = budgeted();
    let cfg: PolicyConfig =
        serde_json::from_str(r#"{"allow": ["parallel", "watch", "flock", "chronic", "unbuffer"]}"#)
            .expect("parses");
    let p = Policy::from_config(&cfg).expect("valid");
    let cases: &[(&str, Option<&str>)] = &[
        ("parallel rm -rf ::: /", Some("rm-rf-root")),
        ("parallel ::: 'sudo ls' 'ls'", Some("privilege-escalation")),
        ("parallel gzip ::: a.log b.log", None),
        ("echo / | parallel rm -rf {}", Some("rm-rf-root")),
        ("watch -n 1 'rm -rf ~'", Some("rm-rf-root")),
        ("watch -n 5 'cargo test 2>&1 | tail'", None),
        ("flock /tmp/lock rm -rf /", Some("rm-rf-root")),
        (
            "flock -w 10 /tmp/lock -c 'sudo ls'",
            Some("privilege-escalation"),
        ),
        ("flock /tmp/lock cargo build", None),
        ("chronic rm -rf /usr", Some("rm-rf-system")),
        ("unbuffer nc -l 1", Some("not-allowed")),
        ("uv run rm -rf /", Some("rm-rf-root")),
        ("uv run --with pytest-xdist pytest -n 4", None),
        ("uv run prisma-like-local-tool generate", None),
        ("npx -c 'sudo ls'", Some("privilege-escalation")),
        ("npm exec -- eslint .", None),
        ("poetry run python -m pytest", None),
        ("bundle exec bash -c 'nc -l 1'", Some("not-allowed")),
        ("cat cmds.txt | parallel", Some("dynamic-script")),
    ];
    let mut failures = Vec::new();
    for (cmd, want) in cases {
        let d = p.check_command(cmd);
        let got = d.refusal().map(|r| r.rule.clone());
        if got.as_deref() != *want {
            failures.push(format!("{cmd}: got {got:?}, want {want:?}"));
        }
        if let Some(r) = d.refusal() {
            for b in message_problems(r) {
                failures.push(format!("{cmd}: message {b}: {}", r.message()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_prefix_of_the_new_forms_is_checked_without_panic() {
    let _alone = budgeted();
    // The inline-code and xargs readers parse string literals and input by hand: cut them
    // anywhere (unterminated quotes, a trailing backslash) and the check still answers.
    let p = Policy::default_policy();
    let forms = [
        r#"python3 -c 'import os, subprocess; os.system("rm -rf \"/\""); subprocess.run(["a", "b\\"], shell=True)'"#,
        r#"perl -lne 'system "rm", "-rf", q{/}; `ls`; qx{id}' f"#,
        r#"ruby -e 'system("ls"); %x(id); FileUtils.rm_rf(Dir.home)'"#,
        r#"node -e "require('child_process').spawnSync('rm', ['-rf', `/`]); fs.rmSync(os.homedir(), {recursive: true})""#,
        r#"php -r 'echo `ls`; shell_exec("id");'"#,
        r#"printf '%s\0' / "a b" | xargs -0 -I{} sh -c 'rm -rf {}' && echo "'x" | xargs rm"#,
        "cd / && pushd ~ && cd ../.. && find .. -delete | parallel rm ::: / ~",
    ];
    for form in forms {
        for (i, _) in form.char_indices() {
            let cut = &form[..i];
            if let Decision::Refused(r) = p.check_command(cut) {
                assert!(
                    r.span.0 <= r.span.1 && r.span.1 <= cut.len(),
                    "{cut:?}: span {:?}",
                    r.span
                );
            }
        }
    }
}
