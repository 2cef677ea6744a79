//! The messages between the worker, the spawner and a slot: one JSON document per
//! `SOCK_SEQPACKET` datagram (message boundaries kept by the kernel, no framing of our own),
//! with descriptors riding along as `SCM_RIGHTS`.

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Larger than any message we send: a job's command line and environment are bounded by the
/// plan well below this, and a start that does not fit goes cold instead.
pub const MAX_MESSAGE: usize = 192 * 1024;
/// Descriptors one message may carry: stdio, the Landlock ruleset, the egress channel and a
/// cgroup leaf per hierarchy.
const MAX_FDS: usize = 12;

/// Worker to spawner, with the `cgroup.procs` of the leaf the slot joins.
#[derive(Debug, Serialize, Deserialize)]
pub struct MakeSlot {
    /// `CLONE_NEW*` flags besides the user namespace every slot has.
    pub namespaces: libc::c_int,
    /// Mount the slot's own /proc ahead (a PID and mount namespace, on a host where a job's
    /// /proc can be mounted).
    pub proc_mount: bool,
}

/// Spawner to worker, with the slot's socket and its pidfd.
#[derive(Debug, Serialize, Deserialize)]
pub enum SlotMade {
    Made { pid: libc::pid_t },
    Failed { errno: i32 },
}

/// Worker to slot.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToSlot {
    /// Descriptors: stdin, stdout, stderr, then the ruleset (if `landlock`), the egress
    /// channel (if `egress_port`), then `cgroup_procs` of them.
    Start(Box<JobStart>),
    /// Signal the job and its process group (never anything after the job was reaped).
    Signal { signal: libc::c_int },
}

/// `ToSlot::Start` as the worker sends it, without giving up its `JobStart`.
#[derive(Serialize)]
#[serde(rename = "ToSlot")]
pub enum StartRef<'a> {
    Start(&'a JobStart),
}

/// Slot to worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromSlot {
    /// The namespaces exist and the slot waits for its job.
    Ready,
    /// Carries the job's pidfd.
    Started,
    /// The job never ran: `errno` of the step that failed (exec's own, or the sandbox's).
    Failed { errno: i32 },
    /// The job ended and was reaped; the slot exits next, which ends its namespaces.
    Exited {
        status: libc::c_int,
        user_us: u64,
        system_us: u64,
        max_rss_kb: u64,
    },
}

/// Everything a slot needs to run one job: the mount steps that remain, the process set-up
/// and the exec.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct JobStart {
    #[serde(with = "crate::sandbox::cbytes::list")]
    pub argv: Vec<CString>,
    /// `KEY=value` entries.
    #[serde(with = "crate::sandbox::cbytes::list")]
    pub env: Vec<CString>,
    #[serde(with = "crate::sandbox::cbytes")]
    pub cwd: CString,
    /// (resource, soft, hard).
    pub rlimits: Vec<(u32, u64, u64)>,
    pub cpu_set: Option<Vec<usize>>,
    pub mounts: Vec<super::super::ns::MountStep>,
    #[serde(with = "crate::sandbox::cbytes::list")]
    pub keeps: Vec<CString>,
    pub proc_mount: bool,
    pub nproc: Option<u64>,
    pub data: Option<u64>,
    /// With Landlock: the rights the slot grants on its own writable mounts and on /proc.
    pub landlock: Option<(u64, u64)>,
    /// With seccomp: whether IP sockets stay allowed.
    pub seccomp: Option<bool>,
    pub egress_port: Option<u16>,
    pub cgroup_procs: usize,
}

pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)
}

pub fn send<T: Serialize>(socket: RawFd, message: &T, fds: &[RawFd]) -> io::Result<()> {
    let bytes = serde_json::to_vec(message).map_err(io::Error::other)?;
    if bytes.len() > MAX_MESSAGE {
        return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
    }
    let iov = [IoSlice::new(&bytes)];
    let rights = [ControlMessage::ScmRights(fds)];
    let control: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    loop {
        match sendmsg::<()>(socket, &iov, control, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(error) => return Err(error.into()),
        }
    }
}

/// One message and the descriptors it carried (close-on-exec). `Ok(None)` at end of stream.
pub fn receive<T: for<'de> Deserialize<'de>>(
    socket: RawFd,
    buffer: &mut Vec<u8>,
    flags: MsgFlags,
) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
    // The datagram's real size first: a buffer of the largest size would be zeroed and
    // faulted in for every message (in a slot, charged to the job's cgroup).
    let size = loop {
        // SAFETY: a zero-length peek writes nothing.
        let n = unsafe {
            libc::recv(
                socket,
                std::ptr::null_mut(),
                0,
                (flags | MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC).bits(),
            )
        };
        if n >= 0 {
            break n as usize;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    };
    buffer.resize(size.clamp(1, MAX_MESSAGE), 0);
    let mut control = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (len, fds) = loop {
        let mut iov = [IoSliceMut::new(buffer)];
        match recvmsg::<()>(
            socket,
            &mut iov,
            Some(&mut control),
            flags | MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut fds = Vec::new();
                for cmsg in msg.cmsgs().map_err(io::Error::from)? {
                    if let ControlMessageOwned::ScmRights(received) = cmsg {
                        // SAFETY: descriptors the kernel just installed for us.
                        fds.extend(
                            received
                                .into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
                break (msg.bytes, fds);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(error) => return Err(error.into()),
        }
    };
    if len == 0 {
        return Ok(None);
    }
    let message = serde_json::from_slice(&buffer[..len]).map_err(io::Error::other)?;
    Ok(Some((message, fds)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    #[test]
    fn a_message_arrives_whole_with_its_descriptors_and_close_ends_the_stream() {
        let (a, b) = pair().unwrap();
        let (mut read, write) = std::io::pipe().unwrap();
        let start = JobStart {
            argv: vec![
                CString::new("/bin/echo").unwrap(),
                CString::new("é\u{1}x").unwrap(),
            ],
            cgroup_procs: 2,
            ..JobStart::default()
        };
        send(
            a.as_raw_fd(),
            &StartRef::Start(&start),
            &[write.as_raw_fd()],
        )
        .unwrap();
        drop(write);
        let mut buffer = Vec::new();
        let (message, fds) = receive::<ToSlot>(b.as_raw_fd(), &mut buffer, MsgFlags::empty())
            .unwrap()
            .unwrap();
        let ToSlot::Start(received) = message else {
            panic!("not a start: {message:?}");
        };
        assert_eq!(received.argv, start.argv);
        assert_eq!(received.cgroup_procs, 2);
        assert_eq!(fds.len(), 1);
        let mut passed = std::fs::File::from(fds.into_iter().next().unwrap());
        passed.write_all(b"through").unwrap();
        drop(passed);
        let mut text = String::new();
        read.read_to_string(&mut text).unwrap();
        assert_eq!(text, "through");
        drop(a);
        assert!(
            receive::<ToSlot>(b.as_raw_fd(), &mut buffer, MsgFlags::empty())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_message_larger_than_the_limit_is_refused_before_sending() {
        let (a, _b) = pair().unwrap();
        let start = JobStart {
            env: vec![CString::new(vec![b'x'; MAX_MESSAGE]).unwrap()],
            ..JobStart::default()
        };
        let error = send(a.as_raw_fd(), &StartRef::Start(&start), &[]).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EMSGSIZE));
    }
}
