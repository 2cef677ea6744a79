//! The upper layer of an `overlay` job: `<base>/.changes/<session>/{upper,work}`, owned by the
//! worker, outside every session (other jobs cannot see it: the sessions root is hidden).

use crate::sandbox::OverlayDirs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub const CHANGES_DIR: &str = ".changes";

/// The job's writes: an overlay's upper layer, or (copy fallback) the whole copy, which the
/// job fills in its session and the worker moves here once the job is gone.
#[derive(Debug)]
pub struct Layer {
    pub root: PathBuf,
    pub upper: PathBuf,
    work: PathBuf,
    /// When a copy was complete (see `changes::compute_copy`); `None` for an overlay.
    pub copy_mark: Option<super::changes::CopyMark>,
}

/// `<base>/.changes/<name>`, which must not exist yet.
fn make_root(base: &Path, name: &str) -> io::Result<PathBuf> {
    let parent = base.join(CHANGES_DIR);
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o700).recursive(true).create(&parent)?;
    let root = parent.join(name);
    builder.recursive(false).create(&root)?;
    Ok(root)
}

impl Layer {
    pub fn create(base: &Path, name: &str) -> io::Result<Layer> {
        let root = make_root(base, name)?;
        let mut builder = std::fs::DirBuilder::new();
        builder.mode(0o700);
        let layer = Layer {
            upper: root.join("upper"),
            work: root.join("work"),
            root,
            copy_mark: None,
        };
        builder.create(&layer.upper)?;
        builder.create(&layer.work)?;
        Ok(layer)
    }

    /// The layer of a job on a copy, made once the copy is complete: `upper` does not exist
    /// until `adopt` moves the copy in.
    pub fn for_copy(base: &Path, name: &str) -> io::Result<Layer> {
        use std::os::unix::fs::MetadataExt;
        let root = make_root(base, name)?;
        let mark = root.join("copied");
        std::fs::write(&mark, b"")?;
        let meta = std::fs::metadata(&mark)?;
        Ok(Layer {
            upper: root.join("copy"),
            work: root.join("work"),
            root,
            copy_mark: Some((meta.ctime(), meta.ctime_nsec())),
        })
    }

    /// The whole diff of the change set (the job result carries its first page).
    pub fn diff_file(&self) -> PathBuf {
        self.root.join("diff")
    }

    /// Moves the job's copy (in its session, on the same filesystem) into the layer.
    pub fn adopt(&self, copy: &Path) -> io::Result<()> {
        if !std::fs::symlink_metadata(copy)?.is_dir() {
            return Err(io::Error::other(
                "the job replaced its copy with a non-directory",
            ));
        }
        std::fs::rename(copy, &self.upper)
    }

    pub fn dirs(&self) -> OverlayDirs {
        OverlayDirs {
            upper: self.upper.clone(),
            work: self.work.clone(),
        }
    }

    /// The work dir only serves the mount; once the job is gone it can go (overlayfs leaves
    /// a mode-0 dir in it that needs `remove_tree`).
    pub fn unmounted(&self) {
        let _ = crate::session::remove_tree(&self.work);
    }

    /// Removes the layer (and `.changes` when it was the last one).
    pub fn remove(&self) -> io::Result<()> {
        crate::session::remove_tree(&self.root)?;
        if let Some(parent) = self.root.parent() {
            let _ = std::fs::remove_dir(parent);
        }
        Ok(())
    }
}
