//! The job's mount namespace: the plan (masks, kept paths, hidden files, overlays) and the
//! async-signal-safe steps that carry it out in the child before Landlock seals it.

use crate::sandbox::sys::{self, check_int};
use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

/// A filesystem change made in the job's mount namespace before Landlock seals it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum MountStep {
    /// Stop our mounts from propagating back to the host.
    MakePrivate,
    /// Opens a kept path (see `Keep`) before any mask hides it.
    Open(usize),
    /// An empty tmpfs over a directory; `writable` grants the job write access inside it.
    Tmpfs {
        #[serde(with = "crate::sandbox::cbytes")]
        target: CString,
        #[serde(with = "crate::sandbox::cbytes")]
        options: CString,
        writable: bool,
    },
    /// Creates one prefix of a kept path inside a fresh tmpfs so the bind can land on it.
    Mkdir(#[serde(with = "crate::sandbox::cbytes")] CString),
    /// Puts a kept path back in place from the handle `Open` took.
    Bind(usize),
    /// Hides a file (no Landlock to do it) behind /dev/null.
    HideFile(#[serde(with = "crate::sandbox::cbytes")] CString),
    /// Binds a path over itself, making it a mount point (which cannot be renamed or removed)
    /// and, with `read_only`, unwritable whatever Landlock grants around it.
    BindSelf {
        #[serde(with = "crate::sandbox::cbytes")]
        target: CString,
        read_only: bool,
    },
    /// An overlayfs over a directory; `layers` index the kept handles of the lower layers (top
    /// first), then the upper and the work directory, taken in the new namespace (overlayfs
    /// refuses a layer reached through a mount of another namespace).
    Overlay {
        #[serde(with = "crate::sandbox::cbytes")]
        target: CString,
        layers: Vec<usize>,
    },
}

/// A path that lives under a masked directory and must stay visible (the session itself when
/// sessions live under /tmp or /run). The handle is taken in the child, after the mount
/// namespace exists: a bind source must be a mount of the caller's own namespace.
pub struct Keep {
    path: CString,
    fd: AtomicI32,
}

impl Keep {
    /// A handle taken by an `Open` step.
    pub fn new(path: &Path) -> io::Result<Keep> {
        Ok(Keep::from_cstring(cstring(path)?))
    }

    pub fn from_cstring(path: CString) -> Keep {
        Keep {
            path,
            fd: AtomicI32::new(-1),
        }
    }

    pub fn path(&self) -> &CStr {
        &self.path
    }
}

pub fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// The mount steps masking `masks` while keeping `keep` (paths that live under a mask) in
/// place.
pub fn plan_mounts(
    masks: &[(PathBuf, bool, String)],
    hidden_files: &[PathBuf],
    keep: &[PathBuf],
) -> io::Result<(Vec<MountStep>, Vec<Keep>)> {
    let mut steps = vec![MountStep::MakePrivate];
    let mut keeps: Vec<Keep> = Vec::new();
    let mut later = Vec::new();
    for (mask, writable, options) in masks {
        // Masking a directory that contains the job's own session (or is inside it) would hide
        // the session; such a mask is dropped rather than worked around.
        if keep.iter().any(|k| mask.starts_with(k)) {
            continue;
        }
        later.push(MountStep::Tmpfs {
            target: cstring(mask)?,
            options: CString::new(options.as_str())
                .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
            writable: *writable,
        });
        for path in keep.iter().filter(|k| k.starts_with(mask) && *k != mask) {
            let index = keeps.len();
            keeps.push(Keep {
                path: cstring(path)?,
                fd: AtomicI32::new(-1),
            });
            steps.push(MountStep::Open(index));
            let mut prefix = mask.clone();
            for component in path.strip_prefix(mask).unwrap_or(path).components() {
                prefix.push(component);
                later.push(MountStep::Mkdir(cstring(&prefix)?));
            }
            later.push(MountStep::Bind(index));
        }
    }
    steps.extend(later);
    for file in hidden_files {
        steps.push(MountStep::HideFile(cstring(file)?));
    }
    Ok((steps, keeps))
}

/// "/proc/self/fd/N" without allocating.
fn fd_path(fd: i32, buf: &mut [u8; 32]) -> &CStr {
    let prefix = b"/proc/self/fd/";
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 11];
    let mut n = fd.max(0) as u32;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[prefix.len() + i] = digits[len - 1 - i];
    }
    buf[prefix.len() + len] = 0;
    CStr::from_bytes_until_nul(&buf[..]).unwrap_or(c"/")
}

impl MountStep {
    /// Where the job may write inside what this step mounts (a writable tmpfs, an overlay
    /// whose upper is the job's): Landlock grants it by the mount, added after mounting.
    pub fn writable_target(&self) -> Option<&CStr> {
        match self {
            MountStep::Tmpfs {
                target,
                writable: true,
                ..
            }
            | MountStep::Overlay { target, .. } => Some(target),
            _ => None,
        }
    }

    /// Async-signal-safe.
    pub fn run(&self, keeps: &[Keep]) -> io::Result<()> {
        match self {
            MountStep::MakePrivate => {
                sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
            }
            MountStep::Open(index) => {
                let keep = &keeps[*index];
                // SAFETY: NUL-terminated path; O_PATH opens without reading.
                let fd = check_int(unsafe {
                    libc::open(keep.path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC)
                })?;
                keep.fd.store(fd, Ordering::Relaxed);
                Ok(())
            }
            MountStep::Tmpfs {
                target, options, ..
            } => sys::mount(
                Some(c"tmpfs"),
                target,
                Some(c"tmpfs"),
                libc::MS_NOSUID | libc::MS_NODEV,
                Some(options),
            ),
            MountStep::Mkdir(path) => {
                // SAFETY: NUL-terminated path.
                let rc = unsafe { libc::mkdir(path.as_ptr(), 0o755) };
                if rc < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            }
            MountStep::Bind(index) => {
                let keep = &keeps[*index];
                let fd = keep.fd.load(Ordering::Relaxed);
                let mut buf = [0u8; 32];
                let result = sys::mount(
                    Some(fd_path(fd, &mut buf)),
                    &keep.path,
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                );
                // SAFETY: closing the handle Open took.
                unsafe { libc::close(fd) };
                result
            }
            MountStep::HideFile(target) => {
                sys::mount(Some(c"/dev/null"), target, None, libc::MS_BIND, None)
            }
            MountStep::BindSelf { target, read_only } => {
                sys::mount(
                    Some(target),
                    target,
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                )?;
                if *read_only {
                    remount_read_only(target)?;
                }
                Ok(())
            }
            MountStep::Overlay { target, layers } => {
                let mut options = [0u8; 256];
                let mut len = 0;
                let lowers = layers.len().saturating_sub(2);
                for (n, index) in layers.iter().enumerate() {
                    let key = match n {
                        0 => ",lowerdir=",
                        n if n < lowers => ":",
                        n if n == lowers => ",upperdir=",
                        _ => ",workdir=",
                    };
                    let mut buf = [0u8; 32];
                    let path = fd_path(keeps[*index].fd.load(Ordering::Relaxed), &mut buf);
                    for part in [key.as_bytes(), path.to_bytes()] {
                        options[len..len + part.len()].copy_from_slice(part);
                        len += part.len();
                    }
                }
                let tail = b",userxattr\0";
                options[len..len + tail.len()].copy_from_slice(tail);
                let options = CStr::from_bytes_until_nul(&options[1..]).unwrap_or(c"");
                let result = sys::mount(
                    Some(c"overlay"),
                    target,
                    Some(c"overlay"),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    Some(options),
                );
                for index in layers {
                    // SAFETY: closing the handles Open took.
                    unsafe { libc::close(keeps[*index].fd.load(Ordering::Relaxed)) };
                }
                result
            }
        }
    }
}

/// Async-signal-safe. In a user namespace a remount must repeat the flags the mount inherited
/// (nosuid, nodev, noexec, atime) or the kernel refuses it: they are read back with statfs.
fn remount_read_only(target: &CStr) -> io::Result<()> {
    // SAFETY: statvfs fills a zeroed struct for a NUL-terminated path (glibc takes the flags
    // from the statfs syscall on any kernel since 2.6.36).
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    check_int(unsafe { libc::statvfs(target.as_ptr(), &mut stat) })?;
    let have = stat.f_flag as libc::c_ulong;
    let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
    for (st, ms) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if have & st != 0 {
            flags |= ms;
        }
    }
    sys::mount(None, target, None, flags, None)
}
