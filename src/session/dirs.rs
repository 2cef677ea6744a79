use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// `<base>/<session_id>/{work,output,tmp,home}`, all 0700.
#[derive(Debug, Clone)]
pub struct SessionDirs {
    pub root: PathBuf,
    pub work: PathBuf,
    pub output: PathBuf,
    pub tmp: PathBuf,
    pub home: PathBuf,
}

impl SessionDirs {
    pub fn plan(base: &Path, session_id: &str) -> Self {
        let root = base.join(session_id);
        SessionDirs {
            work: root.join("work"),
            output: root.join("output"),
            tmp: root.join("tmp"),
            home: root.join("home"),
            root,
        }
    }

    /// Fails if the root already exists, so two sessions can never share a directory.
    pub fn create(&self) -> io::Result<()> {
        let mut builder = std::fs::DirBuilder::new();
        builder.mode(0o700);
        builder.create(&self.root)?;
        for dir in [&self.work, &self.output, &self.tmp, &self.home] {
            builder.create(dir)?;
        }
        Ok(())
    }
}

/// Removes a directory tree the job may have made hard to remove (dirs without write or
/// search permission); absent is success.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_owner_writable(path);
            match std::fs::remove_dir_all(path) {
                Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        }
    }
}

fn make_owner_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o700));
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            make_owner_writable(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn removes_a_tree_the_job_locked_down() {
        let base = tempfile::tempdir().unwrap();
        let dirs = SessionDirs::plan(base.path(), "s1");
        dirs.create().unwrap();
        let locked = dirs.work.join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::write(locked.join("f"), b"x").unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        remove_tree(&dirs.root).unwrap();
        assert!(!dirs.root.exists());
    }

    #[test]
    fn refuses_to_reuse_a_session_dir() {
        let base = tempfile::tempdir().unwrap();
        let dirs = SessionDirs::plan(base.path(), "s1");
        dirs.create().unwrap();
        assert!(dirs.create().is_err());
    }
}
