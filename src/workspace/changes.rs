//! The change set of an `overlay` job, read from its upper layer against the project.
//!
//! In the upper layer a 0/0 character device is a whiteout (the path was deleted), a directory
//! with the `overlay.opaque` xattr replaced the lower one (everything below it that the upper
//! layer does not hold was deleted), and anything else is the job's version of the path. A file
//! copied up without a change (opened for writing, touched) is no change.

use super::ignores::Ignores;
use crate::protocol::{ChangeDiff, ChangeKind, FileChange, IgnoredChanges, WorkspaceChanges};
use sha2::{Digest, Sha256};

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// Text files above this size are listed but left out of the diff.
const DIFF_FILE_BYTES: u64 = 1 << 20;

/// Where a change set's whole diff goes, and how much of it the job result carries.
pub struct DiffOut<'a> {
    /// The whole diff is written here, for `worker_get_changes` to page through.
    pub file: &'a Path,
    /// The result's `diff.text` is cut at this many bytes.
    pub cap: usize,
}

/// Compares `upper` with `project`.
pub fn compute(project: &Path, upper: &Path, diff: DiffOut<'_>) -> io::Result<WorkspaceChanges> {
    let mut scan = Scan::new(project, upper, None, diff)?;
    scan.walk(Path::new(""))?;
    scan.finish()
}

/// When a copy was complete: the ctime of a file touched right after it, on the same clock
/// as the copy's and the project's ctimes.
pub type CopyMark = (i64, i64);

/// Compares the copy an `overlay` job worked on (copy fallback) with the project. A copied
/// entry whose ctime is before `mark` is one the job did not touch: it is skipped unread,
/// whatever the project holds now (a user's edit during the job is not the job's change). A
/// project entry missing from the copy is a deletion only when it is older than the mark
/// (newer ones appeared after the copy) and was copied at all (not ignored).
pub fn compute_copy(
    project: &Path,
    copy: &Path,
    mark: CopyMark,
    diff: DiffOut<'_>,
) -> io::Result<WorkspaceChanges> {
    let mut scan = Scan::new(project, copy, Some(mark), diff)?;
    scan.walk_copy(Path::new(""))?;
    scan.finish()
}

fn ctime(meta: &Metadata) -> CopyMark {
    (meta.ctime(), meta.ctime_nsec())
}

impl<'a> Scan<'a> {
    fn new(
        project: &'a Path,
        upper: &'a Path,
        mark: Option<CopyMark>,
        diff: DiffOut<'_>,
    ) -> io::Result<Self> {
        Ok(Scan {
            project,
            upper,
            mark,
            ignores: Ignores::new(project),
            files: Vec::new(),
            ignored: IgnoredChanges::default(),
            diff: String::new(),
            diff_total: 0,
            diff_cap: diff.cap,
            diff_file: io::BufWriter::new(std::fs::File::create(diff.file)?),
            diff_error: None,
        })
    }

    fn finish(mut self) -> io::Result<WorkspaceChanges> {
        use std::io::Write;
        if let Some(error) = self.diff_error.take() {
            return Err(error);
        }
        self.diff_file.flush()?;
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
        let truncated = self.diff_total > self.diff.len() as u64;
        Ok(WorkspaceChanges {
            files: self.files,
            diff: (self.diff_total > 0).then_some(ChangeDiff {
                text: self.diff,
                offset: 0,
                total_bytes: self.diff_total,
                truncated,
            }),
            ignored: self.ignored,
            degraded: None,
        })
    }
}

/// True for a whiteout: overlayfs marks a deleted path with a 0/0 character device.
pub fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// True when an upper directory hides the lower one entirely.
pub fn is_opaque(dir: &Path) -> bool {
    ["user.overlay.opaque", "trusted.overlay.opaque"]
        .iter()
        .any(|name| xattr_is_y(dir, name))
}

fn xattr_is_y(path: &Path, name: &str) -> bool {
    let (Ok(path), Ok(name)) = (
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()),
        std::ffi::CString::new(name),
    ) else {
        return false;
    };
    let mut value = [0u8; 4];
    // SAFETY: NUL-terminated strings and a buffer of the given length.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n == 1 && value[0] == b'y'
}

struct Scan<'a> {
    project: &'a Path,
    upper: &'a Path,
    /// Set when `upper` is a copy of the project, not an overlay's upper layer.
    mark: Option<CopyMark>,
    ignores: Ignores,
    files: Vec<FileChange>,
    ignored: IgnoredChanges,
    diff: String,
    diff_total: u64,
    diff_cap: usize,
    diff_file: io::BufWriter<std::fs::File>,
    /// The first failed write to `diff_file`, reported by `finish`.
    diff_error: Option<io::Error>,
}

impl Scan<'_> {
    fn walk(&mut self, rel: &Path) -> io::Result<()> {
        let mut names: Vec<_> = std::fs::read_dir(self.upper.join(rel))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            let rel = rel.join(&name);
            let up = std::fs::symlink_metadata(self.upper.join(&rel))?;
            let low = std::fs::symlink_metadata(self.project.join(&rel)).ok();
            if is_whiteout(&up) {
                if let Some(low) = low {
                    self.deleted(&rel, &low)?;
                }
                continue;
            }
            if up.is_dir() {
                match &low {
                    Some(low) if low.is_dir() && is_opaque(&self.upper.join(&rel)) => {
                        self.deleted_below_opaque(&rel)?;
                    }
                    Some(low) if !low.is_dir() => {
                        self.record(&rel, ChangeKind::TypeChanged, &up)?
                    }
                    _ => {}
                }
                self.walk(&rel)?;
                continue;
            }
            let kind = match &low {
                None => ChangeKind::Added,
                Some(low) if low.file_type() != up.file_type() => ChangeKind::TypeChanged,
                Some(low) if self.same(&rel, low, &up)? => continue,
                Some(_) => ChangeKind::Modified,
            };
            self.record(&rel, kind, &up)?;
        }
        Ok(())
    }

    /// `walk` for a copy: every entry of the copy, then the project's entries it lacks.
    fn walk_copy(&mut self, rel: &Path) -> io::Result<()> {
        let mark = self.mark.unwrap_or_default();
        let mut names: Vec<_> = std::fs::read_dir(self.upper.join(rel))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in &names {
            let rel = rel.join(name);
            let up = std::fs::symlink_metadata(self.upper.join(&rel))?;
            if !super::copy::copied(&mut self.ignores, &rel, up.is_dir()) {
                // Build output the job made: counted, never compared.
                self.count_ignored_tree(&self.upper.join(&rel))?;
                continue;
            }
            let low = std::fs::symlink_metadata(self.project.join(&rel)).ok();
            if up.is_dir() {
                if low.as_ref().is_some_and(|low| !low.is_dir()) {
                    self.record(&rel, ChangeKind::TypeChanged, &up)?;
                }
                self.walk_copy(&rel)?;
                continue;
            }
            let kind = match &low {
                None => ChangeKind::Added,
                Some(low) if low.file_type() != up.file_type() => ChangeKind::TypeChanged,
                Some(_) if ctime(&up) < mark => continue,
                Some(low) if self.same(&rel, low, &up)? => continue,
                Some(_) => ChangeKind::Modified,
            };
            self.record(&rel, kind, &up)?;
        }
        let Ok(entries) = std::fs::read_dir(self.project.join(rel)) else {
            return Ok(());
        };
        let mut gone = Vec::new();
        for entry in entries {
            let entry = entry?;
            if names.binary_search(&entry.file_name()).is_err() {
                gone.push(entry.file_name());
            }
        }
        gone.sort();
        for name in gone {
            let rel = rel.join(name);
            let low = std::fs::symlink_metadata(self.project.join(&rel))?;
            let kind = low.file_type();
            let was_copied = (kind.is_dir() || kind.is_file() || kind.is_symlink())
                && super::copy::copied(&mut self.ignores, &rel, low.is_dir());
            if was_copied && (low.is_dir() || ctime(&low) < mark) {
                self.deleted(&rel, &low)?;
            }
        }
        Ok(())
    }

    fn count_ignored_tree(&mut self, path: &Path) -> io::Result<()> {
        for entry in walkdir::WalkDir::new(path) {
            let entry = entry.map_err(io::Error::other)?;
            self.count_ignored(&entry.metadata().map_err(io::Error::other)?);
        }
        Ok(())
    }

    fn same(&self, rel: &Path, low: &Metadata, up: &Metadata) -> io::Result<bool> {
        if up.file_type().is_symlink() {
            return Ok(std::fs::read_link(self.project.join(rel))?
                == std::fs::read_link(self.upper.join(rel))?);
        }
        if !up.is_file() {
            return Ok(low.rdev() == up.rdev() && low.mode() == up.mode());
        }
        Ok(low.len() == up.len()
            && low.permissions().mode() & 0o7777 == up.permissions().mode() & 0o7777
            && std::fs::read(self.project.join(rel))? == std::fs::read(self.upper.join(rel))?)
    }

    /// A lower path the job removed: each file under a removed directory is listed.
    fn deleted(&mut self, rel: &Path, low: &Metadata) -> io::Result<()> {
        if !low.is_dir() {
            return self.record_deleted(rel, low);
        }
        for entry in walkdir::WalkDir::new(self.project.join(rel)).sort_by_file_name() {
            let entry = entry.map_err(io::Error::other)?;
            if entry.file_type().is_dir() {
                continue;
            }
            let path = entry
                .path()
                .strip_prefix(self.project)
                .unwrap_or(entry.path());
            let meta = entry.metadata().map_err(io::Error::other)?;
            self.record_deleted(path, &meta)?;
        }
        Ok(())
    }

    /// Lower entries an opaque upper directory hides.
    fn deleted_below_opaque(&mut self, rel: &Path) -> io::Result<()> {
        for entry in std::fs::read_dir(self.project.join(rel))? {
            let entry = entry?;
            let child = rel.join(entry.file_name());
            if std::fs::symlink_metadata(self.upper.join(&child)).is_err() {
                let meta = std::fs::symlink_metadata(entry.path())?;
                self.deleted(&child, &meta)?;
            }
        }
        Ok(())
    }

    fn record_deleted(&mut self, rel: &Path, low: &Metadata) -> io::Result<()> {
        if self.mark.is_some_and(|mark| ctime(low) >= mark) {
            // Appeared in the project after the copy was made: not the job's deletion.
            return Ok(());
        }
        if self.ignores.ignored(rel, false) {
            self.count_ignored(low);
            return Ok(());
        }
        if low.is_file() && low.len() <= DIFF_FILE_BYTES {
            let old = std::fs::read(self.project.join(rel))?;
            self.add_diff(rel, Some(&old), None);
        }
        self.files.push(FileChange {
            path: rel.to_string_lossy().into_owned(),
            kind: ChangeKind::Deleted,
            size: None,
            sha256: None,
            mode: None,
            link_target: None,
        });
        Ok(())
    }

    fn record(&mut self, rel: &Path, kind: ChangeKind, up: &Metadata) -> io::Result<()> {
        if self.ignores.ignored(rel, up.is_dir()) {
            self.count_ignored(up);
            return Ok(());
        }
        let upper = self.upper.join(rel);
        let mut change = FileChange {
            path: rel.to_string_lossy().into_owned(),
            kind,
            size: None,
            sha256: None,
            mode: Some(up.permissions().mode() & 0o7777),
            link_target: None,
        };
        if up.file_type().is_symlink() {
            change.link_target = Some(std::fs::read_link(&upper)?.to_string_lossy().into_owned());
            change.mode = None;
        } else if up.is_file() {
            let new = std::fs::read(&upper)?;
            change.size = Some(new.len() as u64);
            change.sha256 = Some(hex(&Sha256::digest(&new)));
            if new.len() as u64 <= DIFF_FILE_BYTES {
                let lower = self.project.join(rel);
                let old = match kind {
                    ChangeKind::Modified => Some(std::fs::read(&lower)?),
                    _ => None,
                };
                self.add_diff(rel, old.as_deref(), Some(&new));
            }
        }
        self.files.push(change);
        Ok(())
    }

    fn count_ignored(&mut self, meta: &Metadata) {
        self.ignored.count += 1;
        if meta.is_file() {
            self.ignored.bytes += meta.len();
        }
    }

    /// Appends a unified diff of two text versions (`None` = absent); binary content is
    /// left out of the diff.
    fn add_diff(&mut self, rel: &Path, old: Option<&[u8]>, new: Option<&[u8]>) {
        let (Ok(old_text), Ok(new_text)) = (
            std::str::from_utf8(old.unwrap_or_default()),
            std::str::from_utf8(new.unwrap_or_default()),
        ) else {
            return;
        };
        if old_text.contains('\0') || new_text.contains('\0') {
            return;
        }
        let path = rel.to_string_lossy();
        let a = old.map_or("/dev/null".to_owned(), |_| format!("a/{path}"));
        let b = new.map_or("/dev/null".to_owned(), |_| format!("b/{path}"));
        let diff = similar::TextDiff::from_lines(old_text, new_text);
        let text = diff
            .unified_diff()
            .context_radius(3)
            .header(&a, &b)
            .to_string();
        self.diff_total += text.len() as u64;
        if self.diff_error.is_none() {
            use std::io::Write;
            self.diff_error = self.diff_file.write_all(text.as_bytes()).err();
        }
        let room = self.diff_cap.saturating_sub(self.diff.len());
        if room > 0 {
            let mut cut = text.len().min(room);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            self.diff.push_str(&text[..cut]);
        }
    }
}

/// A page of the diff in `file` (as `compute` wrote it): at most `max_bytes` from `offset`,
/// both moved to UTF-8 character boundaries. Blocking.
pub fn diff_page(file: &Path, offset: u64, max_bytes: usize) -> io::Result<ChangeDiff> {
    use std::io::{Read, Seek};
    let mut file = std::fs::File::open(file)?;
    let total = file.metadata()?.len();
    let mut offset = offset.min(total);
    file.seek(io::SeekFrom::Start(offset))?;
    // Three bytes more, so a character cut by the page end can be dropped whole.
    let mut bytes = Vec::with_capacity(max_bytes.min(1 << 24) + 3);
    file.take(max_bytes as u64 + 3).read_to_end(&mut bytes)?;
    let lead = bytes.iter().take_while(|b| (**b & 0xc0) == 0x80).count();
    offset += lead as u64;
    let mut end = (lead + max_bytes).min(bytes.len());
    let text = loop {
        match std::str::from_utf8(&bytes[lead..end]) {
            Ok(text) => break text.to_owned(),
            Err(error) if error.error_len().is_none() => end = lead + error.valid_up_to(),
            Err(_) => break String::from_utf8_lossy(&bytes[lead..end]).into_owned(),
        }
    };
    Ok(ChangeDiff {
        truncated: offset + ((end - lead) as u64) < total,
        offset,
        total_bytes: total,
        text,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_ignore_rules_and_dot_git() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path();
        std::fs::create_dir_all(p.join("a/b")).unwrap();
        std::fs::write(p.join(".gitignore"), "target/\n*.log\n").unwrap();
        std::fs::write(p.join("a/.gitignore"), "!keep.log\ngen/\n").unwrap();
        let mut ignores = Ignores::new(p);
        assert!(ignores.ignored(Path::new("target/debug/x"), false));
        assert!(ignores.ignored(Path::new("x.log"), false));
        assert!(!ignores.ignored(Path::new("a/keep.log"), false));
        assert!(ignores.ignored(Path::new("a/gen/f.rs"), false));
        assert!(ignores.ignored(Path::new(".git/index"), false));
        assert!(!ignores.ignored(Path::new("a/b/c.rs"), false));
    }
}
