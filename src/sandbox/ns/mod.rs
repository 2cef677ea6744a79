//! Namespaces: a user namespace so the job holds no capability on the host (and can build the
//! others without root), a network namespace for `network: "none"`, a mount namespace to mask
//! host Unix sockets and give a private /tmp, an IPC namespace, and optionally a PID namespace.
//!
//! A PID namespace only applies to children of the caller, so the process `spawn` forked (the
//! "relay") forks once more: a minimal init runs as pid 1 of the new namespace and forks the
//! job (pid 2); when the job exits the init exits and the kernel kills everything left inside,
//! `setsid` escapees included. The relay waits and exits the way the job did, so the core's
//! wait status and rusage still describe the job.//!
//! Enforcing is split by layer: `mounts` (the mount plan and its steps), `pid` (the PID
//! namespace's init and relay), the user maps, loopback and procfs here; `probe` finds what
//! this host allows, once, in a throwaway child.

mod mounts;
mod pid;
mod probe;

use super::sys::{self, check_int};
use std::io;

pub use mounts::{Keep, MountStep, cstring, plan_mounts};
pub use pid::fork_into_pid_namespace;
pub use probe::{Support, probe};

/// uid/gid maps that keep the caller's ids: the job sees the same owner on its files, and
/// an unprivileged caller may write such a map for itself.
pub struct UserMaps {
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
}

impl UserMaps {
    pub fn identity() -> UserMaps {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        UserMaps {
            uid_map: format!("{uid} {uid} 1\n").into_bytes(),
            gid_map: format!("{gid} {gid} 1\n").into_bytes(),
        }
    }

    /// Async-signal-safe: unshares the user namespace and writes the maps.
    pub fn enter(&self) -> io::Result<()> {
        // SAFETY: plain syscall.
        check_int(unsafe { libc::unshare(libc::CLONE_NEWUSER) })?;
        self.write_own()
    }

    /// Async-signal-safe: writes the maps of the user namespace the caller was just made in.
    pub fn write_own(&self) -> io::Result<()> {
        // An unprivileged process must give up setgroups before it may map its gid.
        sys::write_file(c"/proc/self/setgroups", b"deny")?;
        sys::write_file(c"/proc/self/uid_map", &self.uid_map)?;
        sys::write_file(c"/proc/self/gid_map", &self.gid_map)
    }
}
/// Async-signal-safe: brings up the loopback of the job's own network namespace, so test
/// servers a job starts on 127.0.0.1 work while the host's stay out of reach.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: a socket, two ioctls on a zeroed ifreq naming "lo", and a close.
    unsafe {
        let fd = check_int(libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
        ))?;
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        let mut result = check_int(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr));
        if result.is_ok() {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            result = check_int(libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr));
        }
        libc::close(fd);
        result.map(drop)
    }
}

/// Async-signal-safe: a procfs of the job's PID namespace, so /proc lists only the job.
pub fn mount_proc() -> io::Result<()> {
    sys::mount(
        Some(c"proc"),
        c"/proc",
        Some(c"proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
}
