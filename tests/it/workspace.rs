//! Workspaces through the real binary: jobs on a real git project in `read` and `write`
//! modes, the protected paths of `write`, secrets, and every refused `workspace.path`.
//!
//! Projects live under /var/tmp: the job's private /tmp would not hide them (the worker binds a
//! workspace under /tmp back in place, tested separately), but the fake home and the project's
//! parent must be outside the session base for the "write outside" checks to mean something.

use crate::common;
use common::*;
use opencode_worker::protocol::table::{self, Method};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Fixture {
    worker: Worker,
    /// Holds the project and, beside it, a file a job must not reach.
    parent: tempfile::TempDir,
    project: PathBuf,
    home: tempfile::TempDir,
}

const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY----- workspace-test";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A git project with one commit and no `.git/hooks` (the placeholder case), a worker whose
/// project root is it, and a fake home holding an ssh key.
fn fixture(extra: &[&str]) -> Option<Fixture> {
    let parent = tempfile::tempdir_in("/var/tmp").expect("parent dir");
    let project = std::fs::canonicalize(parent.path())
        .unwrap()
        .join("project");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(project.join("README"), "hello\n").unwrap();
    std::fs::write(project.join("src/lib.txt"), "lib\n").unwrap();
    git(&project, &["init", "-q", "-b", "main"]);
    std::fs::remove_dir_all(project.join(".git/hooks")).unwrap();
    git(&project, &["add", "-A"]);
    git(&project, &["commit", "-qm", "first"]);
    std::fs::write(parent.path().join("outside.txt"), "outside\n").unwrap();

    let home = tempfile::tempdir_in("/var/tmp").expect("fake home");
    std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
    std::fs::write(home.path().join(".ssh/id_ed25519"), KEY).unwrap();
    let root = format!("workspace.root={}", project.display());
    let mut settings = vec![root.as_str()];
    settings.extend_from_slice(extra);
    let home_str = home.path().to_str().unwrap().to_owned();
    // cargo runs the tests with CARGO_HOME set: the worker's caches are the fake home's too.
    let cargo_home = home.path().join(".cargo").to_str().unwrap().to_owned();
    let mut worker = Worker::start_walls(
        &settings,
        &[
            ("HOME", home_str.as_str()),
            ("CARGO_HOME", cargo_home.as_str()),
        ],
    );
    let init = worker.call(table::Initialize::NAME, json!({}));
    let sandboxed = init["isolation"]["layers"].as_array().is_some_and(|l| {
        l.iter()
            .any(|l| l["name"] == "filesystem" && l["state"] == "active")
    });
    if !sandboxed {
        eprintln!("SKIPPED: no Landlock here, workspace protection is not what is tested");
        return None;
    }
    Some(Fixture {
        worker,
        parent,
        project,
        home,
    })
}

fn run(worker: &mut Worker, mode: &str, command: &str) -> Value {
    worker.dispatch(json!({
        "command": command,
        "workspace": {"mode": mode},
        "wait_ms": 30000,
    }))
}

fn stdout(job: &Value) -> &str {
    job["stdout"].as_str().unwrap_or_default()
}

fn assert_fails(job: &Value, what: &str) {
    assert_eq!(job["status"], "failed", "{what} should have failed: {job}");
}

#[test]
fn write_mode_commits_in_place() {
    let Some(Fixture {
        mut worker,
        project,
        parent: _parent,
        home: _home,
    }) = fixture(&[])
    else {
        return;
    };
    let job = run(
        &mut worker,
        "write",
        "pwd && echo new > new.txt && sed -i s/hello/bye/ README && git add -A \
         && git -c user.name=job -c user.email=job@example.invalid commit -qm 'from the job' \
         && git log --format=%s -1",
    );
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(
        stdout(&job),
        format!("{}\nfrom the job\n", project.display()),
        "the job starts in the workspace at its real path"
    );
    assert_eq!(
        git(&project, &["log", "--format=%s", "-1"]),
        "from the job\n"
    );
    assert_eq!(
        std::fs::read_to_string(project.join("README")).unwrap(),
        "bye\n"
    );
    assert!(git(&project, &["status", "--porcelain"]).is_empty());
    let layers = job["isolation"].as_array().unwrap();
    assert!(
        layers.iter().any(|l| l["name"] == "workspace"),
        "{layers:?}"
    );
    // The placeholders made for missing protected paths are gone again.
    for gone in [".git/hooks", "opencode.json", ".envrc", ".opencode"] {
        assert!(!project.join(gone).exists(), "{gone} left behind");
    }
    worker.assert_no_session_dirs();
}

#[test]
fn write_mode_keeps_protected_paths_and_the_outside_read_only() {
    let Some(Fixture {
        mut worker,
        parent,
        project,
        home,
    }) = fixture(&[])
    else {
        return;
    };
    std::os::unix::fs::symlink(home.path().join(".ssh/id_ed25519"), project.join("key")).unwrap();
    let config_before = std::fs::read(project.join(".git/config")).unwrap();
    let attempts = [
        (
            "a new hook",
            "mkdir -p .git/hooks && echo 'touch /x' > .git/hooks/pre-commit",
        ),
        (
            "a hook through a new hooks dir",
            "echo x > .git/hooks/pre-commit",
        ),
        ("git config", "echo '[core] hooksPath = h' >> .git/config"),
        ("git config via git", "git config core.hooksPath h"),
        ("OpenCode's config", "echo '{}' > opencode.json"),
        ("OpenCode's jsonc", "echo '{}' > opencode.jsonc"),
        (
            "OpenCode's plugins dir",
            "mkdir -p .opencode/plugin && echo x > .opencode/plugin/p.js",
        ),
        ("direnv", "echo 'echo hi' > .envrc"),
        ("the worker's config", "echo '{}' > opencode-worker.json"),
        ("renaming .git away", "mv .git .git-old"),
        (
            "replacing the placeholder",
            "rmdir opencode.json && echo '{}' > opencode.json",
        ),
        (
            "unmounting the protection",
            "perl -e 'syscall(166, \".git/config\", 2) == 0 or die \"umount2: $!\\n\"'",
        ),
        ("writing beside the project", "echo x > ../outside.txt"),
        ("creating beside the project", "echo x > ../planted.txt"),
        ("reading a key through a symlink", "cat key"),
    ];
    for (what, command) in attempts {
        let job = run(&mut worker, "write", command);
        assert_fails(&job, what);
        assert!(!stdout(&job).contains("PRIVATE KEY"), "{what}: {job}");
    }
    assert_eq!(
        std::fs::read(project.join(".git/config")).unwrap(),
        config_before
    );
    for never in [
        ".git/hooks",
        ".git-old",
        "opencode.json",
        "opencode.jsonc",
        ".opencode",
        ".envrc",
        "opencode-worker.json",
    ] {
        assert!(
            !project.join(never).exists(),
            "{never} exists after the jobs"
        );
    }
    assert_eq!(
        std::fs::read_to_string(parent.path().join("outside.txt")).unwrap(),
        "outside\n"
    );
    assert!(!parent.path().join("planted.txt").exists());
    // An existing hooks dir is protected the same way, with its samples readable.
    std::fs::create_dir(project.join(".git/hooks")).unwrap();
    std::fs::write(project.join(".git/hooks/pre-commit.sample"), "#!/bin/sh\n").unwrap();
    let job = run(
        &mut worker,
        "write",
        "cat .git/hooks/pre-commit.sample && echo x > .git/hooks/pre-commit",
    );
    assert_fails(&job, "a hook in an existing hooks dir");
    assert_eq!(stdout(&job), "#!/bin/sh\n");
    assert!(!project.join(".git/hooks/pre-commit").exists());
    let job = run(&mut worker, "write", "echo fine > src/ok.txt");
    assert_eq!(job["status"], "finished", "{job}");
}

#[test]
fn read_mode_sees_the_project_read_only() {
    let Some(Fixture {
        mut worker,
        project,
        parent: _parent,
        home: _home,
    }) = fixture(&[])
    else {
        return;
    };
    let job = worker.dispatch(json!({
        "command": "pwd && cat lib.txt && touch new",
        "workspace": {"mode": "read"},
        "cwd": "src",
        "wait_ms": 30000,
    }));
    assert_fails(&job, "touch in read mode");
    assert_eq!(stdout(&job), format!("{}/src\nlib\n", project.display()));
    assert!(!project.join("src/new").exists());
    // A relative path starts at the project root.
    let job = worker.dispatch(json!({
        "command": "pwd",
        "workspace": {"mode": "read", "path": "src"},
        "wait_ms": 30000,
    }));
    assert_eq!(
        stdout(&job),
        format!("{}/src\n", project.display()),
        "{job}"
    );
}

#[test]
fn a_workspace_under_tmp_is_bound_back_in_place() {
    if fixture(&[]).is_none() {
        return;
    }
    // The job's /tmp is a private tmpfs; a project under the host's /tmp must still be there.
    let tmp = tempfile::tempdir().unwrap();
    let project = std::fs::canonicalize(tmp.path()).unwrap();
    std::fs::write(project.join("f"), "in tmp\n").unwrap();
    let root = format!("workspace.root={}", project.display());
    let mut worker = Worker::start_walls(&[root.as_str()], &[]);
    let job = worker.dispatch(json!({
        "command": "cat f && echo more >> f && ls /tmp | wc -l",
        "workspace": {"mode": "write"},
        "wait_ms": 30000,
    }));
    assert_eq!(job["status"], "finished", "{job}");
    assert!(stdout(&job).starts_with("in tmp\n"), "{job}");
    assert_eq!(
        std::fs::read_to_string(project.join("f")).unwrap(),
        "in tmp\nmore\n"
    );
}

#[test]
fn bad_workspace_paths_are_refused_naming_the_field() {
    let Some(Fixture {
        mut worker,
        parent,
        project,
        home: _home,
    }) = fixture(&[])
    else {
        return;
    };
    std::os::unix::fs::symlink(parent.path(), project.join("up")).unwrap();
    let cases = [
        (
            json!({"mode": "write", "path": "missing"}),
            "workspace.path",
            "does not exist",
        ),
        (
            json!({"mode": "write", "path": "README"}),
            "workspace.path",
            "not a directory",
        ),
        (
            json!({"mode": "read", "path": "/etc"}),
            "workspace.path",
            "outside the workspace roots",
        ),
        (
            json!({"mode": "read", "path": "../"}),
            "workspace.path",
            "outside the workspace roots",
        ),
        (
            json!({"mode": "read", "path": "up"}),
            "workspace.path",
            "through a symlink",
        ),
        (json!({"mode": "read", "nope": 1}), "", ""),
    ];
    for (workspace, field, reason) in cases {
        let error = worker.call_err(
            table::DispatchJob::NAME,
            json!({"command": "true", "workspace": workspace}),
        );
        assert_eq!(error["code"], -32602, "{workspace}: {error}");
        if !field.is_empty() {
            assert_eq!(error["data"]["field"], field, "{workspace}: {error}");
            let text = error["data"]["reason"].as_str().unwrap_or_default();
            assert!(text.contains(reason), "{workspace}: {error}");
        }
    }
    let error = worker.call_err(
        table::DispatchJob::NAME,
        json!({"command": "true", "workspace": {"mode": "read"}, "cwd": "up"}),
    );
    assert_eq!(error["data"]["field"], "cwd", "{error}");
    let error = worker.call_err(
        table::DispatchJob::NAME,
        json!({"command": "true", "workspace": {"mode": "read"}, "cwd": "nope"}),
    );
    assert_eq!(error["data"]["field"], "cwd", "{error}");
    // Only `workspace.roots` may hold a workspace; the default is the root alone.
    let error = worker.call_err(
        table::DispatchJob::NAME,
        json!({"command": "true", "workspace": {"mode": "read", "path": parent.path()}}),
    );
    assert_eq!(error["data"]["field"], "workspace.path", "{error}");
}

#[test]
fn a_workspace_holding_a_credential_store_is_refused() {
    let Some(Fixture {
        home,
        parent: _parent,
        ..
    }) = fixture(&[])
    else {
        return;
    };
    let roots = format!("workspace.roots=[\"{}\"]", home.path().display());
    let home_str = home.path().to_str().unwrap().to_owned();
    let mut worker = Worker::start_walls(&[roots.as_str()], &[("HOME", home_str.as_str())]);
    let error = worker.call_err(
        table::DispatchJob::NAME,
        json!({"command": "true", "workspace": {"mode": "read", "path": home.path()}}),
    );
    assert_eq!(error["data"]["field"], "workspace.path", "{error}");
    assert!(
        error["data"]["reason"].as_str().unwrap().contains(".ssh"),
        "{error}"
    );
}

/// SHA-256 of every file (and the target of every symlink) under `dir`, by relative path.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg("find . -type f -print0 | sort -z | xargs -0 -r sha256sum; find . -type l -printf '%p -> %l\\n' | sort; find . -printf '%p %m\\n' | sort")
        .current_dir(dir)
        .output()
        .expect("find runs");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| (l.to_owned(), String::new()))
        .collect()
}

/// `printf 'bye\n' | sha256sum`
const BYE_SHA256: &str = "abc6fd595fc079d3114d4b71a4d84b1d1d0f79df1e70f8813212f2a65d8916df";

fn overlay(worker: &mut Worker, command: &str) -> Value {
    run(worker, "overlay", command)
}

#[test]
fn overlay_reports_every_kind_of_edit_and_leaves_the_project_alone() {
    let Some(Fixture {
        mut worker,
        project,
        parent: _parent,
        home: _home,
    }) = fixture(&[])
    else {
        return;
    };
    std::fs::write(project.join(".gitignore"), "target/\n").unwrap();
    std::fs::write(project.join("old.txt"), "old\n").unwrap();
    std::fs::write(project.join("script.sh"), "echo hi\n").unwrap();
    std::fs::write(project.join("link-me.txt"), "plain\n").unwrap();
    std::fs::create_dir_all(project.join("gone/deep")).unwrap();
    std::fs::write(project.join("gone/deep/a.txt"), "a\n").unwrap();
    let before = snapshot(&project);
    let job = overlay(
        &mut worker,
        "sed -i s/hello/bye/ README && echo new > added.txt && rm old.txt && chmod +x script.sh \
         && mv src/lib.txt src/moved.txt && rm link-me.txt && ln -s README link-me.txt \
         && rm -r gone && mkdir -p target/debug && echo bin > target/debug/x \
         && git -c user.name=j -c user.email=j@example.invalid commit -qam inside \
         && cat README",
    );
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(stdout(&job), "bye\n", "the job sees its own writes");
    assert_eq!(snapshot(&project), before, "the project on disk changed");

    let changes = &job["changes"];
    let files = paths_and_kinds(changes);
    let expected: Vec<(String, String)> = [
        ("README", "modified"),
        ("added.txt", "added"),
        ("gone/deep/a.txt", "deleted"),
        ("link-me.txt", "type_changed"),
        ("old.txt", "deleted"),
        ("script.sh", "modified"),
        ("src/lib.txt", "deleted"),
        ("src/moved.txt", "added"),
    ]
    .iter()
    .map(|(p, k)| ((*p).to_owned(), (*k).to_owned()))
    .collect();
    assert_eq!(files, expected, "{changes}");
    let by_path = |path: &str| {
        changes["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == path)
            .cloned()
            .unwrap()
    };
    let readme = by_path("README");
    assert_eq!(readme["size"], 4);
    assert_eq!(readme["sha256"], BYE_SHA256);
    assert_eq!(by_path("script.sh")["mode"], 0o755);
    assert_eq!(by_path("link-me.txt")["link_target"], "README");
    let diff = changes["diff"]["text"].as_str().unwrap();
    for piece in [
        "--- a/README\n+++ b/README\n",
        "-hello\n+bye\n",
        "+++ b/added.txt\n",
        "+new\n",
        "--- a/old.txt\n+++ /dev/null\n",
        "-old\n",
    ] {
        assert!(diff.contains(piece), "{piece:?} missing from {diff}");
    }
    assert_eq!(changes["diff"]["truncated"], false);
    // target/debug/x and the commit's objects, refs and logs under .git are only counted.
    assert!(
        changes["ignored"]["count"].as_u64().unwrap() >= 2,
        "{changes}"
    );
    worker.call(
        table::DiscardChanges::NAME,
        json!({"job_id": job["job_id"]}),
    );
    worker.assert_no_session_dirs();
}

#[test]
fn cargo_test_in_overlay_reuses_target_and_leaves_the_crate_byte_identical() {
    let Some(Fixture {
        worker,
        parent,
        project: _project,
        home: _home,
    }) = fixture(&[])
    else {
        return;
    };
    drop(worker);
    let krate = parent.path().join("krate");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    std::fs::write(
        krate.join("Cargo.toml"),
        "[package]\nname = \"krate\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(
        krate.join("src/lib.rs"),
        "pub fn two() -> u32 { 2 }\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn passes() { assert_eq!(super::two(), 2); }\n    #[test]\n    fn fails() { assert_eq!(super::two(), 3); }\n}\n",
    )
    .unwrap();
    std::fs::write(krate.join(".gitignore"), "target/\n").unwrap();
    let host = Command::new("cargo")
        .args(["test", "--no-run", "--offline"])
        .current_dir(&krate)
        .output()
        .expect("cargo runs on the host");
    assert!(host.status.success(), "{host:?}");
    let before = snapshot(&krate);
    // The real HOME: cargo and rustc come from the user's toolchain.
    let root = format!("workspace.root={}", krate.display());
    let mut worker = Worker::start_walls(&[root.as_str()], &[]);
    let job = overlay(&mut worker, "cargo test --offline 2>&1");
    assert_eq!(job["status"], "failed", "{job}");
    let out = stdout(&job);
    assert!(
        out.contains("test result: FAILED. 1 passed; 1 failed"),
        "{out}"
    );
    assert!(
        !out.contains("Compiling krate"),
        "the overlay run rebuilt what the host had built: {out}"
    );
    assert_eq!(snapshot(&krate), before, "the crate on disk changed");
    assert_eq!(job["changes"]["files"], json!([]), "{}", job["changes"]);
    eprintln!(
        "cargo test in overlay: execute_ms {} ; ignored {}",
        job["metrics"]["execute_ms"], job["changes"]["ignored"]
    );

    // A second overlay run after an edit is incremental: on top of the project's target/,
    // only the edited crate is compiled, and the project still does not change.
    let edited = overlay(
        &mut worker,
        "sed -i 's/fn two() -> u32 { 2 }/fn two() -> u32 { 1 + 1 }/' src/lib.rs \
         && cargo test --offline 2>&1",
    );
    assert_eq!(edited["status"], "failed", "{edited}");
    let out = stdout(&edited);
    let compiled: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("Compiling"))
        .collect();
    assert_eq!(compiled.len(), 1, "{out}");
    assert!(compiled[0].contains("krate"), "{out}");
    assert!(out.contains("1 passed; 1 failed"), "{out}");
    assert_eq!(snapshot(&krate), before, "the crate on disk changed");
    assert_eq!(
        paths_and_kinds(&edited["changes"]),
        pairs(&[("src/lib.rs", "modified")]),
        "{}",
        edited["changes"]
    );
    eprintln!(
        "edit + cargo test in overlay: execute_ms {} ; ignored {}",
        edited["metrics"]["execute_ms"], edited["changes"]["ignored"]
    );
}

/// `(entry[a], entry[b])` of every entry of a JSON list.
fn field_pairs(list: &Value, a: &str, b: &str) -> Vec<(String, String)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry[a].as_str().unwrap().to_owned(),
                entry[b].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn outcomes(result: &Value) -> Vec<(String, String)> {
    field_pairs(&result["results"], "path", "outcome")
}

fn paths_and_kinds(changes: &Value) -> Vec<(String, String)> {
    field_pairs(&changes["files"], "path", "kind")
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[test]
fn overlay_changes_apply_except_conflicts_and_protected_paths() {
    let Some(Fixture {
        mut worker,
        project,
        parent: _parent,
        home: _home,
    }) = fixture(&[])
    else {
        return;
    };
    std::fs::write(project.join(".gitignore"), "target/\n").unwrap();
    std::fs::create_dir_all(project.join("gone/deep")).unwrap();
    std::fs::write(project.join("gone/deep/a.txt"), "a\n").unwrap();
    std::fs::write(project.join("tool.sh"), "echo\n").unwrap();
    let job = overlay(
        &mut worker,
        "sed -i s/hello/bye/ README && echo new > src/added.txt && echo job > src/lib.txt \
         && rm -r gone && chmod +x tool.sh && ln -s README readme-link && echo '{}' > opencode.json \
         && mkdir -p target && echo x > target/out",
    );
    assert_eq!(job["status"], "finished", "{job}");
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    // The user edits one of the same files after the job.
    std::fs::write(project.join("src/lib.txt"), "user\n").unwrap();

    let result = worker.call(table::ApplyChanges::NAME, json!({"job_id": job_id}));
    assert_eq!(
        outcomes(&result),
        pairs(&[
            ("README", "applied"),
            ("gone/deep/a.txt", "applied"),
            ("opencode.json", "skipped"),
            ("readme-link", "applied"),
            ("src/added.txt", "applied"),
            ("src/lib.txt", "conflict"),
            ("tool.sh", "applied"),
        ]),
        "{result}"
    );
    assert_eq!(
        std::fs::read_to_string(project.join("README")).unwrap(),
        "bye\n"
    );
    assert_eq!(
        std::fs::read_to_string(project.join("src/added.txt")).unwrap(),
        "new\n"
    );
    assert_eq!(
        std::fs::read_to_string(project.join("src/lib.txt")).unwrap(),
        "user\n"
    );
    assert_eq!(
        std::fs::read_link(project.join("readme-link")).unwrap(),
        Path::new("README")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(project.join("tool.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert!(!project.join("gone").exists(), "the removed dir is gone");
    assert!(!project.join("opencode.json").exists());
    assert!(
        !project.join("target").exists(),
        "ignored build output is never applied"
    );
    let leftovers: Vec<String> = std::fs::read_dir(project.join("src"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("ocw-apply"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Applying again changes nothing; asking for a path outside the set says so.
    let again = worker.call(
        table::ApplyChanges::NAME,
        json!({"job_id": job_id, "paths": ["README", "nope"]}),
    );
    assert_eq!(
        outcomes(&again),
        pairs(&[("README", "skipped"), ("nope", "skipped")]),
        "{again}"
    );
    let discarded = worker.call(table::DiscardChanges::NAME, json!({"job_id": job_id}));
    assert_eq!(discarded["discarded"], 2, "{discarded}");
    let error = worker.call_err(table::DiscardChanges::NAME, json!({"job_id": job_id}));
    assert_eq!(error["data"]["field"], "job_id", "{error}");
    let error = worker.call_err(table::ApplyChanges::NAME, json!({"job_id": job_id}));
    assert_eq!(error["data"]["field"], "job_id", "{error}");
    worker.assert_no_session_dirs();
}

#[test]
fn discarded_changes_leave_nothing_on_disk() {
    let Some(Fixture {
        mut worker,
        project,
        parent: _parent,
        home: _home,
    }) = fixture(&[])
    else {
        return;
    };
    let before = snapshot(&project);
    let job = overlay(&mut worker, "echo x > a && echo y > src/b && rm README");
    assert_eq!(
        job["changes"]["files"].as_array().unwrap().len(),
        3,
        "{job}"
    );
    let job_id = job["job_id"].as_str().unwrap();
    let result = worker.call(table::DiscardChanges::NAME, json!({"job_id": job_id}));
    assert_eq!(result["discarded"], 3);
    assert_eq!(snapshot(&project), before);
    // The kept layer was the only thing under the worker's base besides its spares.
    worker.assert_no_session_dirs();
}

#[test]
fn an_overlay_job_over_the_disk_budget_is_killed_with_what_it_wrote() {
    let Some(Fixture {
        mut worker,
        project,
        parent: _parent,
        home: _home,
    }) = fixture(&["workspace.max_upper_bytes=1MiB"])
    else {
        return;
    };
    let job = overlay(
        &mut worker,
        "echo small > small.txt && head -c 20000000 /dev/zero > big.bin && sleep 20",
    );
    assert_eq!(job["status"], "killed", "{job}");
    assert_eq!(job["reason"], "disk_limit", "{job}");
    let paths: Vec<&str> = job["changes"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"small.txt") && paths.contains(&"big.bin"),
        "{job}"
    );
    assert!(!project.join("big.bin").exists());
    let alive = overlay(&mut worker, "echo alive");
    assert_eq!(alive["status"], "finished", "{alive}");
    worker.call(
        table::DiscardChanges::NAME,
        json!({"job_id": job["job_id"]}),
    );
}

#[test]
fn pending_change_sets_count_against_the_total_disk_budget() {
    let Some(Fixture {
        mut worker,
        parent: _parent,
        home: _home,
        ..
    }) = fixture(&["workspace.max_total_upper_bytes=1MiB"])
    else {
        return;
    };
    let first = overlay(&mut worker, "head -c 700000 /dev/urandom > first.bin");
    assert_eq!(first["status"], "finished", "{first}");
    let second = overlay(
        &mut worker,
        "head -c 500000 /dev/urandom > second.bin && sleep 20",
    );
    assert_eq!(second["reason"], "disk_limit", "{second}");
    // Once the first set is discarded there is room again.
    worker.call(
        table::DiscardChanges::NAME,
        json!({"job_id": first["job_id"]}),
    );
    worker.call(
        table::DiscardChanges::NAME,
        json!({"job_id": second["job_id"]}),
    );
    let third = overlay(&mut worker, "head -c 500000 /dev/urandom > third.bin");
    assert_eq!(third["status"], "finished", "{third}");
    worker.call(
        table::DiscardChanges::NAME,
        json!({"job_id": third["job_id"]}),
    );
}

#[test]
fn python_and_node_tests_run_in_overlay_without_touching_the_project() {
    let Some(Fixture {
        mut worker,
        project,
        parent: _parent,
        home: _home,
    }) = fixture(&[])
    else {
        return;
    };
    std::fs::write(project.join(".gitignore"), "__pycache__/\nnode_modules/\n").unwrap();
    std::fs::write(
        project.join("calc.py"),
        "def add(a, b):\n    return a + b\n",
    )
    .unwrap();
    std::fs::write(
        project.join("test_calc.py"),
        "import unittest\nimport calc\n\nclass T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(calc.add(1, 2), 3)\n",
    )
    .unwrap();
    std::fs::write(
        project.join("calc.test.js"),
        "const test = require('node:test');\nconst assert = require('node:assert');\ntest('adds', () => assert.strictEqual(1 + 2, 3));\n",
    )
    .unwrap();
    let before = snapshot(&project);
    let python = overlay(&mut worker, "python3 -m unittest -q 2>&1");
    assert_eq!(python["status"], "finished", "{python}");
    assert!(stdout(&python).contains("OK"), "{python}");
    assert_eq!(python["changes"]["files"], json!([]), "{python}");
    assert!(
        python["changes"]["ignored"]["count"].as_u64().unwrap() >= 1,
        "__pycache__ is written and ignored: {python}"
    );
    let node = overlay(&mut worker, "node --test calc.test.js 2>&1");
    assert_eq!(node["status"], "finished", "{node}");
    assert!(stdout(&node).contains("pass 1"), "{node}");
    assert_eq!(snapshot(&project), before, "the project on disk changed");
}

/// A worker SIGKILLed while a `write` job holds a placeholder cannot remove it; the next worker
/// on the same session base sweeps it from the dead worker's journal, so no empty
/// `.envrc` (or `opencode.json`) directory stays in the user's project.
#[test]
fn a_killed_workers_placeholders_are_swept_by_the_next_worker() {
    let base = tempfile::tempdir_in("/var/tmp").expect("session base");
    let base_setting = format!("session.base_dir={}", base.path().display());
    let Some(mut f) = fixture(&[base_setting.as_str()]) else {
        return;
    };
    let placeholder = f.project.join(".envrc");
    assert!(!placeholder.exists());
    let job = f.worker.dispatch(json!({
        "command": "sleep 60",
        "workspace": {"mode": "write"},
    }));
    assert_eq!(job["status"], "running", "{job}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !placeholder.is_dir() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(placeholder.is_dir(), "the running job holds a placeholder");
    f.worker.child.kill().expect("SIGKILL the worker");
    f.worker.child.wait().expect("reaped");
    assert!(placeholder.is_dir(), "a SIGKILLed worker cannot clean up");

    // The dead worker's lock goes with its last process; a new worker sweeps once it is free.
    let root = format!("workspace.root={}", f.project.display());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while placeholder.exists() && std::time::Instant::now() < deadline {
        let mut next = Worker::start_walls(&[root.as_str(), base_setting.as_str()], &[]);
        next.call(table::Initialize::NAME, json!({}));
        drop(next);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        !placeholder.exists(),
        "the next worker removes the dead worker's placeholder"
    );
    assert_eq!(git(&f.project, &["status", "--porcelain"]), "");
}

/// `workspace.overlay = "copy"` forces the fallback a host without unprivileged overlayfs
/// gets: the job works on a copy in its session (ignored paths left out), the result says
/// `degraded` and why, and the change set, apply (with a conflict) and discard behave as
/// with an overlay.
#[test]
fn copy_fallback_reports_applies_and_discards_like_an_overlay() {
    let Some(Fixture {
        mut worker,
        project,
        parent: _parent,
        home: _home,
    }) = fixture(&["workspace.overlay=copy"])
    else {
        return;
    };
    std::fs::write(project.join(".gitignore"), "target/\n").unwrap();
    std::fs::create_dir_all(project.join("target/debug")).unwrap();
    std::fs::write(project.join("target/debug/old"), "build output\n").unwrap();
    std::fs::write(project.join("old.txt"), "old\n").unwrap();
    std::fs::write(project.join("script.sh"), "echo hi\n").unwrap();
    std::fs::write(project.join("link-me.txt"), "plain\n").unwrap();
    std::fs::create_dir_all(project.join("gone/deep")).unwrap();
    std::fs::write(project.join("gone/deep/a.txt"), "a\n").unwrap();
    let before = snapshot(&project);
    let job = overlay(
        &mut worker,
        "pwd && test ! -e target && sed -i s/hello/bye/ README && echo new > added.txt \
         && rm old.txt && chmod +x script.sh && mv src/lib.txt src/moved.txt && rm link-me.txt \
         && ln -s README link-me.txt && rm -r gone && mkdir -p target/debug \
         && echo bin > target/debug/x && git status --short | wc -l",
    );
    assert_eq!(job["status"], "finished", "{job}");
    let out = stdout(&job);
    let seen = out.lines().next().unwrap();
    assert_ne!(
        seen,
        project.display().to_string(),
        "a copy, not the project"
    );
    assert!(
        seen.ends_with("/work/project"),
        "the copy is in the session: {out}"
    );
    assert_eq!(snapshot(&project), before, "the project on disk changed");
    let changes = &job["changes"];
    let degraded = changes["degraded"].as_str().unwrap_or_default();
    assert!(
        degraded.contains("copy fallback") && degraded.contains("workspace.overlay"),
        "{changes}"
    );
    let layers = job["isolation"].as_array().unwrap();
    assert!(
        layers.iter().any(|l| l["name"] == "workspace"
            && l["mechanism"].as_str().unwrap().starts_with("degraded")),
        "{layers:?}"
    );
    assert_eq!(
        paths_and_kinds(changes),
        pairs(&[
            ("README", "modified"),
            ("added.txt", "added"),
            ("gone/deep/a.txt", "deleted"),
            ("link-me.txt", "type_changed"),
            ("old.txt", "deleted"),
            ("script.sh", "modified"),
            ("src/lib.txt", "deleted"),
            ("src/moved.txt", "added"),
        ]),
        "{changes}"
    );
    let diff = changes["diff"]["text"].as_str().unwrap();
    assert!(diff.contains("-hello\n+bye\n"), "{diff}");
    assert!(
        changes["ignored"]["count"].as_u64().unwrap() >= 1,
        "target/debug/x is only counted: {changes}"
    );

    // The user edits a file the job also changed: that one is a conflict.
    std::fs::write(project.join("README"), "user\n").unwrap();
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    let result = worker.call(table::ApplyChanges::NAME, json!({"job_id": job_id}));
    assert_eq!(
        outcomes(&result),
        pairs(&[
            ("README", "conflict"),
            ("added.txt", "applied"),
            ("gone/deep/a.txt", "applied"),
            ("link-me.txt", "applied"),
            ("old.txt", "applied"),
            ("script.sh", "applied"),
            ("src/lib.txt", "applied"),
            ("src/moved.txt", "applied"),
        ]),
        "{result}"
    );
    assert_eq!(
        std::fs::read_to_string(project.join("README")).unwrap(),
        "user\n"
    );
    assert!(!project.join("gone").exists(), "the removed dir is gone");
    assert!(!project.join("old.txt").exists());
    assert_eq!(
        std::fs::read_link(project.join("link-me.txt")).unwrap(),
        Path::new("README")
    );
    assert!(
        !project.join("target/debug/x").exists(),
        "ignored: never applied"
    );
    assert!(project.join("target/debug/old").exists());
    worker.call(table::DiscardChanges::NAME, json!({"job_id": job_id}));

    // Discard: a second job's copy goes, the project stays as it is.
    let before = snapshot(&project);
    let job = overlay(&mut worker, "echo x > a && rm README");
    assert_eq!(
        paths_and_kinds(&job["changes"]),
        pairs(&[("README", "deleted"), ("a", "added")]),
        "{job}"
    );
    let result = worker.call(
        table::DiscardChanges::NAME,
        json!({"job_id": job["job_id"]}),
    );
    assert_eq!(result["discarded"], 2, "{result}");
    assert_eq!(snapshot(&project), before);
    worker.assert_no_session_dirs();
}

#[test]
fn copy_fallback_refuses_a_project_over_its_caps_naming_the_field() {
    for (cap, field) in [
        ("workspace.copy_max_files=3", "workspace.copy_max_files"),
        ("workspace.copy_max_bytes=4KiB", "workspace.copy_max_bytes"),
    ] {
        let Some(Fixture {
            mut worker,
            project,
            parent: _parent,
            home: _home,
        }) = fixture(&["workspace.overlay=copy", cap])
        else {
            return;
        };
        std::fs::write(project.join("big.txt"), "x".repeat(8192)).unwrap();
        let job = overlay(&mut worker, "echo ran");
        assert_eq!(job["status"], "failed", "{job}");
        assert_eq!(job["reason"], "prepare_error", "{job}");
        let message = job["message"].as_str().unwrap();
        assert!(
            message.contains("workspace.path") && message.contains(field),
            "{message}"
        );
        assert_eq!(stdout(&job), "", "the job never ran");
        worker.assert_no_session_dirs();
    }
}

#[test]
fn strict_jobs_refuse_the_copy_fallback() {
    let Some(Fixture {
        mut worker,
        parent: _parent,
        home: _home,
        ..
    }) = fixture(&["workspace.overlay=copy"])
    else {
        return;
    };
    let plain =
        worker.dispatch(json!({"command": "true", "isolation": "strict", "wait_ms": 30000}));
    if plain["status"] != "finished" {
        eprintln!("SKIPPED: strict refuses every job on this host: {plain}");
        return;
    }
    let job = worker.dispatch(json!({
        "command": "echo ran",
        "isolation": "strict",
        "workspace": {"mode": "overlay"},
        "wait_ms": 30000,
    }));
    assert_eq!(job["status"], "failed", "{job}");
    let message = job["message"].as_str().unwrap();
    assert!(
        message.contains("strict") && message.contains("`workspace`") && message.contains("copy"),
        "{message}"
    );
    assert_eq!(stdout(&job), "");
    worker.assert_no_session_dirs();
}

/// A diff over the result's 256 KiB is cut there (`truncated`) and `worker_get_changes` pages
/// through all of it, pages ending on whole UTF-8 characters.
#[test]
fn a_big_diff_is_paged_with_worker_get_changes() {
    let Some(Fixture {
        mut worker,
        parent: _parent,
        home: _home,
        ..
    }) = fixture(&[])
    else {
        return;
    };
    let job = overlay(
        &mut worker,
        "for i in $(seq 1 6000); do echo \"ligne $i: café crème brûlée, encore une fois\"; done > big.txt",
    );
    assert_eq!(job["status"], "finished", "{job}");
    let first = &job["changes"]["diff"];
    assert_eq!(first["truncated"], true, "{first}");
    assert_eq!(first["offset"], 0);
    let total = first["total_bytes"].as_u64().unwrap();
    assert!(total > 256 << 10, "{total}");
    let first_text = first["text"].as_str().unwrap();
    assert!(first_text.len() <= 256 << 10);

    let job_id = job["job_id"].as_str().unwrap();
    let mut whole = String::new();
    let mut offset = 0u64;
    let mut pages = 0;
    loop {
        let page = worker.call(
            table::GetChanges::NAME,
            json!({"job_id": job_id, "offset": offset, "max_bytes": 99_999}),
        );
        let diff = &page["diff"];
        assert_eq!(diff["offset"], offset, "{diff}");
        assert_eq!(diff["total_bytes"], total);
        let text = diff["text"].as_str().unwrap();
        assert!(text.len() <= 99_999);
        whole.push_str(text);
        offset += text.len() as u64;
        pages += 1;
        assert_eq!(page["files"][0]["path"], "big.txt", "{page}");
        if diff["truncated"] == false {
            break;
        }
        assert!(pages < 100, "paging does not advance");
    }
    assert_eq!(whole.len() as u64, total);
    assert!(whole.starts_with(first_text));
    let mut expected = String::from("--- /dev/null\n+++ b/big.txt\n@@ -0,0 +1,6000 @@\n");
    for i in 1..=6000 {
        expected.push_str(&format!("+ligne {i}: café crème brûlée, encore une fois\n"));
    }
    assert_eq!(whole, expected);

    let error = worker.call_err(
        table::GetChanges::NAME,
        json!({"job_id": job_id, "max_bytes": 2}),
    );
    assert_eq!(error["data"]["field"], "max_bytes", "{error}");
    worker.call(table::DiscardChanges::NAME, json!({"job_id": job_id}));
    let error = worker.call_err(table::GetChanges::NAME, json!({"job_id": job_id}));
    assert_eq!(error["data"]["field"], "job_id", "{error}");
}

fn tree_of(dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    found.sort();
    found
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// A workspace job reads the user's toolchain caches; what it writes there lands in the
/// worker's own cache layer, which the next job of the worker sees, and never in the user's
/// dirs. A dir in `workspace.shared_caches` is written in place instead.
#[test]
fn cache_writes_stay_in_the_workers_layer_and_reach_its_next_job() {
    let Some(Fixture {
        worker,
        project,
        parent: _parent,
        home,
    }) = fixture(&[])
    else {
        return;
    };
    let registry = home.path().join(".cargo/registry");
    std::fs::create_dir_all(registry.join("index")).unwrap();
    std::fs::write(registry.join("index/old.txt"), "old\n").unwrap();
    let npm = home.path().join(".npm");
    std::fs::create_dir_all(&npm).unwrap();
    let registry_before = tree_of(&registry);
    // cargo runs this test with CARGO_HOME set to the real one: the worker gets the fake's.
    drop(worker);
    let root = format!("workspace.root={}", project.display());
    let home_str = home.path().to_str().unwrap();
    let cargo_home = home.path().join(".cargo");
    let env = [
        ("HOME", home_str),
        ("CARGO_HOME", cargo_home.to_str().unwrap()),
    ];
    let mut worker = Worker::start_walls(&[root.as_str()], &env);
    worker.call(table::Initialize::NAME, json!({}));

    let job = overlay(
        &mut worker,
        "cat \"$CARGO_HOME/registry/index/old.txt\" && echo planted > \"$CARGO_HOME/registry/new.crate\" \
         && rm \"$CARGO_HOME/registry/index/old.txt\" \
         && mkdir -p \"$npm_config_cache/_cacache\" && echo n > \"$npm_config_cache/_cacache/x\" && echo ok",
    );
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(stdout(&job), "old\nok\n");
    assert_eq!(
        job["changes"]["files"],
        json!([]),
        "cache writes are not project changes"
    );
    assert_eq!(
        tree_of(&registry),
        registry_before,
        "the user's registry changed"
    );
    assert_eq!(
        std::fs::read_to_string(registry.join("index/old.txt")).unwrap(),
        "old\n"
    );
    assert!(tree_of(&npm).is_empty(), "the user's npm cache changed");

    // The next job of this worker, in another mode, sees the first one's writes.
    let next = run(
        &mut worker,
        "read",
        "cat \"$CARGO_HOME/registry/new.crate\" \"$npm_config_cache/_cacache/x\"",
    );
    assert_eq!(next["status"], "finished", "{next}");
    assert_eq!(stdout(&next), "planted\nn\n");
    drop(worker);

    // Shared: the operator lets jobs write the user's npm cache in place.
    let shared = format!("workspace.shared_caches=[\"{}\"]", npm.display());
    let mut worker = Worker::start_walls(&[root.as_str(), shared.as_str()], &env);
    worker.call(table::Initialize::NAME, json!({}));
    let job = run(
        &mut worker,
        "read",
        "echo y > \"$npm_config_cache/y\" && echo planted2 > \"$CARGO_HOME/registry/other.crate\"",
    );
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(std::fs::read_to_string(npm.join("y")).unwrap(), "y\n");
    assert!(!registry.join("other.crate").exists());
    let fresh = run(&mut worker, "read", "ls \"$CARGO_HOME/registry\"");
    assert_eq!(
        stdout(&fresh),
        "index\nother.crate\n",
        "a new worker starts from the user's caches (its own layer is new)"
    );
}

/// On a copy, what the user does to the project while the job runs is not the job's change:
/// an edit to a file the job never touched and a file created meanwhile stay out of the
/// change set (the job saw neither).
#[test]
fn copy_fallback_does_not_report_the_users_edits_during_the_job() {
    let Some(Fixture {
        mut worker,
        project,
        parent: _parent,
        home: _home,
    }) = fixture(&["workspace.overlay=copy"])
    else {
        return;
    };
    let job = worker.dispatch(json!({
        "command": "echo job > job.txt && while [ ! -e \"$WORK_DIR/go\" ]; do sleep 0.05; done",
        "workspace": {"mode": "overlay"},
    }));
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    let session = job["session_id"].as_str().unwrap().to_owned();
    let mut work = None;
    eventually("the job runs on its copy", || {
        work = worker
            .leftover_dirs()
            .into_iter()
            .find(|d| d.ends_with(&session))
            .map(|d| d.join("work"));
        work.as_ref()
            .is_some_and(|w| w.join("project/job.txt").exists())
    });
    let work = work.unwrap();
    std::fs::write(project.join("README"), "user edit\n").unwrap();
    std::fs::write(project.join("user-new.txt"), "new\n").unwrap();
    std::fs::write(work.join("go"), "").unwrap();
    let ended = worker.wait_ended(&job_id);
    assert_eq!(ended["status"], "finished", "{ended}");
    // worker_get_status leaves the change set out; worker_get_changes has it.
    let changes = worker.call(table::GetChanges::NAME, json!({"job_id": job_id}));
    assert_eq!(
        paths_and_kinds(&changes),
        pairs(&[("job.txt", "added")]),
        "{changes}"
    );
    worker.call(table::DiscardChanges::NAME, json!({"job_id": job_id}));
}
