//! The command line: `run`, `schema`, and configuration errors that name the key.

use crate::common;
use common::BIN;
use std::process::Command;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn run_prints_output_and_mirrors_the_exit_code() {
    let (code, stdout, stderr) = run(
        &[
            "run",
            "-c",
            "echo out; echo err >&2; echo a > \"$OUTPUT_DIR/a\"; exit 3",
        ],
        &[],
    );
    assert_eq!(code, 3);
    assert_eq!(stdout, "out\n");
    assert!(
        stderr.contains("err\n")
            && stderr.contains("failed (exit 3)")
            && stderr.contains("artifact a"),
        "{stderr}"
    );

    let (code, _, stderr) = run(&["run", "--timeout", "200ms", "--", "sleep", "10"], &[]);
    assert_eq!(code, 124, "{stderr}");
    let (code, stdout, _) = run(&["run", "--json", "--", "true"], &[]);
    assert_eq!(code, 0);
    let job: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(job["status"], "finished");
}

#[test]
fn configuration_errors_name_the_key_and_exit_2() {
    let (code, _, stderr) = run(
        &["--set", "worker.max_queued=\"many\"", "run", "--", "true"],
        &[],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("worker.max_queued"), "{stderr}");

    let (code, _, stderr) = run(
        &["run", "--", "true"],
        &[("OPENCODE_WORKER_SESSION__KILL_GRACE_MS", "soon")],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("session.kill_grace_ms"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("opencode-worker.json");
    std::fs::write(&file, r#"{"governance": {"defaults": {"memory": "lots"}}}"#).unwrap();
    let (code, _, stderr) = run(
        &["--config", file.to_str().unwrap(), "run", "--", "true"],
        &[],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("governance.defaults.memory"), "{stderr}");

    std::fs::write(&file, r#"{"worker": {"typo_key": 1}}"#).unwrap();
    let (code, _, stderr) = run(
        &["run", "--", "true"],
        &[("OPENCODE_WORKER_CONFIG", file.to_str().unwrap())],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("typo_key"), "{stderr}");

    // Variables without `__` belong to others (the plugin reads OPENCODE_WORKER_BIN).
    let (code, _, stderr) = run(&["run", "--", "true"], &[("OPENCODE_WORKER_BIN", "/x")]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn schema_check_catches_stale_files() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, _) = run(&["schema", "--out", dir.path().to_str().unwrap()], &[]);
    assert_eq!(code, 0);
    let (code, _, _) = run(&["schema", "--check", dir.path().to_str().unwrap()], &[]);
    assert_eq!(code, 0);
    std::fs::write(dir.path().join("worker_get_status.input.json"), "{}\n").unwrap();
    std::fs::write(dir.path().join("worker_gone.input.json"), "{}\n").unwrap();
    let (code, _, stderr) = run(&["schema", "--check", dir.path().to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("worker_get_status.input.json")
            && stderr.contains("worker_gone.input.json"),
        "{stderr}"
    );
}
