//! PREPARE: writing the caller's files into the work dir. Paths were checked lexically at
//! dispatch; here every component is created or opened without following symlinks, so even
//! a work dir someone tampered with cannot redirect a write outside the session.

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, mkdirat};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone)]
pub struct InjectedFile {
    /// Relative, normalised, without `..`.
    pub path: PathBuf,
    pub content: Vec<u8>,
    pub executable: bool,
}

pub fn write_files(work: &Path, files: &[InjectedFile]) -> io::Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let root = nix::fcntl::open(
        work,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for file in files {
        write_one(&root, file)?;
    }
    Ok(())
}

fn write_one(root: &OwnedFd, file: &InjectedFile) -> io::Result<()> {
    let mut names: Vec<&std::ffi::OsStr> = file
        .path
        .components()
        .map(|component| match component {
            Component::Normal(name) => Ok(name),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "path is not a plain relative path",
            )),
        })
        .collect::<io::Result<_>>()?;
    let leaf = names
        .pop()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty path"))?;
    let mut dir: Option<OwnedFd> = None;
    for name in names {
        let parent = dir.as_ref().unwrap_or(root);
        match mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(error) => return Err(error.into()),
        }
        let next = openat(
            parent.as_fd(),
            name,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        dir = Some(next);
    }
    let parent = dir.as_ref().unwrap_or(root);
    let mode = if file.executable { 0o755 } else { 0o644 };
    let fd = openat(
        parent.as_fd(),
        leaf,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    )?;
    let mut handle = std::fs::File::from(fd);
    handle.write_all(&file.content)?;
    if file.executable {
        // The umask may have cleared execute bits at creation.
        use std::os::unix::fs::PermissionsExt;
        handle.set_permissions(std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &str) -> InjectedFile {
        InjectedFile {
            path: path.into(),
            content: content.as_bytes().to_vec(),
            executable: false,
        }
    }

    #[test]
    fn creates_parents_and_content() {
        let work = tempfile::tempdir().unwrap();
        write_files(work.path(), &[file("a/b/c.txt", "hi"), file("top", "x")]).unwrap();
        assert_eq!(
            std::fs::read_to_string(work.path().join("a/b/c.txt")).unwrap(),
            "hi"
        );
    }

    #[test]
    fn never_writes_through_a_symlink() {
        let work = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), work.path().join("link")).unwrap();
        assert!(write_files(work.path(), &[file("link/x", "escape")]).is_err());
        std::os::unix::fs::symlink(outside.path().join("f"), work.path().join("leaf")).unwrap();
        assert!(write_files(work.path(), &[file("leaf", "escape")]).is_err());
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
    }
}
