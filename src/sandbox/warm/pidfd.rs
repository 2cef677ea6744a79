//! Waiting on and signalling processes through descriptors: a pidfd turns readable when its
//! process has exited, a socket when a message (or its end) arrived.

use std::os::fd::RawFd;

pub(super) fn kill(pidfd: RawFd, signal: libc::c_int) {
    // SAFETY: a signal through a pidfd cannot reach a recycled pid.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
}

/// True once the process behind `pidfd` has exited.
pub(super) fn exited(pidfd: RawFd) -> bool {
    poll_in(pidfd, 0)
}

pub(super) fn wait_readable(fd: RawFd) {
    while !poll_in(fd, -1) {}
}

fn poll_in(fd: RawFd, timeout: libc::c_int) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polling one descriptor we own.
    unsafe { libc::poll(&mut pfd, 1, timeout) };
    pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}
