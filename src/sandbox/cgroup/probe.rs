//! Where this host lets the worker put job cgroups: found by creating a base in every
//! hierarchy the worker's own cgroup sits in, and removed with the worker.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::teardown::remove_base;
use super::{Layout, V2};

const BASE_PREFIX: &str = "opencode-worker.";

struct Mount {
    point: PathBuf,
    root: String,
    fstype: String,
    options: String,
}

fn mounts() -> Vec<Mount> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            Some(Mount {
                root: fields.get(3)?.to_string(),
                point: PathBuf::from(unescape(fields.get(4)?)),
                fstype: right.first()?.to_string(),
                options: right.get(2).unwrap_or(&"").to_string(),
            })
        })
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .collect()
}

fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\134", "\\")
}

/// `hierarchy -> path of this process` from /proc/self/cgroup ("" is v2).
fn own_paths() -> Vec<(String, String)> {
    let Ok(text) = fs::read_to_string("/proc/self/cgroup") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

fn own_dir(mount: &Mount, path: &str) -> PathBuf {
    // Inside a cgroup namespace the mount root is the namespace root.
    let relative = if mount.root != "/" {
        path.strip_prefix(mount.root.as_str()).unwrap_or(path)
    } else {
        path
    };
    mount.point.join(relative.trim_start_matches('/'))
}

/// Several `Host`s may live in one process (tests): each gets its own base.
static BASES: AtomicU64 = AtomicU64::new(0);

fn make_base(own: &Path, instance: u64) -> io::Result<PathBuf> {
    remove_stale(own);
    let base = own.join(format!("{BASE_PREFIX}{}.{instance}", std::process::id()));
    match fs::create_dir(&base) {
        Ok(()) => Ok(base),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(base),
        Err(error) => Err(error),
    }
}

/// Bases left by workers that died without cleaning up.
fn remove_stale(own: &Path) {
    let Ok(entries) = fs::read_dir(own) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(BASE_PREFIX))
            .and_then(|rest| rest.split('.').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            remove_base(&entry.path());
        }
    }
}

pub fn probe() -> Layout {
    let mut layout = Layout::default();
    let instance = BASES.fetch_add(1, Ordering::Relaxed);
    let mounts = mounts();
    let own = own_paths();
    let find_own = |hierarchy: &str| own.iter().find(|(h, _)| h == hierarchy).map(|(_, p)| p);

    match mounts.iter().find(|m| m.fstype == "cgroup2") {
        None => layout
            .notes
            .push("no cgroup v2 hierarchy is mounted".into()),
        Some(mount) => match find_own("") {
            None => layout
                .notes
                .push("this process has no cgroup v2 path".into()),
            Some(path) => {
                let own_dir = delegated_parent(&own_dir(mount, path));
                match make_base(&own_dir, instance) {
                    Ok(base) => layout.v2 = Some(probe_v2(&own_dir, base, &mut layout.notes)),
                    Err(error) => layout.notes.push(format!(
                        "cgroup v2 {} is not writable by this user ({error})",
                        own_dir.display()
                    )),
                }
            }
        },
    }

    for (name, slot) in [
        ("memory", &mut layout.memory_v1),
        ("pids", &mut layout.pids_v1),
        ("cpu", &mut layout.cpu_v1),
    ] {
        let mount = mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.options.split(',').any(|option| option == name));
        let Some(mount) = mount else {
            continue;
        };
        let Some(path) = own
            .iter()
            .find(|(h, _)| h.split(',').any(|c| c == name))
            .map(|(_, p)| p)
        else {
            continue;
        };
        let own_dir = own_dir(mount, path);
        match make_base(&own_dir, instance) {
            Ok(base) => *slot = Some(base),
            Err(error) => layout.notes.push(format!(
                "cgroup v1 {name} at {} is not writable by this user ({error})",
                own_dir.display()
            )),
        }
    }
    layout
}

/// Name of the leaf the worker moves itself into inside a delegated cgroup.
const SELF_LEAF: &str = "opencode-worker.self";

/// In a delegated cgroup (`systemd-run --user --scope -p Delegate=yes ...`) the worker sits in
/// the cgroup whose controllers it needs to hand to its jobs, and the no-internal-process rule
/// forbids that. If the worker is alone there, it moves itself into a leaf and uses the
/// now-empty cgroup as the parent of job cgroups. Returns the directory to put bases under.
fn delegated_parent(own_dir: &Path) -> PathBuf {
    // Already moved (an earlier probe in this process).
    if own_dir.file_name().is_some_and(|n| n == SELF_LEAF)
        && let Some(parent) = own_dir.parent()
    {
        return parent.to_path_buf();
    }
    let read = |file: &str| fs::read_to_string(own_dir.join(file)).unwrap_or_default();
    let offered = read("cgroup.controllers");
    let enabled = read("cgroup.subtree_control");
    let wants_more = ["memory", "pids", "cpu"].iter().any(|c| {
        offered.split_whitespace().any(|o| o == *c) && !enabled.split_whitespace().any(|e| e == *c)
    });
    let me = std::process::id().to_string();
    let alone = read("cgroup.procs").lines().all(|pid| pid.trim() == me);
    // Only the true root cgroup lacks cgroup.type, and it is exempt from the rule.
    let is_root = !own_dir.join("cgroup.type").exists();
    if !wants_more || !alone || is_root {
        return own_dir.to_path_buf();
    }
    let leaf = own_dir.join(SELF_LEAF);
    let moved = (fs::create_dir(&leaf).is_ok() || leaf.is_dir())
        && fs::write(leaf.join("cgroup.procs"), &me).is_ok();
    if moved {
        tracing::info!(cgroup = %leaf.display(), "moved the worker into a leaf of its delegated cgroup");
    }
    own_dir.to_path_buf()
}

fn probe_v2(own_dir: &Path, base: PathBuf, notes: &mut Vec<String>) -> V2 {
    let available = fs::read_to_string(own_dir.join("cgroup.controllers")).unwrap_or_default();
    let wanted: Vec<&str> = ["memory", "pids", "cpu"]
        .into_iter()
        .filter(|c| available.split_whitespace().any(|a| a == *c))
        .collect();
    let missing: Vec<&str> = ["memory", "pids", "cpu"]
        .into_iter()
        .filter(|c| !wanted.contains(c))
        .collect();
    if !missing.is_empty() {
        notes.push(format!(
            "cgroup v2 at {} offers no {} controller",
            own_dir.display(),
            missing.join("/")
        ));
    }
    for controller in &wanted {
        let line = format!("+{controller}");
        // The worker's own cgroup may hold processes, which forbids enabling controllers for
        // its children (the no-internal-process rule); the root cgroup is exempt.
        let _ = fs::write(own_dir.join("cgroup.subtree_control"), &line);
        if let Err(error) = fs::write(base.join("cgroup.subtree_control"), &line) {
            notes.push(format!(
                "cgroup v2 {controller} is offered but cannot be delegated to job cgroups ({error}); \
                 run the worker in a cgroup of its own (see doctor)"
            ));
        }
    }
    let enabled = fs::read_to_string(base.join("cgroup.subtree_control")).unwrap_or_default();
    let has = |c: &str| enabled.split_whitespace().any(|e| e == c);
    V2 {
        memory: has("memory"),
        pids: has("pids"),
        cpu: has("cpu"),
        kill: base.join("cgroup.kill").exists(),
        base,
    }
}
