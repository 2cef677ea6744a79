//! The job's end of the egress proxy: a TCP listener made inside the job's own network
//! namespace (a socket belongs to the namespace it was created in, not to the process that
//! holds it) and handed to the worker over a socket pair before exec. The worker accepts on
//! it, so the proxy needs no forwarder process, no socket file in the sandbox, and nothing of
//! it outlives the job: closing the listener is the whole teardown.

use super::sys::check_int;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The parent's and the child's ends of the hand-over channel.
pub struct Channel {
    parent: OwnedFd,
    child: OwnedFd,
}

impl Channel {
    pub fn new() -> io::Result<Channel> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: socketpair fills a two-int array with new descriptors we own.
        check_int(unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        })?;
        // SAFETY: fresh descriptors from the kernel.
        Ok(unsafe {
            Channel {
                parent: OwnedFd::from_raw_fd(fds[0]),
                child: OwnedFd::from_raw_fd(fds[1]),
            }
        })
    }

    pub fn child_fd(&self) -> RawFd {
        self.child.as_raw_fd()
    }

    /// After spawn: the listener the child sent. The child sent it before exec (and before
    /// the PID namespace relay let `spawn` return), so it is already queued.
    pub fn receive(self) -> io::Result<std::net::TcpListener> {
        drop(self.child);
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut control = [0u64; 8];
        // SAFETY: a zeroed msghdr pointing at our buffers; recvmsg writes within their sizes.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control);
            let n = libc::recvmsg(
                self.parent.as_raw_fd(),
                &mut msg,
                libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
            );
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            if cmsg.is_null()
                || (*cmsg).cmsg_level != libc::SOL_SOCKET
                || (*cmsg).cmsg_type != libc::SCM_RIGHTS
            {
                return Err(io::Error::other("the job sent no listener"));
            }
            let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
            Ok(std::net::TcpListener::from_raw_fd(fd))
        }
    }
}

/// Async-signal-safe. In the child, inside its new network namespace with `lo` up: listens on
/// 127.0.0.1:`port` and sends the listener over `channel`, then closes its own copies.
pub fn hand_over(channel: RawFd, port: u16) -> io::Result<()> {
    // SAFETY: socket calls on stack memory; every fd made here is closed before returning.
    unsafe {
        let fd = check_int(libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
        ))?;
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_port = port.to_be();
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let mut result = check_int(libc::bind(
            fd,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ))
        .and_then(|_| check_int(libc::listen(fd, 128)));
        if result.is_ok() {
            result = send_fd(channel, fd);
        }
        libc::close(fd);
        libc::close(channel);
        result.map(drop)
    }
}

/// Async-signal-safe.
unsafe fn send_fd(channel: RawFd, fd: RawFd) -> io::Result<libc::c_int> {
    // SAFETY: a msghdr over stack buffers, sized with the CMSG macros.
    unsafe {
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut control = [0u64; 8];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        let n = libc::sendmsg(channel, &msg, libc::MSG_NOSIGNAL);
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(0)
        }
    }
}
