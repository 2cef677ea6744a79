//! Change sets of ended `overlay` jobs, kept until applied, discarded or expired.
//!
//! Each changed path's state on disk is fingerprinted when the change set is computed; apply
//! writes a path only while the disk still matches, so an edit made on the host meanwhile is a
//! `conflict` and is never overwritten. A file is written beside its target and renamed over
//! it, so a reader never sees half of it.

use super::Layer;
use super::changes::is_whiteout;
use crate::error::WorkerError;
use crate::protocol::{
    ApplyOutcome, ApplyResult, ChangeKind, DiscardResult, FileChange, PathOutcome,
};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a path on disk is, precisely enough to tell that it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fingerprint {
    Absent,
    File { sha256: [u8; 32], mode: u32 },
    Link(PathBuf),
    Dir,
    Other,
}

pub fn fingerprint(path: &Path) -> io::Result<Fingerprint> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Fingerprint::Absent),
        Err(error) => return Err(error),
    };
    Ok(if meta.file_type().is_symlink() {
        Fingerprint::Link(std::fs::read_link(path)?)
    } else if meta.is_dir() {
        Fingerprint::Dir
    } else if meta.is_file() {
        let mut hasher = Sha256::new();
        io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
        Fingerprint::File {
            sha256: hasher.finalize().into(),
            mode: meta.permissions().mode() & 0o7777,
        }
    } else {
        Fingerprint::Other
    })
}

struct Pending {
    layer: Layer,
    project: PathBuf,
    protected: Vec<PathBuf>,
    files: Vec<FileChange>,
    disk: HashMap<String, Fingerprint>,
    applied: HashSet<String>,
    at: Instant,
    /// Disk the layer holds, counted against `workspace.max_total_upper_bytes`.
    bytes: u64,
}

/// The worker's pending change sets, by job id.
pub struct PendingChanges {
    retain: Duration,
    jobs: Mutex<HashMap<String, Arc<Mutex<Pending>>>>,
    /// Layers of overlay jobs still running, by session, as last measured.
    running: Mutex<HashMap<String, u64>>,
}

impl PendingChanges {
    pub fn new(retain: Duration) -> PendingChanges {
        PendingChanges {
            retain,
            jobs: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Records the size of a running job's layer; `None` when the job is done with it.
    pub fn note_running(&self, session: &str, bytes: Option<u64>) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        match bytes {
            Some(bytes) => running.insert(session.to_owned(), bytes),
            None => running.remove(session),
        };
    }

    /// Bytes held by every overlay layer: running jobs' and pending change sets'.
    pub fn total_bytes(&self) -> u64 {
        let running: u64 = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum();
        let pending: u64 = self
            .lock()
            .values()
            .map(|p| p.lock().map(|p| p.bytes).unwrap_or(0))
            .sum();
        running + pending
    }

    /// Keeps `layer` until the change set is applied, discarded or older than the retention.
    /// Fingerprints every listed path as it is on disk now. Blocking.
    pub fn keep(
        &self,
        job_id: &str,
        layer: Layer,
        plan: &super::WorkspacePlan,
        files: &[FileChange],
    ) -> io::Result<()> {
        let mut disk = HashMap::new();
        for file in files {
            disk.insert(file.path.clone(), fingerprint(&plan.path.join(&file.path))?);
        }
        let bytes = disk_usage(&layer.upper);
        let pending = Pending {
            bytes,
            layer,
            project: plan.path.clone(),
            protected: plan.protected.clone(),
            files: files.to_vec(),
            disk,
            applied: HashSet::new(),
            at: Instant::now(),
        };
        self.expire();
        self.lock()
            .insert(job_id.to_owned(), Arc::new(Mutex::new(pending)));
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Mutex<Pending>>>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, job_id: &str) -> Result<Arc<Mutex<Pending>>, WorkerError> {
        self.expire();
        self.lock().get(job_id).cloned().ok_or_else(|| {
            WorkerError::invalid_params(
                "job_id",
                format!(
                    "job `{job_id}` has no pending workspace changes (not an overlay job, \
                     still running, discarded, or older than the retention)"
                ),
            )
        })
    }

    /// Drops change sets past the retention.
    pub fn expire(&self) {
        let old: Vec<Arc<Mutex<Pending>>> = {
            let mut jobs = self.lock();
            let gone: Vec<String> = jobs
                .iter()
                .filter(|(_, p)| {
                    p.lock()
                        .map(|p| p.at.elapsed() > self.retain)
                        .unwrap_or(true)
                })
                .map(|(id, _)| id.clone())
                .collect();
            gone.iter().filter_map(|id| jobs.remove(id)).collect()
        };
        for pending in old {
            let pending = pending.lock().unwrap_or_else(|p| p.into_inner());
            let _ = pending.layer.remove();
        }
    }

    /// Blocking.
    pub fn apply(
        &self,
        job_id: &str,
        paths: Option<Vec<String>>,
    ) -> Result<ApplyResult, WorkerError> {
        let pending = self.get(job_id)?;
        let mut pending = pending.lock().unwrap_or_else(|p| p.into_inner());
        let wanted: Vec<String> = match paths {
            Some(mut paths) => {
                paths.sort();
                paths.dedup();
                paths
            }
            None => pending.files.iter().map(|f| f.path.clone()).collect(),
        };
        let mut results = Vec::with_capacity(wanted.len());
        for path in wanted {
            let (outcome, reason) = match pending.files.iter().find(|f| f.path == path).cloned() {
                None => (
                    ApplyOutcome::Skipped,
                    Some("not in the change set".to_owned()),
                ),
                Some(change) => pending.apply_one(&change),
            };
            if outcome == ApplyOutcome::Applied {
                pending.applied.insert(path.clone());
            }
            results.push(PathOutcome {
                path,
                outcome,
                reason,
            });
        }
        results.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(ApplyResult {
            job_id: job_id.to_owned(),
            results,
        })
    }

    /// A page of a pending change set's diff (`worker_get_changes`). Blocking.
    pub fn diff_page(
        &self,
        job_id: &str,
        offset: u64,
        max_bytes: usize,
    ) -> Result<crate::protocol::ChangesPage, WorkerError> {
        let pending = self.get(job_id)?;
        let pending = pending.lock().unwrap_or_else(|p| p.into_inner());
        let diff = super::changes::diff_page(&pending.layer.diff_file(), offset, max_bytes)
            .map_err(|error| WorkerError::internal(format!("reading the diff: {error}")))?;
        Ok(crate::protocol::ChangesPage {
            job_id: job_id.to_owned(),
            files: pending.files.clone(),
            diff,
        })
    }

    /// Blocking.
    pub fn discard(&self, job_id: &str) -> Result<DiscardResult, WorkerError> {
        self.get(job_id)?;
        let Some(pending) = self.lock().remove(job_id) else {
            return Err(WorkerError::invalid_params(
                "job_id",
                format!("job `{job_id}` has no pending workspace changes"),
            ));
        };
        let pending = pending.lock().unwrap_or_else(|p| p.into_inner());
        pending
            .layer
            .remove()
            .map_err(|error| WorkerError::internal(format!("removing the layer: {error}")))?;
        Ok(DiscardResult {
            job_id: job_id.to_owned(),
            discarded: (pending.files.len() - pending.applied.len()) as u64,
        })
    }
}

impl Pending {
    fn apply_one(&self, change: &FileChange) -> (ApplyOutcome, Option<String>) {
        let skipped = |why: &str| (ApplyOutcome::Skipped, Some(why.to_owned()));
        if self.applied.contains(&change.path) {
            return skipped("applied before");
        }
        let target = self.project.join(&change.path);
        if self.protected.iter().any(|p| target.starts_with(p)) {
            return skipped("a protected path (see the worker's `workspace.protected`)");
        }
        // The project is the user's; a directory of it that leads elsewhere is not followed.
        let inside = target
            .parent()
            .and_then(|parent| nearest_existing(parent).ok())
            .is_some_and(|real| real.starts_with(&self.project));
        if !inside {
            return skipped("its directory leads outside the workspace");
        }
        match fingerprint(&target) {
            Ok(now) if Some(&now) == self.disk.get(&change.path) => {}
            Ok(_) => {
                return (
                    ApplyOutcome::Conflict,
                    Some("changed on disk since the change set was computed".into()),
                );
            }
            Err(error) => return (ApplyOutcome::Conflict, Some(error.to_string())),
        }
        let done = match change.kind {
            ChangeKind::Deleted => self.delete(&change.path, &target),
            _ => self.place(&change.path, &target),
        };
        match done {
            Ok(()) => (ApplyOutcome::Applied, None),
            Err(error) => (
                ApplyOutcome::Conflict,
                Some(format!("could not write it: {error}")),
            ),
        }
    }

    fn delete(&self, rel: &str, target: &Path) -> io::Result<()> {
        match std::fs::symlink_metadata(target) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(target)?,
            Ok(_) => std::fs::remove_file(target)?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        // Directories the job removed as a whole go once they are empty: in an overlay the
        // removed one is a whiteout, in a copy the topmost ancestor the copy lacks.
        let rel = Path::new(rel);
        let in_upper = |a: &Path| std::fs::symlink_metadata(self.layer.upper.join(a));
        let whiteout_at = if self.layer.copy_mark.is_some() {
            rel.ancestors()
                .skip(1)
                .take_while(|a| !a.as_os_str().is_empty() && in_upper(a).is_err())
                .last()
        } else {
            rel.ancestors()
                .skip(1)
                .find(|a| !a.as_os_str().is_empty() && in_upper(a).is_ok_and(|m| is_whiteout(&m)))
        };
        if let Some(top) = whiteout_at {
            for dir in rel.ancestors().skip(1) {
                let _ = std::fs::remove_dir(self.project.join(dir));
                if dir == top {
                    break;
                }
            }
        }
        Ok(())
    }

    fn place(&self, rel: &str, target: &Path) -> io::Result<()> {
        let source = self.layer.upper.join(rel);
        let meta = std::fs::symlink_metadata(&source)?;
        let existing = std::fs::symlink_metadata(target).ok();
        if meta.is_dir() {
            if existing.is_some_and(|m| !m.is_dir()) {
                std::fs::remove_file(target)?;
            }
            return std::fs::create_dir_all(target);
        }
        let parent = target.parent().unwrap_or(&self.project);
        std::fs::create_dir_all(parent)?;
        let name = target.file_name().unwrap_or_default().to_string_lossy();
        let temp = parent.join(format!(".{name}.ocw-apply-{}", std::process::id()));
        let _ = std::fs::remove_file(&temp);
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source)?, &temp)?;
        } else {
            std::fs::copy(&source, &temp)?;
            std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(meta.mode_bits()))?;
        }
        if existing.is_some_and(|m| m.is_dir()) {
            std::fs::remove_dir_all(target)?;
        }
        std::fs::rename(&temp, target).inspect_err(|_| {
            let _ = std::fs::remove_file(&temp);
        })
    }
}

trait ModeBits {
    fn mode_bits(&self) -> u32;
}

impl ModeBits for std::fs::Metadata {
    fn mode_bits(&self) -> u32 {
        self.permissions().mode() & 0o7777
    }
}

/// Disk blocks used under `dir` (not following symlinks), in bytes. Blocking.
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.metadata().ok())
        .map(|meta| meta.blocks() * 512)
        .sum()
}

/// The real path of `path`, or of its nearest ancestor that exists.
fn nearest_existing(path: &Path) -> io::Result<PathBuf> {
    let mut current = path;
    loop {
        match std::fs::canonicalize(current) {
            Ok(real) => return Ok(real),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                current = current.parent().ok_or(error)?;
            }
            Err(error) => return Err(error),
        }
    }
}
