//! The mounts that keep protected paths of a `write` workspace out of the job's reach.
//!
//! Landlock grants a right on a whole subtree, so a read-only hole inside the writable
//! workspace is made in the job's mount namespace instead: each protected path that exists is
//! bind-mounted read-only over itself, and each directory on the way to it is bind-mounted over
//! itself so it cannot be renamed away (a mount point cannot be renamed or removed). Landlock
//! and seccomp then keep the job from unmounting any of it.
//!
//! A path that does not exist cannot carry a mount, and neither Landlock (it cannot deny one
//! name inside a granted directory) nor permissions (the job owns the project) can stop its
//! creation. So the first missing component of a protected path gets an empty placeholder
//! directory on the host for the job's lifetime, mounted read-only: nothing can be created
//! there or under it. Empty directories are invisible to git, and every tool that looks for
//! these names treats an empty directory as "nothing configured" or fails to read it as a
//! file; the placeholder is removed when the last job using it ends. The live placeholders
//! are also written to a journal in the worker's base dir, so a worker killed mid-job leaves
//! none behind for long: the next worker that sweeps its base dir removes them
//! (`sweep_journal`).

use super::WorkspacePlan;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Placeholders this process made, with the number of live jobs relying on each: a
/// placeholder removed on the host under a running job would take that job's mount with it.
static PLACEHOLDERS: Mutex<Option<Live>> = Mutex::new(None);

type Live = HashMap<PathBuf, usize>;

/// Where the live placeholders are listed (set once by the worker at start).
static JOURNAL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// The journal's file name inside a worker's base dir.
pub const JOURNAL_FILE: &str = "workspace-placeholders";

/// Makes this process list its live placeholders in `base_dir/JOURNAL_FILE`.
pub fn journal_in(base_dir: &Path) {
    let _ = JOURNAL.set(base_dir.join(JOURNAL_FILE));
}

/// Rewrites the journal from the live set, under the placeholder lock: NUL-separated paths,
/// the one byte a path cannot hold.
fn write_journal(live: &Live) {
    use std::os::unix::ffi::OsStrExt;
    let Some(journal) = JOURNAL.get() else {
        return;
    };
    // No live placeholder, no journal: the base dir holds only sessions between jobs.
    if live.is_empty() {
        if let Err(error) = std::fs::remove_file(journal)
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(%error, "workspace placeholder journal not removed");
        }
        return;
    }
    let mut bytes = Vec::new();
    for path in live.keys() {
        bytes.extend_from_slice(path.as_os_str().as_bytes());
        bytes.push(0);
    }
    // Written beside and renamed over: `fs::write` truncates first, and a worker killed
    // between the truncate and the write would leave an empty journal, so its placeholders
    // would never be swept.
    let staged = journal.with_extension("next");
    if let Err(error) =
        std::fs::write(&staged, bytes).and_then(|()| std::fs::rename(&staged, journal))
    {
        tracing::warn!(%error, "workspace placeholder journal not written");
    }
}

/// Removes the placeholders a dead worker listed in its base dir. Only empty directories go,
/// so nothing a user put there since is touched.
pub fn sweep_journal(base_dir: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(bytes) = std::fs::read(base_dir.join(JOURNAL_FILE)) else {
        return;
    };
    for raw in bytes.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let path = Path::new(std::ffi::OsStr::from_bytes(raw));
        match std::fs::remove_dir(path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed a workspace placeholder a dead worker left")
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "a dead worker's workspace placeholder stays")
            }
        }
    }
}

/// One job's protection: the mounts for the sandbox and the placeholders to give back.
#[derive(Debug, Default)]
pub struct Protection {
    /// Directories bind-mounted over themselves, read-write, outermost first.
    pub pins: Vec<PathBuf>,
    /// Paths bind-mounted over themselves read-only, outermost first.
    pub read_only: Vec<PathBuf>,
    placeholders: Vec<PathBuf>,
    /// Whether this job created a placeholder (the journal then changes).
    made_any: bool,
}

impl Protection {
    /// Finds (and for missing paths, makes) the mount points of `plan.protected`.
    pub fn prepare(plan: &WorkspacePlan) -> io::Result<Protection> {
        let mut protection = Protection::default();
        // One lock over the whole walk: a placeholder seen here cannot be removed by another
        // job's release before this job has taken its share.
        let result = {
            let mut guard = PLACEHOLDERS.lock().unwrap_or_else(|p| p.into_inner());
            let live = guard.get_or_insert_with(HashMap::new);
            let added = plan
                .protected
                .iter()
                .try_for_each(|path| protection.add(live, &plan.path, path));
            if protection.made_any {
                write_journal(live);
            }
            added
        };
        if let Err(error) = result {
            protection.release();
            return Err(error);
        }
        protection.pins.sort_by_key(|p| p.components().count());
        protection.pins.dedup();
        protection.read_only.sort_by_key(|p| p.components().count());
        protection.read_only.dedup();
        let read_only = protection.read_only.clone();
        protection.pins.retain(|p| !read_only.contains(p));
        Ok(protection)
    }

    fn add(&mut self, live: &mut Live, workspace: &Path, path: &Path) -> io::Result<()> {
        let Ok(rel) = path.strip_prefix(workspace) else {
            return Ok(());
        };
        let mut current = workspace.to_path_buf();
        let last = rel.components().count();
        for (index, component) in rel.components().enumerate() {
            current.push(component);
            match std::fs::symlink_metadata(&current) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    // The mount lands on the link's target; a target outside the workspace is
                    // read-only for the job anyway.
                    if let Ok(target) = std::fs::canonicalize(&current)
                        && target.starts_with(workspace)
                        && target != workspace
                    {
                        self.read_only.push(target);
                    }
                    return Ok(());
                }
                Ok(meta) if meta.is_dir() && index + 1 < last => {
                    self.pins.push(current.clone());
                }
                Ok(_) => {
                    self.share(live, &current);
                    self.read_only.push(current);
                    return Ok(());
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    self.placeholder(live, &current)?;
                    self.read_only.push(current);
                    return Ok(());
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    fn placeholder(&mut self, live: &mut Live, path: &Path) -> io::Result<()> {
        // Journal first, then mkdir: a worker killed between the two must leave a journal
        // naming the dir, or no later worker would ever sweep it. A name journalled but never
        // made is harmless (the sweep ignores missing paths), and the journal is rewritten
        // from the live set once the walk is done.
        let fresh = !live.contains_key(path);
        if fresh {
            live.insert(path.to_path_buf(), 0);
            write_journal(live);
            self.made_any = true;
        }
        match std::fs::create_dir(path) {
            Ok(()) => {
                live.insert(path.to_path_buf(), 1);
                self.placeholders.push(path.to_path_buf());
                Ok(())
            }
            Err(error) => {
                if fresh {
                    live.remove(path);
                }
                if error.kind() == io::ErrorKind::AlreadyExists {
                    self.share(live, path);
                    return Ok(());
                }
                Err(error)
            }
        }
    }

    /// An existing path that is another live job's placeholder: this job holds it too.
    fn share(&mut self, live: &mut Live, path: &Path) {
        if let Some(count) = live.get_mut(path) {
            *count += 1;
            self.placeholders.push(path.to_path_buf());
        }
    }

    /// How many placeholders this job made or shares.
    pub fn placeholder_count(&self) -> usize {
        self.placeholders.len()
    }

    /// Removes the placeholders no other live job uses. Call after the job's processes are
    /// gone. Idempotent.
    pub fn release(&mut self) {
        let mut guard = PLACEHOLDERS.lock().unwrap_or_else(|p| p.into_inner());
        let live = guard.get_or_insert_with(HashMap::new);
        let mut removed_any = false;
        for path in self.placeholders.drain(..).rev() {
            let last = match live.get_mut(&path) {
                Some(count) if *count > 1 => {
                    *count -= 1;
                    false
                }
                _ => true,
            };
            if last {
                live.remove(&path);
                removed_any = true;
                // Only an empty directory goes: the job could not write into it.
                if let Err(error) = std::fs::remove_dir(&path) {
                    tracing::warn!(%error, path = %path.display(), "workspace placeholder left in place");
                }
            }
        }
        if removed_any {
            write_journal(live);
        }
    }
}

impl Drop for Protection {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::WorkspaceMode;

    fn plan(dir: &Path, protected: &[&str]) -> WorkspacePlan {
        WorkspacePlan {
            path: dir.to_path_buf(),
            mode: WorkspaceMode::Write,
            cwd: dir.to_path_buf(),
            protected: protected.iter().map(|p| dir.join(p)).collect(),
        }
    }

    #[test]
    fn existing_paths_are_bound_and_missing_ones_get_a_placeholder() {
        let tmp = tempfile::tempdir().unwrap();
        let w = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::create_dir_all(w.join(".git")).unwrap();
        std::fs::write(w.join(".git/config"), "").unwrap();
        let mut p =
            Protection::prepare(&plan(&w, &[".git/hooks", ".git/config", ".envrc"])).unwrap();
        assert_eq!(p.pins, vec![w.join(".git")]);
        let mut ro = p.read_only.clone();
        ro.sort();
        assert_eq!(
            ro,
            vec![
                w.join(".envrc"),
                w.join(".git/config"),
                w.join(".git/hooks")
            ]
        );
        assert!(w.join(".git/hooks").is_dir() && w.join(".envrc").is_dir());
        // A second job shares the placeholders; they go when the last one ends.
        let mut q = Protection::prepare(&plan(&w, &[".envrc"])).unwrap();
        assert_eq!(q.placeholder_count(), 1);
        p.release();
        assert!(w.join(".envrc").is_dir() && !w.join(".git/hooks").exists());
        q.release();
        assert!(!w.join(".envrc").exists());
        assert!(w.join(".git/config").is_file());
    }

    #[test]
    fn a_dead_workers_placeholders_are_swept_from_its_journal() {
        let tmp = tempfile::tempdir().unwrap();
        let w = std::fs::canonicalize(tmp.path()).unwrap();
        let base = tempfile::tempdir().unwrap();
        std::fs::create_dir(w.join("kept")).unwrap();
        std::fs::write(w.join("kept/file"), "x").unwrap();
        std::fs::create_dir(w.join(".envrc")).unwrap();
        let mut journal = Vec::new();
        for name in [".envrc", "kept", "never-made"] {
            journal.extend_from_slice(w.join(name).to_str().unwrap().as_bytes());
            journal.push(0);
        }
        std::fs::write(base.path().join(JOURNAL_FILE), journal).unwrap();
        sweep_journal(base.path());
        assert!(!w.join(".envrc").exists(), "the empty placeholder goes");
        assert!(
            w.join("kept/file").is_file(),
            "a directory with content stays"
        );
    }

    #[test]
    fn a_missing_parent_is_the_placeholder() {
        let tmp = tempfile::tempdir().unwrap();
        let w = std::fs::canonicalize(tmp.path()).unwrap();
        let p = Protection::prepare(&plan(&w, &[".git/hooks"])).unwrap();
        assert_eq!(p.read_only, vec![w.join(".git")]);
        assert!(p.pins.is_empty());
        drop(p);
        assert!(!w.join(".git").exists());
    }
}
