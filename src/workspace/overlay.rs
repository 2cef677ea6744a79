//! The upper layer of an `overlay` job: `<base>/.changes/<session>/{upper,work}`, owned by the
//! worker, outside every session (other jobs cannot see it: the sessions root is hidden).

use crate::sandbox::OverlayDirs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub const CHANGES_DIR: &str = ".changes";

#[derive(Debug)]
pub struct Layer {
    pub root: PathBuf,
    pub upper: PathBuf,
    work: PathBuf,
}

impl Layer {
    pub fn create(base: &Path, name: &str) -> io::Result<Layer> {
        let parent = base.join(CHANGES_DIR);
        let mut builder = std::fs::DirBuilder::new();
        builder.mode(0o700).recursive(true).create(&parent)?;
        let root = parent.join(name);
        builder.recursive(false).create(&root)?;
        let layer = Layer {
            upper: root.join("upper"),
            work: root.join("work"),
            root,
        };
        builder.create(&layer.upper)?;
        builder.create(&layer.work)?;
        Ok(layer)
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
