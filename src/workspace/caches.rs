//! Toolchain caches for workspace jobs: the user's `~/.cargo/registry`, `~/.cargo/git`,
//! `~/.npm`, `~/.cache/pip` and go's module cache are readable, and writes to them land in a
//! cache owned by the worker that later jobs of the same worker see, never in the user's dirs
//! (a sandboxed job must not plant a package that the user's unsandboxed build later runs).
//!
//! Each cache dir gets an overlayfs at its own path: lower layers the worker's cache (top)
//! and the user's dir, upper a fresh dir of this job. One upper cannot serve two live overlay
//! mounts (the kernel calls that undefined), so jobs running side by side each write their own
//! upper, and after the job its upper is merged into the worker's cache (`JobCaches::merge`).
//!
//! `workspace.shared_caches` lists dirs the operator shares writable instead: they get no
//! overlay, and the job writes the user's dir itself.

use crate::sandbox::{CacheOverlay, OverlayDirs};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub const CACHES_DIR: &str = ".caches";

/// The cache dirs of the user running the worker that exist, with the variable that points a
/// job's tool at it (a job's `$HOME` is its session's, so npm, pip and go would look there).
pub fn user_caches() -> Vec<(PathBuf, Option<&'static str>)> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let cargo = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".cargo")));
    let go = std::env::var_os("GOMODCACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("GOPATH")
                .map(|p| PathBuf::from(p).join("pkg/mod"))
                .or_else(|| home.as_ref().map(|h| h.join("go/pkg/mod")))
        });
    let mut list: Vec<(Option<PathBuf>, Option<&'static str>)> = vec![
        (cargo.as_ref().map(|c| c.join("registry")), None),
        (cargo.as_ref().map(|c| c.join("git")), None),
        (
            home.as_ref().map(|h| h.join(".npm")),
            Some("npm_config_cache"),
        ),
        (
            home.as_ref().map(|h| h.join(".cache/pip")),
            Some("PIP_CACHE_DIR"),
        ),
        (go, Some("GOMODCACHE")),
    ];
    list.retain(|(dir, _)| dir.as_ref().is_some_and(|d| d.is_dir()));
    list.into_iter()
        .filter_map(|(dir, var)| Some((std::fs::canonicalize(dir?).ok()?, var)))
        .collect()
}

/// One job's cache layers.
#[derive(Debug, Default)]
pub struct JobCaches {
    pub mounts: Vec<CacheOverlay>,
    /// Variables that point the job's tools at the user's cache dirs.
    pub env: Vec<(String, String)>,
    /// Cache dirs of the user the job writes in place (`workspace.shared_caches`).
    pub shared: Vec<PathBuf>,
    root: Option<PathBuf>,
}

/// A name for a cache dir in the worker's cache: its path with `/` replaced.
fn layer_name(path: &Path) -> String {
    path.to_string_lossy()
        .trim_start_matches('/')
        .replace(['/', '.'], "_")
}

impl JobCaches {
    /// Makes the worker's cache layers (once) and this job's uppers under
    /// `<base>/.caches/`. `shared` dirs are left to the job as they are.
    pub fn prepare(base: &Path, session: &str, shared: &[PathBuf]) -> io::Result<JobCaches> {
        let shared: Vec<PathBuf> = shared
            .iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect();
        let caches = user_caches();
        let mut job = JobCaches::default();
        if caches.is_empty() {
            return Ok(job);
        }
        let mut builder = std::fs::DirBuilder::new();
        builder.mode(0o700).recursive(true);
        let root = base.join(CACHES_DIR);
        let jobs = root.join("jobs").join(session);
        builder.create(&jobs)?;
        job.root = Some(jobs.clone());
        for (index, (path, var)) in caches.into_iter().enumerate() {
            if let Some(var) = var {
                job.env
                    .push((var.to_owned(), path.to_string_lossy().into_owned()));
            }
            if shared.iter().any(|s| path.starts_with(s)) {
                job.shared.push(path);
                continue;
            }
            let worker_layer = root.join("layers").join(layer_name(&path));
            builder.create(&worker_layer)?;
            let dirs = OverlayDirs {
                upper: jobs.join(format!("{index}/upper")),
                work: jobs.join(format!("{index}/work")),
            };
            builder.create(&dirs.upper)?;
            builder.create(&dirs.work)?;
            job.mounts.push(CacheOverlay {
                path,
                worker_layer,
                dirs,
            });
        }
        Ok(job)
    }

    /// Once the job's processes are gone: its writes join the worker's cache, its own dirs
    /// go. Blocking.
    pub fn merge(self) {
        static MERGING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = MERGING.lock().unwrap_or_else(|p| p.into_inner());
        for mount in &self.mounts {
            if let Err(error) = merge_into(&mount.dirs.upper, &mount.worker_layer) {
                tracing::warn!(%error, cache = %mount.path.display(), "cache writes not kept");
            }
        }
        if let Some(root) = &self.root
            && let Err(error) = crate::session::remove_tree(root)
        {
            tracing::warn!(%error, "a job's cache layers could not be removed");
        }
    }
}

/// Moves what `upper` holds into `layer`: files and links replace what is there, a whiteout
/// (a deletion) removes the worker's copy (the user's own entry stays: it is never written).
fn merge_into(upper: &Path, layer: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(upper)? {
        let entry = entry?;
        let from = entry.path();
        let to = layer.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&from)?;
        let existing = std::fs::symlink_metadata(&to).ok();
        if super::changes::is_whiteout(&meta) {
            match existing {
                Some(m) if m.is_dir() => crate::session::remove_tree(&to)?,
                Some(_) => std::fs::remove_file(&to)?,
                None => {}
            }
        } else if meta.is_dir() {
            if existing.as_ref().is_some_and(|m| !m.is_dir()) {
                std::fs::remove_file(&to)?;
            }
            if existing.as_ref().is_none_or(|m| !m.is_dir()) {
                std::fs::create_dir(&to)?;
                std::fs::set_permissions(&to, meta.permissions())?;
            }
            merge_into(&from, &to)?;
        } else {
            if existing.is_some_and(|m| m.is_dir()) {
                crate::session::remove_tree(&to)?;
            }
            std::fs::rename(&from, &to)?;
        }
    }
    Ok(())
}
