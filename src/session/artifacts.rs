//! COLLECT: the files a job left in its output dir. Directories are walked with openat and
//! O_NOFOLLOW, so a symlink (to /etc/shadow, say) is never followed, only reported by name.
//!
//! Bounded: at most `HASH_BUDGET_BYTES` of file content is hashed per collection and none
//! after `TIME_BUDGET` or a stop request; past that, files are listed with their size only
//! (no `sha256`). A sparse file's holes are never read: data extents are found with
//! SEEK_DATA/SEEK_HOLE and the holes hashed as zeros (still counted against the budget).

use crate::protocol::{Artifact, FileEncoding};
use base64::Engine;
use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// File content hashed per collection at most (sha256 runs at several hundred MB/s).
pub const HASH_BUDGET_BYTES: u64 = 256 << 20;
/// Wall time a collection may spend hashing before it lists the rest by size only.
pub const TIME_BUDGET: Duration = Duration::from_secs(5);

/// When a collection stops hashing: a byte budget, a deadline, and a stop flag a cancel sets.
#[derive(Debug, Clone)]
pub struct CollectBounds {
    pub hash_bytes: u64,
    pub deadline: Instant,
    pub stop: Arc<AtomicBool>,
}

impl CollectBounds {
    pub fn new(stop: Arc<AtomicBool>) -> CollectBounds {
        CollectBounds {
            hash_bytes: HASH_BUDGET_BYTES,
            deadline: Instant::now() + TIME_BUDGET,
            stop,
        }
    }

    fn exhausted(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ArtifactCaps {
    pub max_files: usize,
    pub inline_bytes: u64,
    pub total_inline_bytes: u64,
}

pub fn collect_artifacts(
    output: &Path,
    caps: ArtifactCaps,
    bounds: &CollectBounds,
) -> std::io::Result<Vec<Artifact>> {
    let root = nix::fcntl::open(
        output,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut walker = Walker {
        caps,
        inline_left: caps.total_inline_bytes,
        hash_left: bounds.hash_bytes,
        bounds,
        found: Vec::new(),
    };
    walker.walk(root, String::new(), 0)?;
    walker.found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(walker.found)
}

/// Whether `output` is a directory (not a symlink to one) with no entries: most jobs write
/// nothing there, and then collecting needs neither a walk nor a trip to a blocking thread.
/// False when it cannot be read: the full collection decides what that means.
pub fn output_is_empty(output: &Path) -> bool {
    let Ok(mut dir) = Dir::open(
        output,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    dir.iter()
        .all(|entry| entry.is_ok_and(|entry| matches!(entry.file_name().to_bytes(), b"." | b"..")))
}

struct Walker<'a> {
    caps: ArtifactCaps,
    inline_left: u64,
    hash_left: u64,
    bounds: &'a CollectBounds,
    found: Vec<Artifact>,
}

const MAX_DEPTH: usize = 64;

impl Walker<'_> {
    fn walk(&mut self, dir_fd: OwnedFd, prefix: String, depth: usize) -> std::io::Result<()> {
        if depth > MAX_DEPTH {
            return Ok(());
        }
        let mut dir = Dir::from_fd(dir_fd)?;
        let raw = dir.as_raw_fd();
        let mut names: Vec<String> = dir
            .iter()
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().to_str().ok()?.to_owned();
                (name != "." && name != "..").then_some(name)
            })
            .collect();
        names.sort();
        // SAFETY: `raw` stays open while `dir` lives, which spans every use below.
        let parent = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
        for name in names {
            if self.found.len() >= self.caps.max_files {
                return Ok(());
            }
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let stat = match nix::sys::stat::fstatat(
                parent,
                name.as_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                Ok(stat) => stat,
                Err(_) => continue,
            };
            let kind = stat.st_mode & libc::S_IFMT;
            if kind == libc::S_IFDIR {
                if let Ok(child) = nix::fcntl::openat(
                    parent,
                    name.as_str(),
                    OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                ) {
                    self.walk(child, path, depth + 1)?;
                }
            } else if kind == libc::S_IFREG
                && let Ok(fd) = nix::fcntl::openat(
                    parent,
                    name.as_str(),
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
                    Mode::empty(),
                )
                && let Ok(artifact) = self.read_regular(fd, path)
            {
                self.found.push(artifact);
            }
            // Symlinks, fifos, sockets and devices are not artifacts.
        }
        Ok(())
    }

    fn read_regular(&mut self, fd: OwnedFd, path: String) -> std::io::Result<Artifact> {
        let mut file = std::fs::File::from(fd);
        let stat = nix::sys::stat::fstat(file.as_fd())?;
        let size = stat.st_size as u64;
        let mut artifact = Artifact {
            path,
            size,
            sha256: None,
            content: None,
            encoding: None,
        };
        // Hashing costs the file's logical size (holes are hashed as zeros), so a file past
        // what is left of the budget is listed by size without reading a byte.
        if size > self.hash_left || self.bounds.exhausted() {
            return Ok(artifact);
        }
        self.hash_left -= size;
        let inline = size <= self.caps.inline_bytes && size <= self.inline_left;
        let allocated = stat.st_blocks as u64 * 512;
        let mut hashed = Hashed {
            hasher: Sha256::new(),
            kept: Vec::new(),
            keep: if inline { self.caps.inline_bytes } else { 0 },
        };
        let complete = if allocated < size {
            self.hash_sparse(&mut file, size, &mut hashed)?
        } else {
            self.hash_range(&mut file, size, &mut hashed)?
        };
        if !complete {
            return Ok(artifact);
        }
        artifact.sha256 = Some(hex(&hashed.hasher.finalize()));
        if inline && hashed.kept.len() as u64 == size {
            self.inline_left -= size;
            let (content, encoding) = match String::from_utf8(hashed.kept) {
                Ok(text) => (text, FileEncoding::Utf8),
                Err(bytes) => (
                    base64::engine::general_purpose::STANDARD.encode(bytes.as_bytes()),
                    FileEncoding::Base64,
                ),
            };
            artifact.content = Some(content);
            artifact.encoding = Some(encoding);
        }
        Ok(artifact)
    }

    /// Reads up to `len` bytes from the current offset into the hash; false when the bounds
    /// ran out first.
    fn hash_range(
        &self,
        file: &mut std::fs::File,
        len: u64,
        hashed: &mut Hashed,
    ) -> std::io::Result<bool> {
        let mut buffer = vec![0u8; CHUNK];
        let mut left = len;
        while left > 0 {
            if self.bounds.exhausted() {
                return Ok(false);
            }
            let want = left.min(CHUNK as u64) as usize;
            let read = file.read(&mut buffer[..want])?;
            if read == 0 {
                // The file shrank under us: hash what there was.
                break;
            }
            hashed.update(&buffer[..read]);
            left -= read as u64;
        }
        Ok(true)
    }

    /// Reads only the data extents; holes go into the hash as zeros without a read.
    fn hash_sparse(
        &self,
        file: &mut std::fs::File,
        size: u64,
        hashed: &mut Hashed,
    ) -> std::io::Result<bool> {
        let raw = file.as_raw_fd();
        let mut offset = 0u64;
        while offset < size {
            // SAFETY: lseek on our own descriptor.
            let data = unsafe { libc::lseek(raw, offset as libc::off_t, libc::SEEK_DATA) };
            // ENXIO: no data past `offset`, the rest is a hole.
            let data = if data < 0 {
                size
            } else {
                (data as u64).min(size)
            };
            if !self.hash_zeros(data - offset, hashed) {
                return Ok(false);
            }
            if data >= size {
                break;
            }
            // SAFETY: as above.
            let hole = unsafe { libc::lseek(raw, data as libc::off_t, libc::SEEK_HOLE) };
            let hole = if hole < 0 {
                size
            } else {
                (hole as u64).min(size)
            };
            file.seek(SeekFrom::Start(data))?;
            if !self.hash_range(file, hole - data, hashed)? {
                return Ok(false);
            }
            offset = hole;
        }
        Ok(true)
    }

    fn hash_zeros(&self, len: u64, hashed: &mut Hashed) -> bool {
        let zeros = [0u8; CHUNK];
        let mut left = len;
        while left > 0 {
            if self.bounds.exhausted() {
                return false;
            }
            let n = left.min(CHUNK as u64) as usize;
            hashed.update(&zeros[..n]);
            left -= n as u64;
        }
        true
    }
}

const CHUNK: usize = 64 * 1024;

struct Hashed {
    hasher: Sha256,
    kept: Vec<u8>,
    keep: u64,
}

impl Hashed {
    fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        if (self.kept.len() + bytes.len()) as u64 <= self.keep {
            self.kept.extend_from_slice(bytes);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: ArtifactCaps = ArtifactCaps {
        max_files: 100,
        inline_bytes: 1024,
        total_inline_bytes: 4096,
    };

    #[test]
    fn an_output_dir_is_empty_only_without_entries_and_never_through_a_symlink() {
        let base = tempfile::tempdir().unwrap();
        let output = base.path().join("output");
        std::fs::create_dir(&output).unwrap();
        assert!(output_is_empty(&output));
        std::fs::write(output.join(".hidden"), b"").unwrap();
        assert!(!output_is_empty(&output));
        let empty = base.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&empty, &link).unwrap();
        assert!(!output_is_empty(&link));
        assert!(!output_is_empty(&base.path().join("absent")));
    }

    #[test]
    fn lists_files_recursively_and_skips_symlinks() {
        let out = tempfile::tempdir().unwrap();
        std::fs::create_dir(out.path().join("sub")).unwrap();
        std::fs::write(out.path().join("sub/a.txt"), "hello").unwrap();
        std::fs::write(out.path().join("bin"), [0u8, 159, 146, 150]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", out.path().join("passwd")).unwrap();
        std::os::unix::fs::symlink("/etc", out.path().join("etc")).unwrap();
        let found = collect_artifacts(out.path(), CAPS, &bounds()).unwrap();
        let paths: Vec<_> = found.iter().map(|a| a.path.as_str()).collect();
        assert_eq!(paths, ["bin", "sub/a.txt"]);
        assert_eq!(found[1].content.as_deref(), Some("hello"));
        assert_eq!(found[0].encoding, Some(FileEncoding::Base64));
        assert_eq!(
            found[1].sha256.as_deref(),
            Some("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        );
    }

    fn bounds() -> CollectBounds {
        CollectBounds::new(Arc::new(AtomicBool::new(false)))
    }

    #[test]
    fn a_sparse_file_hashes_like_its_dense_twin_without_reading_holes() {
        let out = tempfile::tempdir().unwrap();
        let mut dense = vec![0u8; 3 << 20];
        dense[(1 << 20)..(1 << 20) + 5].copy_from_slice(b"hello");
        std::fs::write(out.path().join("dense"), &dense).unwrap();
        let sparse = std::fs::File::create(out.path().join("sparse")).unwrap();
        sparse.set_len(3 << 20).unwrap();
        std::os::unix::fs::FileExt::write_at(&sparse, b"hello", 1 << 20).unwrap();
        let found = collect_artifacts(out.path(), CAPS, &bounds()).unwrap();
        assert_eq!(found[0].sha256, found[1].sha256);
        assert!(found[0].sha256.is_some());
    }

    #[test]
    fn past_the_budget_or_a_stop_files_are_listed_by_size_only() {
        let out = tempfile::tempdir().unwrap();
        std::fs::write(out.path().join("a"), vec![1u8; 4096]).unwrap();
        std::fs::write(out.path().join("b"), vec![2u8; 4096]).unwrap();
        let mut tight = bounds();
        tight.hash_bytes = 5000;
        let found = collect_artifacts(out.path(), CAPS, &tight).unwrap();
        assert!(found[0].sha256.is_some());
        assert_eq!((found[1].size, found[1].sha256.as_deref()), (4096, None));
        let stopped = bounds();
        stopped.stop.store(true, Ordering::Relaxed);
        let found = collect_artifacts(out.path(), CAPS, &stopped).unwrap();
        assert_eq!(found.len(), 2);
        assert!(found.iter().all(|a| a.sha256.is_none() && a.size == 4096));
    }
}
