//! `opencode-worker run --follow` off a terminal: the output itself, as it comes, then the
//! usual summary on stderr and the job's exit code.

use crate::common;

use std::process::Command;

#[test]
fn run_follow_prints_output_live_and_exits_with_the_code() {
    let base = tempfile::tempdir().unwrap();
    let out = Command::new(common::BIN)
        .args([
            "--set",
            &format!("session.base_dir={}", base.path().display()),
        ])
        .args(["run", "--follow", "--", "sh", "-c"])
        .arg("echo one; echo two >&2; printf '\\303'; printf '\\251\\n'; exit 3")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stdout, "one\né\n".as_bytes());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("two\n"), "{stderr}");
    assert!(stderr.contains("failed (exit 3)"), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "no progress line off a terminal: {stderr:?}"
    );
}
