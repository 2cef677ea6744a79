//! COLLECT: the files a job left in its output dir. Directories are walked with openat and
//! O_NOFOLLOW, so a symlink (to /etc/shadow, say) is never followed, only reported by name.

use crate::protocol::{Artifact, FileEncoding};
use base64::Engine;
use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

#[derive(Debug, Clone, Copy)]
pub struct ArtifactCaps {
    pub max_files: usize,
    pub inline_bytes: u64,
    pub total_inline_bytes: u64,
}

pub fn collect_artifacts(output: &Path, caps: ArtifactCaps) -> std::io::Result<Vec<Artifact>> {
    let root = nix::fcntl::open(
        output,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut walker = Walker {
        caps,
        inline_left: caps.total_inline_bytes,
        found: Vec::new(),
    };
    walker.walk(root, String::new(), 0)?;
    walker.found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(walker.found)
}

struct Walker {
    caps: ArtifactCaps,
    inline_left: u64,
    found: Vec<Artifact>,
}

const MAX_DEPTH: usize = 64;

impl Walker {
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
        let size = nix::sys::stat::fstat(file.as_fd())?.st_size as u64;
        let inline = size <= self.caps.inline_bytes && size <= self.inline_left;
        let mut hasher = Sha256::new();
        let mut kept = Vec::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            if inline && (kept.len() + read) as u64 <= self.caps.inline_bytes {
                kept.extend_from_slice(&buffer[..read]);
            }
        }
        let (content, encoding) = if inline && kept.len() as u64 == size {
            self.inline_left -= size;
            match String::from_utf8(kept) {
                Ok(text) => (Some(text), Some(FileEncoding::Utf8)),
                Err(bytes) => (
                    Some(base64::engine::general_purpose::STANDARD.encode(bytes.as_bytes())),
                    Some(FileEncoding::Base64),
                ),
            }
        } else {
            (None, None)
        };
        Ok(Artifact {
            path,
            size,
            sha256: hex(&hasher.finalize()),
            content,
            encoding,
        })
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
    fn lists_files_recursively_and_skips_symlinks() {
        let out = tempfile::tempdir().unwrap();
        std::fs::create_dir(out.path().join("sub")).unwrap();
        std::fs::write(out.path().join("sub/a.txt"), "hello").unwrap();
        std::fs::write(out.path().join("bin"), [0u8, 159, 146, 150]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", out.path().join("passwd")).unwrap();
        std::os::unix::fs::symlink("/etc", out.path().join("etc")).unwrap();
        let found = collect_artifacts(out.path(), CAPS).unwrap();
        let paths: Vec<_> = found.iter().map(|a| a.path.as_str()).collect();
        assert_eq!(paths, ["bin", "sub/a.txt"]);
        assert_eq!(found[1].content.as_deref(), Some("hello"));
        assert_eq!(found[0].encoding, Some(FileEncoding::Base64));
        assert_eq!(
            found[1].sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }
}
