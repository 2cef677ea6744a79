//! The copy fallback of `overlay`: where the host cannot mount an overlayfs in the job's
//! namespaces, the project is copied into the session and the job works on the copy. The
//! change set then compares the copy with the project (see `changes::compute_copy`).
//!
//! Files are cloned (FICLONE: shared blocks on btrfs/XFS) or copied with `std::fs::copy`
//! (copy_file_range in the kernel). Paths the project's ignore rules exclude (`target/`,
//! `node_modules/`) are not copied: they are what makes a copy big, and a build recreates
//! them. `.git/` is copied so git works in the copy. Modification times are kept so the
//! change set can skip files the job did not touch without reading them.

use super::ignores::Ignores;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// The caps of one copy, from `workspace.copy_max_files` and `workspace.copy_max_bytes`.
#[derive(Debug, Clone, Copy)]
pub struct CopyCaps {
    pub max_files: u64,
    pub max_bytes: u64,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct CopyStats {
    /// Entries copied (files, symlinks and directories).
    pub entries: u64,
    pub bytes: u64,
    /// Files cloned rather than copied.
    pub cloned: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The project is bigger than a cap; `field` names the setting.
    #[error(
        "the project has more than {limit} {what} outside its ignored paths, over the copy \
         fallback's cap `{field}`; raise it in the worker's config or use a smaller `workspace.path`"
    )]
    TooBig {
        field: &'static str,
        what: &'static str,
        limit: u64,
    },
    #[error("copying {path}: {source}")]
    Io { path: String, source: io::Error },
}

/// True when the copy (and so the change set of a copy) holds `rel`: every path inside
/// `.git/`, and every other path the project's ignore rules do not exclude.
pub fn copied(ignores: &mut Ignores, rel: &Path, is_dir: bool) -> bool {
    rel.starts_with(".git") || !ignores.ignored(rel, is_dir)
}

/// Copies `project` to `dest` (which must not exist). Blocking.
pub fn copy_tree(project: &Path, dest: &Path, caps: CopyCaps) -> Result<CopyStats, CopyError> {
    let mut copy = Copy {
        project,
        dest,
        caps,
        ignores: Ignores::new(project),
        stats: CopyStats::default(),
        clone: true,
    };
    let result = copy.dir(Path::new(""));
    if result.is_err() {
        let _ = crate::session::remove_tree(dest);
    }
    result.map(|()| copy.stats)
}

struct Copy<'a> {
    project: &'a Path,
    dest: &'a Path,
    caps: CopyCaps,
    ignores: Ignores,
    stats: CopyStats,
    /// Cleared at the first file the filesystem would not clone.
    clone: bool,
}

impl Copy<'_> {
    fn dir(&mut self, rel: &Path) -> Result<(), CopyError> {
        let from = self.project.join(rel);
        let to = self.dest.join(rel);
        let io = |source| CopyError::Io {
            path: from.display().to_string(),
            source,
        };
        let meta = std::fs::symlink_metadata(&from).map_err(io)?;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&to)
            .map_err(io)?;
        let mut names: Vec<_> = std::fs::read_dir(&from)
            .map_err(io)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        names.sort();
        for name in names {
            let rel = rel.join(name);
            let from = self.project.join(&rel);
            let io = |source| CopyError::Io {
                path: from.display().to_string(),
                source,
            };
            let meta = std::fs::symlink_metadata(&from).map_err(io)?;
            if !copied(&mut self.ignores, &rel, meta.is_dir()) {
                continue;
            }
            let kind = meta.file_type();
            if !(kind.is_dir() || kind.is_file() || kind.is_symlink()) {
                // Sockets, FIFOs and devices are not project content.
                continue;
            }
            self.count(if kind.is_file() { meta.len() } else { 0 })?;
            if kind.is_dir() {
                self.dir(&rel)?;
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&from).map_err(io)?;
                std::os::unix::fs::symlink(target, self.dest.join(&rel)).map_err(io)?;
            } else {
                self.file(&from, &self.dest.join(&rel), &meta).map_err(io)?;
            }
        }
        // Last, so a read-only directory of the project was still writable while filled.
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(io)?;
        Ok(())
    }

    fn count(&mut self, bytes: u64) -> Result<(), CopyError> {
        self.stats.entries += 1;
        self.stats.bytes += bytes;
        if self.stats.entries > self.caps.max_files {
            return Err(CopyError::TooBig {
                field: "workspace.copy_max_files",
                what: "files",
                limit: self.caps.max_files,
            });
        }
        if self.stats.bytes > self.caps.max_bytes {
            return Err(CopyError::TooBig {
                field: "workspace.copy_max_bytes",
                what: "bytes",
                limit: self.caps.max_bytes,
            });
        }
        Ok(())
    }

    fn file(&mut self, from: &Path, to: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut source = File::open(from)?;
        let mut target = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(to)?;
        let mut cloned = false;
        if self.clone {
            // SAFETY: two open descriptors; FICLONE only reads the source's number.
            cloned =
                unsafe { libc::ioctl(target.as_raw_fd(), libc::FICLONE as _, source.as_raw_fd()) }
                    == 0;
            // A filesystem that cannot clone one file cannot clone the next either.
            self.clone = cloned;
        }
        if cloned {
            self.stats.cloned += 1;
        } else {
            // File to file: copy_file_range in the kernel.
            io::copy(&mut source, &mut target)?;
        }
        target.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        target.set_modified(meta.modified()?)?;
        Ok(())
    }
}

trait Mode {
    fn mode(&self) -> u32;
}

impl Mode for std::fs::Metadata {
    fn mode(&self) -> u32 {
        std::os::unix::fs::MetadataExt::mode(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_content_links_and_modes_but_not_ignored_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let project = tmp.path().join("p");
        std::fs::create_dir_all(project.join("src")).unwrap();
        std::fs::create_dir_all(project.join("target/debug")).unwrap();
        std::fs::create_dir_all(project.join(".git/objects")).unwrap();
        std::fs::write(project.join(".gitignore"), "target/\n").unwrap();
        std::fs::write(project.join("src/a.sh"), "echo\n").unwrap();
        std::fs::set_permissions(
            project.join("src/a.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(project.join("target/debug/big"), "x").unwrap();
        std::fs::write(project.join(".git/HEAD"), "ref\n").unwrap();
        std::os::unix::fs::symlink("src/a.sh", project.join("link")).unwrap();
        let dest = tmp.path().join("copy");
        let caps = CopyCaps {
            max_files: 100,
            max_bytes: 1 << 20,
        };
        let stats = copy_tree(&project, &dest, caps).unwrap();
        assert_eq!(std::fs::read(dest.join("src/a.sh")).unwrap(), b"echo\n");
        let mode = std::fs::metadata(dest.join("src/a.sh")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o755);
        assert_eq!(
            std::fs::read_link(dest.join("link")).unwrap(),
            Path::new("src/a.sh")
        );
        assert!(dest.join(".git/HEAD").is_file());
        assert!(!dest.join("target").exists());
        assert_eq!(
            std::fs::metadata(dest.join("src/a.sh"))
                .unwrap()
                .modified()
                .unwrap(),
            std::fs::metadata(project.join("src/a.sh"))
                .unwrap()
                .modified()
                .unwrap()
        );
        // .gitignore, src, src/a.sh, .git, .git/objects, .git/HEAD, link
        assert_eq!(stats.entries, 7, "{stats:?}");

        let small = CopyCaps {
            max_files: 3,
            max_bytes: 1 << 20,
        };
        let dest = tmp.path().join("copy2");
        match copy_tree(&project, &dest, small) {
            Err(CopyError::TooBig { field, .. }) => assert_eq!(field, "workspace.copy_max_files"),
            other => panic!("{other:?}"),
        }
        assert!(!dest.exists(), "a refused copy leaves nothing");
    }
}
