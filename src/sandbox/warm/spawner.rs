//! The spawner: the worker's binary re-executed in a tiny mode, single-threaded, with a small
//! address space. It makes every slot, so the worker itself never forks for a warm job: a fork
//! of the worker copies its page tables and tears them down again (the largest CPU cost of a
//! cold start), a clone of the spawner copies almost nothing.

use super::slot;
use super::wire::{self, MakeSlot, SlotMade};
use crate::sandbox::ns::UserMaps;
use nix::sys::socket::MsgFlags;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The argument that selects this mode; never shown to users.
pub const SPAWNER_ARG: &str = "__ocw-spawner";
/// The descriptor the worker puts the control socket on.
pub const CONTROL_FD: RawFd = 3;
/// The first message: this binary is the spawner the worker meant to start.
pub const HELLO: &str = "opencode-worker sandbox spawner";
/// The worker's pid, so the spawner can tell it died before the death signal was armed.
pub const PARENT_ENV: &str = "OCW_SPAWNER_PARENT";

/// Runs the spawner until the worker closes the control socket or dies; never returns.
pub fn main() -> ! {
    // SAFETY: process-wide set-up of a single-threaded process before anything else runs.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        let parent = std::env::var(PARENT_ENV)
            .ok()
            .and_then(|p| p.parse::<libc::pid_t>().ok());
        if parent != Some(libc::getppid()) {
            libc::_exit(1);
        }
        // Out of the worker's process group and terminal: a Ctrl-C meant for the worker must
        // not take the slots down under running jobs; the death signal still follows it.
        libc::setsid();
        // Slots are reaped by the kernel: the worker follows each through its pidfd.
        libc::signal(libc::SIGCHLD, libc::SIG_IGN);
        libc::prctl(libc::PR_SET_NAME, c"ocw-spawner".as_ptr() as libc::c_ulong);
    }
    // SAFETY: the worker passed the control socket on this descriptor.
    let control = unsafe { OwnedFd::from_raw_fd(CONTROL_FD) };
    // SAFETY: pidfd_open of ourselves; slots poll it to see we died before their death
    // signal was armed.
    let own = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0u32) } as RawFd;
    let maps = UserMaps::identity();
    if wire::send(control.as_raw_fd(), &HELLO, &[]).is_err() {
        std::process::exit(0);
    }
    let mut buffer = Vec::new();
    loop {
        let received =
            wire::receive::<MakeSlot>(control.as_raw_fd(), &mut buffer, MsgFlags::empty());
        let Ok(Some((request, leaf))) = received else {
            std::process::exit(0)
        };
        let answer = make_slot(&request, own, &maps, &leaf);
        drop(leaf);
        let sent = match answer {
            Ok((pid, socket, pidfd)) => wire::send(
                control.as_raw_fd(),
                &SlotMade::Made { pid },
                &[socket.as_raw_fd(), pidfd.as_raw_fd()],
            ),
            Err(error) => wire::send(
                control.as_raw_fd(),
                &SlotMade::Failed {
                    errno: error.raw_os_error().unwrap_or(libc::EIO),
                },
                &[],
            ),
        };
        if sent.is_err() {
            std::process::exit(0);
        }
    }
}

/// Clones a slot into new namespaces; returns its pid, the worker's end of its socket and
/// its pidfd.
fn make_slot(
    request: &MakeSlot,
    own_pidfd: RawFd,
    maps: &UserMaps,
    leaf: &[OwnedFd],
) -> std::io::Result<(libc::pid_t, OwnedFd, OwnedFd)> {
    let namespaces = request.namespaces;
    let (worker_end, slot_end) = wire::pair()?;
    // No namespace at all (profile `none`): a plain child, which still saves the job a fork of
    // the worker and a cgroup migration on its path.
    let user = if namespaces == 0 {
        0
    } else {
        libc::CLONE_NEWUSER
    };
    let flags = user | namespaces | libc::CLONE_PIDFD | libc::SIGCHLD;
    // The pidfd comes with the clone: SIGCHLD is ignored, so a slot that fails at once is
    // reaped by the kernel, and a pidfd opened afterwards could name a recycled pid.
    let mut pidfd: libc::c_int = -1;
    // SAFETY: a fork-like clone (no new stack) of a single-threaded process; the child only
    // runs `slot::run`, which never returns. With CLONE_PIDFD the third argument is where
    // the kernel stores the pidfd.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags as libc::c_ulong,
            0usize,
            &raw mut pidfd,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        drop(worker_end);
        let leaf: Vec<RawFd> = leaf.iter().map(AsRawFd::as_raw_fd).collect();
        slot::run(slot_end, own_pidfd, maps, request, &leaf);
    }
    drop(slot_end);
    // SAFETY: the descriptor the kernel stored for us.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    // The pidfd is close-on-exec by the kernel's own rule for CLONE_PIDFD.
    Ok((pid as libc::pid_t, worker_end, pidfd))
}
