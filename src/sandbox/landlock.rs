//! Landlock through its three raw system calls. The ruleset is built in the parent (opening
//! every path is the expensive part); the child only adds rules for mounts it made itself and
//! calls `landlock_restrict_self`. Raw calls instead of a best-effort wrapper mean a restriction
//! either applies in full or fails loudly: nothing is silently dropped.

use super::sys::{check, check_int};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

const SYS_CREATE_RULESET: libc::c_long = 444;
const SYS_ADD_RULE: libc::c_long = 445;
const SYS_RESTRICT_SELF: libc::c_long = 446;
const CREATE_RULESET_VERSION: u32 = 1 << 0;
const RULE_PATH_BENEATH: libc::c_int = 1;

pub const EXECUTE: u64 = 1 << 0;
pub const WRITE_FILE: u64 = 1 << 1;
pub const READ_FILE: u64 = 1 << 2;
pub const READ_DIR: u64 = 1 << 3;
const DIR_WRITE_V1: u64 = (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 9);
const DIR_WRITE_V1_REST: u64 = (1 << 10) | (1 << 11) | (1 << 12);
const REFER: u64 = 1 << 13;
pub const TRUNCATE: u64 = 1 << 14;
pub const IOCTL_DEV: u64 = 1 << 15;
const NET_BIND_TCP: u64 = 1 << 0;
const NET_CONNECT_TCP: u64 = 1 << 1;
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// The Landlock ABI version of the running kernel, or why there is none.
pub fn probe_abi() -> Result<u32, String> {
    // SAFETY: the documented version query takes a NULL attribute.
    let rc = unsafe {
        libc::syscall(
            SYS_CREATE_RULESET,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if rc > 0 {
        return Ok(rc as u32);
    }
    let error = io::Error::last_os_error();
    Err(match error.raw_os_error() {
        Some(libc::ENOSYS) => {
            "the kernel has no Landlock (built without CONFIG_SECURITY_LANDLOCK)".into()
        }
        Some(libc::EOPNOTSUPP) => {
            "Landlock is built in but not enabled (add `landlock` to the `lsm=` boot parameter)"
                .into()
        }
        _ => format!("landlock_create_ruleset: {error}"),
    })
}

/// Access rights by ABI: each version handles more, and a right the kernel does not know makes
/// ruleset creation fail, so masks are cut to the probed ABI.
#[derive(Debug, Clone, Copy)]
pub struct Rights {
    pub abi: u32,
    pub all_fs: u64,
    pub read: u64,
    pub file_rw: u64,
}

impl Rights {
    pub fn for_abi(abi: u32) -> Rights {
        let mut all_fs =
            EXECUTE | WRITE_FILE | READ_FILE | READ_DIR | DIR_WRITE_V1 | DIR_WRITE_V1_REST;
        if abi >= 2 {
            all_fs |= REFER;
        }
        if abi >= 3 {
            all_fs |= TRUNCATE;
        }
        if abi >= 5 {
            all_fs |= IOCTL_DEV;
        }
        Rights {
            abi,
            all_fs,
            read: EXECUTE | READ_FILE | READ_DIR,
            file_rw: all_fs & (EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV),
        }
    }

    /// Rights that may be granted on a non-directory: the kernel rejects directory rights there.
    pub fn for_file(&self, access: u64) -> u64 {
        access & self.file_rw
    }
}

/// What a ruleset restricts besides the filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extras {
    /// Deny TCP bind and connect everywhere (the fallback when there is no network namespace).
    pub deny_tcp: bool,
    /// Signals and abstract Unix sockets cannot reach processes outside the job (ABI 6).
    pub scope: bool,
}

pub struct Ruleset {
    fd: OwnedFd,
    rights: Rights,
}

impl Ruleset {
    pub fn new(rights: Rights, extras: Extras) -> io::Result<Ruleset> {
        let attr = RulesetAttr {
            handled_access_fs: rights.all_fs,
            handled_access_net: if extras.deny_tcp && rights.abi >= 4 {
                NET_BIND_TCP | NET_CONNECT_TCP
            } else {
                0
            },
            scoped: if extras.scope && rights.abi >= 6 {
                SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
            } else {
                0
            },
        };
        // SAFETY: attr is a valid struct of the given size; the kernel returns a new fd.
        let fd = check(unsafe {
            libc::syscall(
                SYS_CREATE_RULESET,
                &attr as *const RulesetAttr,
                std::mem::size_of::<RulesetAttr>(),
                0u32,
            )
        })?;
        // SAFETY: the kernel just handed us this fd (created with O_CLOEXEC).
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        Ok(Ruleset { fd, rights })
    }

    pub fn rights(&self) -> Rights {
        self.rights
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Grants `access` beneath `path`; directory rights are dropped for non-directories.
    /// A path that does not exist is no error: there is nothing to grant.
    pub fn allow(&self, path: &Path, access: u64) -> io::Result<()> {
        let file = match std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(path)
        {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        let is_dir = file.metadata().map(|m| m.is_dir()).unwrap_or(false);
        let access = if is_dir {
            access
        } else {
            self.rights.for_file(access)
        };
        add_rule(self.raw_fd(), file.as_raw_fd(), access & self.rights.all_fs)
    }
}

use std::os::unix::fs::OpenOptionsExt;

/// Async-signal-safe: used in the child for mounts it created after fork.
pub fn add_rule(ruleset: RawFd, path_fd: RawFd, access: u64) -> io::Result<()> {
    if access == 0 {
        return Ok(());
    }
    let attr = PathBeneathAttr {
        allowed_access: access,
        parent_fd: path_fd,
    };
    // SAFETY: attr is valid for the call; both fds are open.
    check(unsafe {
        libc::syscall(
            SYS_ADD_RULE,
            ruleset,
            RULE_PATH_BENEATH,
            &attr as *const PathBeneathAttr,
            0u32,
        )
    })
    .map(drop)
}

/// Async-signal-safe: opens `path` (a mount the child just made) and grants `access` under it.
pub fn add_rule_at(ruleset: RawFd, path: &CStr, access: u64) -> io::Result<()> {
    // SAFETY: NUL-terminated path; O_PATH opens without reading.
    let fd = check_int(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_PATH | libc::O_CLOEXEC | libc::O_DIRECTORY,
        )
    })?;
    let result = add_rule(ruleset, fd, access);
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(fd) };
    result
}

/// Async-signal-safe. Requires no_new_privs (or CAP_SYS_ADMIN), set by the caller.
pub fn restrict_self(ruleset: RawFd) -> io::Result<()> {
    // SAFETY: plain syscall on an open ruleset fd.
    check(unsafe { libc::syscall(SYS_RESTRICT_SELF, ruleset, 0u32) }).map(drop)
}
