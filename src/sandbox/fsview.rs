//! The read-only view of the filesystem a job gets, as a Landlock allow-list.
//!
//! Landlock can only grant, never subtract, so "read everything except the credential stores"
//! is turned into "read every sibling along the way to each hidden path": for `~/.ssh` that is
//! every entry of `/` except `/root` (or `/home`), every entry of the home except `.ssh`, and so
//! on. The walk only descends into ancestors of hidden paths, so it touches a few dozen entries.
//! The opened `O_PATH` handles are cached and reused until one of the walked directories
//! changes (its mtime moves), so a job pays for the `landlock_add_rule` calls only.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub struct Entry {
    /// Rights granted beneath it; `None` is the read-only default.
    pub access: Option<u64>,
    /// Only read when checking or debugging a view: the rule is made from `fd`.
    #[allow(dead_code)]
    pub path: PathBuf,
    pub fd: OwnedFd,
    pub is_dir: bool,
}

impl Entry {
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

pub struct ReadView {
    excluded: Vec<PathBuf>,
    pub entries: Vec<Entry>,
    /// Directories listed to build the view, with the mtime seen (seconds, nanoseconds).
    walked: Vec<(PathBuf, i64, i64)>,
}

/// The name prefix of a hidden path whose last component ends in `*` (`~/.env*`): every entry
/// of that directory starting with it is hidden, including those created after start-up.
pub fn pattern_prefix(path: &Path) -> Option<&str> {
    path.file_name()?.to_str()?.strip_suffix('*')
}

/// True when `path` is `hidden` or matches it as a pattern.
pub fn matches(hidden: &Path, path: &Path) -> bool {
    match pattern_prefix(hidden) {
        Some(prefix) => {
            hidden.parent() == path.parent()
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
        }
        None => hidden == path,
    }
}

/// What a hidden path names right now: itself, or for a pattern every existing match (for the
/// mount fallback, which can only mask what exists).
pub fn expand(hidden: &Path) -> Vec<PathBuf> {
    if pattern_prefix(hidden).is_none() {
        return vec![hidden.to_path_buf()];
    }
    let Some(dir) = hidden.parent() else {
        return Vec::new();
    };
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| matches(hidden, p))
                .collect()
        })
        .unwrap_or_default()
}

/// Resolves symlinks of hidden paths that exist, so a link cannot smuggle a path past the walk;
/// paths that do not exist yet are kept literally (their parent is watched for their creation).
/// A pattern keeps its last component and has its directory resolved.
pub fn normalise(paths: impl IntoIterator<Item = PathBuf>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = paths
        .into_iter()
        .filter(|p| p.is_absolute())
        .map(|p| match (pattern_prefix(&p), p.parent(), p.file_name()) {
            (Some(_), Some(dir), Some(name)) => std::fs::canonicalize(dir)
                .map(|dir| dir.join(name))
                .unwrap_or(p.clone()),
            _ => std::fs::canonicalize(&p).unwrap_or(p),
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

impl ReadView {
    /// `grants` are extra fixed rules cached with the view (devices inside an excluded /dev).
    pub fn build(excluded: Vec<PathBuf>, grants: &[(&str, u64)]) -> io::Result<ReadView> {
        let mut view = ReadView {
            excluded,
            entries: Vec::new(),
            walked: Vec::new(),
        };
        let root = Path::new("/");
        if view.excluded.iter().any(|e| e == root) {
            return Ok(view);
        }
        if view.excluded.is_empty() {
            view.push(root, None)?;
        } else {
            view.walk(root)?;
        }
        for (path, access) in grants {
            view.push(Path::new(path), Some(*access))?;
        }
        Ok(view)
    }

    pub fn excluded(&self) -> &[PathBuf] {
        &self.excluded
    }

    /// True while no walked directory has gained or lost an entry since the view was built.
    pub fn is_fresh(&self) -> bool {
        self.walked.iter().all(|(dir, secs, nanos)| {
            std::fs::metadata(dir)
                .map(|m| m.mtime() == *secs && m.mtime_nsec() == *nanos)
                .unwrap_or(false)
        })
    }

    fn walk(&mut self, dir: &Path) -> io::Result<()> {
        let meta = std::fs::metadata(dir)?;
        self.walked
            .push((dir.to_path_buf(), meta.mtime(), meta.mtime_nsec()));
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            if self.excluded.iter().any(|hidden| matches(hidden, &path)) {
                continue;
            }
            let kind = entry.file_type()?;
            // A symlink grants nothing by itself: its target is reachable (or not) on its own.
            if kind.is_symlink() {
                continue;
            }
            let holds_hidden = self.excluded.iter().any(|e| e.starts_with(&path));
            if holds_hidden && kind.is_dir() {
                self.walk(&path)?;
            } else {
                self.push(&path, None)?;
            }
        }
        Ok(())
    }

    fn push(&mut self, path: &Path, access: Option<u64>) -> io::Result<()> {
        let file = match std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(file) => file,
            // Raced with a removal: nothing to grant.
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        let is_dir = file.metadata()?.is_dir();
        self.entries.push(Entry {
            access,
            path: path.to_path_buf(),
            fd: file.into(),
            is_dir,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_skips_hidden_and_keeps_siblings() {
        let base = tempfile::tempdir().unwrap();
        let b = std::fs::canonicalize(base.path()).unwrap();
        for dir in [
            "home/.ssh",
            "home/.config/gh",
            "home/.config/git",
            "home/src",
        ] {
            std::fs::create_dir_all(b.join(dir)).unwrap();
        }
        std::fs::write(b.join("home/.netrc"), "secret").unwrap();
        std::fs::write(b.join("home/.bashrc"), "").unwrap();
        let hidden = normalise([
            b.join("home/.ssh"),
            b.join("home/.config/gh"),
            b.join("home/.netrc"),
        ]);
        let view = ReadView::build(hidden, &[]).unwrap();
        let paths: Vec<&Path> = view.entries.iter().map(|e| e.path.as_path()).collect();
        assert!(paths.contains(&b.join("home/src").as_path()));
        assert!(paths.contains(&b.join("home/.bashrc").as_path()));
        assert!(paths.contains(&b.join("home/.config/git").as_path()));
        for secret in [
            "home/.ssh",
            "home/.config/gh",
            "home/.netrc",
            "home",
            "home/.config",
        ] {
            assert!(
                !paths.contains(&b.join(secret).as_path()),
                "{secret} granted"
            );
        }
        for pattern in ["home/.env", "home/.env.local"] {
            std::fs::write(b.join(pattern), "KEY=1").unwrap();
        }
        std::fs::write(b.join("home/.envrc-not"), "").unwrap();
        let view =
            ReadView::build(normalise([b.join("home/.env.*"), b.join("home/.env")]), &[]).unwrap();
        let paths: Vec<&Path> = view.entries.iter().map(|e| e.path.as_path()).collect();
        assert!(!paths.contains(&b.join("home/.env").as_path()));
        assert!(!paths.contains(&b.join("home/.env.local").as_path()));
        assert!(paths.contains(&b.join("home/.envrc-not").as_path()));
        assert_eq!(
            expand(&b.join("home/.env.*")),
            vec![b.join("home/.env.local")]
        );
        // Freshness right after the build is not asserted: the walk also covers the shared
        // /tmp, which other tests change at any moment.
        std::fs::create_dir(b.join("home/new")).unwrap();
        assert!(!view.is_fresh());
    }
}
