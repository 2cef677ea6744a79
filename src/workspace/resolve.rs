//! Dispatch-time checks of `JobSpec.workspace`: nothing is created or mounted here.

use super::WorkspacePlan;
use crate::config::Config;
use crate::error::WorkerError;
use crate::protocol::WorkspaceSpec;
use std::io;
use std::path::{Component, Path, PathBuf};

const FIELD: &str = "workspace.path";

/// The workspace as the job will see it, or a -32602 naming `workspace.path` (or `cwd`).
/// `cwd` is the job's `cwd` already checked as a plain relative path.
pub fn resolve(
    spec: WorkspaceSpec,
    cwd: Option<&Path>,
    config: &Config,
) -> Result<WorkspacePlan, WorkerError> {
    let invalid = |reason: String| WorkerError::invalid_params(FIELD, reason);
    let root = project_root(config)
        .map_err(|error| invalid(format!("the worker's project root cannot be used: {error}")))?;
    let roots = allowed_roots(config, &root);
    let asked = match spec.path.as_deref() {
        None | Some("") => root.clone(),
        Some(text) if text.contains('\0') => return Err(invalid("must not contain NUL".into())),
        Some(text) => root.join(text),
    };
    let path = std::fs::canonicalize(&asked).map_err(|error| {
        invalid(match error.kind() {
            io::ErrorKind::NotFound => format!("`{}` does not exist", asked.display()),
            _ => format!("`{}` cannot be resolved: {error}", asked.display()),
        })
    })?;
    if !path.is_dir() {
        return Err(invalid(format!("`{}` is not a directory", path.display())));
    }
    if !roots.iter().any(|r| path.starts_with(r)) {
        let lexical = normalize(&asked);
        let why = if roots.iter().any(|r| lexical.starts_with(r)) {
            "leaves the workspace roots through a symlink"
        } else {
            "is outside the workspace roots"
        };
        return Err(invalid(format!(
            "`{}` {why} ({}); the worker's config `workspace.roots` lists where jobs may work",
            path.display(),
            list(&roots)
        )));
    }
    for hidden in hidden_paths(config) {
        if path.starts_with(&hidden) || hidden.starts_with(&path) {
            return Err(invalid(format!(
                "`{}` overlaps `{}`, which jobs must never read",
                path.display(),
                hidden.display()
            )));
        }
    }
    let cwd = match cwd.filter(|c| !c.as_os_str().is_empty()) {
        None => path.clone(),
        Some(rel) => {
            let bad = |reason: String| WorkerError::invalid_params("cwd", reason);
            let real = std::fs::canonicalize(path.join(rel)).map_err(|error| {
                bad(format!(
                    "`{}` in the workspace cannot be used: {error}",
                    rel.display()
                ))
            })?;
            if !real.starts_with(&path) || !real.is_dir() {
                return Err(bad(format!(
                    "`{}` is not a directory inside the workspace",
                    rel.display()
                )));
            }
            real
        }
    };
    Ok(WorkspacePlan {
        protected: protected_paths(config, &path),
        path,
        mode: spec.mode,
        cwd,
    })
}

fn project_root(config: &Config) -> io::Result<PathBuf> {
    let root = match &config.workspace.root {
        Some(root) => root.clone(),
        None => std::env::current_dir()?,
    };
    std::fs::canonicalize(root)
}

fn allowed_roots(config: &Config, root: &Path) -> Vec<PathBuf> {
    if config.workspace.roots.is_empty() {
        return vec![root.to_path_buf()];
    }
    // A configured root that does not exist allows nothing.
    config
        .workspace
        .roots
        .iter()
        .filter_map(|r| std::fs::canonicalize(root.join(r)).ok())
        .collect()
}

/// The sandbox's hidden paths with `~/` expanded and symlinks resolved where they exist.
fn hidden_paths(config: &Config) -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    config
        .isolation
        .hidden
        .iter()
        .filter_map(|p| match p.strip_prefix("~") {
            Ok(rest) => home.as_ref().map(|h| h.join(rest)),
            Err(_) => p.is_absolute().then(|| p.clone()),
        })
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
        .collect()
}

/// Configured protected entries as absolute paths inside `workspace`; entries that would
/// leave it (`..`, an absolute path elsewhere) protect nothing here.
fn protected_paths(config: &Config, workspace: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = config
        .workspace
        .protected
        .iter()
        .map(PathBuf::from)
        .chain(config.loaded_from.clone())
        .map(|p| normalize(&workspace.join(p)))
        .filter(|p| p.starts_with(workspace) && p != workspace)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `.` and `..` removed without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
