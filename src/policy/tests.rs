use super::*;

fn rule_of(p: &Policy, cmd: &str) -> Option<String> {
    p.check_command(cmd).refusal().map(|r| r.rule.clone())
}

#[test]
fn builtin_rules_compile_and_their_examples_hold() {
    let p = Policy::from_config(&PolicyConfig::default());
    assert!(p.is_ok(), "{:?}", p.err());
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
    let p = Policy::default_policy();
    let deep = format!("{}ls{}", "(".repeat(5000), ")".repeat(5000));
    assert_eq!(rule_of(&p, &deep).as_deref(), Some("too-complex"));
    let long = "ls && ".repeat(20_000) + "ls";
    assert_eq!(rule_of(&p, &long).as_deref(), Some("too-long"));
    let chain = "true && ".repeat(2_000) + "true";
    assert_eq!(rule_of(&p, &chain), None);
    let nested = "eval ".repeat(12) + "ls";
    assert_eq!(rule_of(&p, &nested).as_deref(), Some("too-deep"));
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
