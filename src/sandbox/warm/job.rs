//! The worker's handle on a job running in a slot: it is the slot's child, not the worker's,
//! so its end, its wait status and its resource use come from the slot over the socket, and
//! the slot's exit (its pidfd turning readable) says its namespaces are empty.

use super::pidfd;
use super::pool::Slot;
use super::wire::{self, FromSlot, JobStart, ToSlot};
use nix::sys::socket::MsgFlags;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Mutex;
use tokio::io::unix::AsyncFd;

/// How the job ended, as the slot's `wait4` saw it.
#[derive(Debug, Clone, Copy)]
pub struct SlotExit {
    /// A wait status; after a lost slot, killed by SIGKILL.
    pub status: libc::c_int,
    pub user_us: u64,
    pub system_us: u64,
    pub max_rss_kb: u64,
    /// The slot reported it after emptying the namespace itself; otherwise (the slot was
    /// killed) the namespace is only known empty once the slot is gone.
    emptied: bool,
}

pub struct WarmJob {
    socket: AsyncFd<OwnedFd>,
    slot_pidfd: OwnedFd,
    job_pidfd: OwnedFd,
    exit: Mutex<Option<SlotExit>>,
    /// The slot is pid 1 of the job's PID namespace: its report comes after it killed and
    /// reaped everything in there.
    pid_namespace: bool,
    /// Counts the job as running for the pool's sizing until dropped.
    _active: super::pool::Active,
}

/// Starts the job in `slot`. `fds`: stdin, stdout, stderr, then what `start` announces.
pub fn launch(
    slot: Slot,
    start: &JobStart,
    fds: &[RawFd],
    pid_namespace: bool,
) -> io::Result<WarmJob> {
    let socket = slot.socket.as_raw_fd();
    wire::send(socket, &wire::StartRef::Start(start), fds)?;
    let mut buffer = Vec::new();
    let job_pidfd = match wire::receive::<FromSlot>(socket, &mut buffer, MsgFlags::empty())? {
        Some((FromSlot::Started, mut fds)) if fds.len() == 1 => fds.remove(0),
        Some((FromSlot::Failed { errno }, _)) => return Err(io::Error::from_raw_os_error(errno)),
        _ => {
            return Err(io::Error::other(
                "the prepared sandbox ended before the job started",
            ));
        }
    };
    nix::fcntl::fcntl(
        &slot.socket,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )?;
    let super::pool::Slot {
        socket: slot_socket,
        pidfd: slot_pidfd,
        active,
        ..
    } = slot;
    Ok(WarmJob {
        // SAFETY: the socket stays open and unchanged for the AsyncFd's whole life.
        socket: unsafe { AsyncFd::register(slot_socket) }?,
        slot_pidfd,
        job_pidfd,
        exit: Mutex::new(None),
        pid_namespace,
        _active: active,
    })
}

impl WarmJob {
    /// The job's pid as this worker sees it, read when asked (only logs ask): 0 once the job
    /// has ended and the slot reaped it.
    pub fn pid(&self) -> libc::pid_t {
        pid_of(&self.job_pidfd).unwrap_or(0)
    }

    pub fn job_pidfd(&self) -> RawFd {
        self.job_pidfd.as_raw_fd()
    }

    /// Resolves when the job has ended. Cancel-safe: the report is stored the moment it is
    /// read, with no await in between.
    pub async fn exited(&self) -> io::Result<()> {
        loop {
            if crate::sync::lock(&self.exit).is_some() {
                return Ok(());
            }
            let mut guard = self.socket.readable().await?;
            match guard.try_io(|socket| self.take_report(socket.as_raw_fd())) {
                Ok(result) => result?,
                Err(_would_block) => continue,
            }
        }
    }

    /// Reads what the slot sent; a slot gone without a report lost its job to a kill.
    fn take_report(&self, socket: RawFd) -> io::Result<()> {
        let mut buffer = Vec::new();
        let report = match wire::receive::<FromSlot>(socket, &mut buffer, MsgFlags::MSG_DONTWAIT) {
            Ok(Some((
                FromSlot::Exited {
                    status,
                    user_us,
                    system_us,
                    max_rss_kb,
                },
                _,
            ))) => SlotExit {
                status,
                user_us,
                system_us,
                max_rss_kb,
                emptied: true,
            },
            Ok(Some(_)) => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Err(error),
            Ok(None) | Err(_) => SlotExit {
                status: libc::SIGKILL,
                user_us: 0,
                system_us: 0,
                max_rss_kb: 0,
                emptied: false,
            },
        };
        crate::sync::lock(&self.exit).get_or_insert(report);
        Ok(())
    }

    /// True once the slot reported the job's end from inside its own PID namespace, which it
    /// had emptied first: no process of the job is left anywhere, so there is nothing to
    /// kill, and the slot's own exit (its namespaces' teardown) is nobody's wait.
    pub fn nothing_left(&self) -> bool {
        self.pid_namespace && crate::sync::lock(&self.exit).is_some_and(|e| e.emptied)
    }

    /// `signal` to the job and its process group, through the slot, which alone knows the
    /// job is not reaped yet. SIGKILL also goes straight to the job's pidfd.
    pub fn signal(&self, signal: libc::c_int) {
        if signal == libc::SIGKILL {
            pidfd::kill(self.job_pidfd.as_raw_fd(), signal);
        }
        let _ = wire::send(
            self.socket.get_ref().as_raw_fd(),
            &ToSlot::Signal { signal },
            &[],
        );
    }

    /// Kills the slot itself, which takes everything in its namespaces down.
    pub fn kill_slot(&self) {
        pidfd::kill(self.slot_pidfd.as_raw_fd(), libc::SIGKILL);
    }

    /// Blocks until the job's end is known and nothing of it is left in its namespace.
    /// Call after `exited` resolved or after a kill.
    pub fn reap(&self) -> io::Result<SlotExit> {
        let socket = self.socket.get_ref().as_raw_fd();
        while crate::sync::lock(&self.exit).is_none() {
            pidfd::wait_readable(socket);
            match self.take_report(socket) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                other => other?,
            }
        }
        let exit = crate::sync::lock(&self.exit).expect("stored above");
        if !exit.emptied {
            pidfd::wait_readable(self.slot_pidfd.as_raw_fd());
        }
        Ok(exit)
    }
}

impl Drop for WarmJob {
    fn drop(&mut self) {
        // The slot exits on its own right after its report; waiting for its namespaces'
        // teardown (a few hundred microseconds, an RCU grace period among them) would only
        // delay the answer.
        if !self.nothing_left() && !pidfd::exited(self.slot_pidfd.as_raw_fd()) {
            self.kill_slot();
            pidfd::wait_readable(self.slot_pidfd.as_raw_fd());
        }
    }
}

/// The pid behind a pidfd in this process's PID namespace (its fdinfo says it).
fn pid_of(pidfd: &OwnedFd) -> io::Result<libc::pid_t> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd()))?;
    info.lines()
        .find_map(|line| line.strip_prefix("Pid:"))
        .and_then(|pid| pid.trim().parse().ok())
        .filter(|pid| *pid > 0)
        .ok_or_else(|| io::Error::other("the job's pidfd names no process"))
}
