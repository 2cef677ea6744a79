//! The PID namespace's init (a `CLONE_VM` child of the relay) and the relay that waits for
//! the job and exits the way it did.

use std::io;

/// Stack of the namespace's init, which shares the relay's memory and only waits.
const INIT_STACK: usize = 64 * 1024;

/// Async-signal-safe. Called after `unshare(CLONE_NEWPID)`: starts a minimal init in the new
/// namespace (pid 1), then forks the job (pid 2). Returns in the job; the calling process (the
/// relay) and the init never return.
///
/// The job is not pid 1 itself: the kernel drops every signal to a namespace's init that has
/// no handler, so as pid 1 `kill -SEGV $$` would do nothing and SIGTERM at a timeout or cancel
/// would be ignored until the SIGKILL after the grace period.
///
/// The init shares the relay's memory (`CLONE_VM`, its own small stack) instead of being a
/// fork of it: a fork copies the worker's page tables and tears them down again at exit, the
/// largest CPU cost of a job's start. The job is the relay's child (its parent pid reads 0
/// inside the namespace, as for any process whose parent lives outside it), so the relay has
/// its wait status first-hand; orphans inside still go to the init.
pub fn fork_into_pid_namespace() -> io::Result<()> {
    // SAFETY: every call below is async-signal-safe and uses only stack memory or the init's
    // stack mapped here.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        // The relay and the init must not die of the job's signals (SIGTERM to the group would
        // leave the core believing the job ended while it runs on); blocked now, restored in
        // the job.
        libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old);
        let fail = |old: &libc::sigset_t| {
            let error = io::Error::last_os_error();
            libc::sigprocmask(libc::SIG_SETMASK, old, std::ptr::null_mut());
            Err(error)
        };
        // The relay's own pidfd: readable once the relay has exited, which the init and the
        // job check after arming their parent-death signal (the relay may have died before).
        let relay_fd = libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0u32) as libc::c_int;
        if relay_fd < 0 {
            return fail(&old);
        }
        let stack = libc::mmap(
            std::ptr::null_mut(),
            INIT_STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        );
        if stack == libc::MAP_FAILED {
            return fail(&old);
        }
        let top = stack.cast::<u8>().add(INIT_STACK).cast::<libc::c_void>();
        let init_pid = libc::clone(
            init,
            top,
            libc::CLONE_VM | libc::SIGCHLD,
            relay_fd as isize as *mut libc::c_void,
        );
        if init_pid < 0 {
            return fail(&old);
        }
        let job = libc::fork();
        if job < 0 {
            libc::kill(init_pid, libc::SIGKILL);
            return fail(&old);
        }
        if job == 0 {
            // When the relay dies the worker has lost the job: it goes too.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            if gone(relay_fd) {
                libc::_exit(1);
            }
            libc::close(relay_fd);
            libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            return Ok(());
        }
        libc::prctl(libc::PR_SET_NAME, c"ocw-relay".as_ptr() as libc::c_ulong);
        relay(job, init_pid)
    }
}

/// Closes every descriptor from 3 up except `keep` (the spawn error pipe above all, or `spawn`
/// would block until the job ends).
unsafe fn close_all_but(keep: &mut [libc::c_int]) {
    keep.sort_unstable();
    let mut from = 3u32;
    for fd in keep.iter().map(|fd| *fd as u32) {
        if fd > from {
            // SAFETY: closing our own descriptors.
            unsafe { libc::syscall(libc::SYS_close_range, from, fd - 1, 0u32) };
        }
        from = from.max(fd + 1);
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, from, u32::MAX, 0u32) };
}

/// pid 1 of the job's namespace: reaps whatever is reparented to it until the relay, once the
/// job has ended, kills it, which makes the kernel kill everything left in the namespace
/// (`setsid` escapees included). Runs on its own stack in the relay's memory, with every
/// signal blocked (inherited), touching nothing but that stack (and, on a failed call, the
/// relay's errno, which the relay only reads after a failure of its own).
extern "C" fn init(relay_fd: *mut libc::c_void) -> libc::c_int {
    // SAFETY: async-signal-safe calls on our own fds and children.
    unsafe {
        // Dies with the relay, which then can no longer end the namespace itself.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        if gone(relay_fd as isize as libc::c_int) {
            libc::_exit(1);
        }
        libc::prctl(libc::PR_SET_NAME, c"ocw-init".as_ptr() as libc::c_ulong);
        close_all_but(&mut []);
        let mut chld: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut chld);
        libc::sigaddset(&mut chld, libc::SIGCHLD);
        let mut status = 0;
        // errno lives in the relay's thread-local storage, which this process shares: it is
        // never read here. Nothing left to reap (none exited, or no child at all) means
        // waiting for SIGCHLD, which stays pending while blocked, so no orphan's end is missed.
        loop {
            if libc::waitpid(-1, &mut status, libc::WNOHANG | libc::__WALL) <= 0 {
                libc::sigwaitinfo(&chld, std::ptr::null_mut());
            }
        }
    }
}

/// The relay: closes everything, waits for the job, ends its
/// namespace (killing the init) and exits as the job did (same code, or the same signal
/// re-raised) once the namespace is empty.
unsafe fn relay(job: libc::pid_t, init_pid: libc::pid_t) -> ! {
    // SAFETY: async-signal-safe calls on our own fds and children.
    unsafe {
        close_all_but(&mut []);
        let status = wait_for(job);
        libc::kill(init_pid, libc::SIGKILL);
        // Returns once the kernel has killed and reaped everything left inside.
        wait_for(init_pid);
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        let signal = libc::WTERMSIG(status);
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::kill(libc::getpid(), signal);
        libc::_exit(128 + signal)
    }
}

/// Async-signal-safe: true once the process behind `pidfd` has exited.
unsafe fn gone(pidfd: libc::c_int) -> bool {
    let mut pfd = libc::pollfd {
        fd: pidfd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polling our own descriptor, no wait.
    unsafe { libc::poll(&mut pfd, 1, 0) };
    pfd.revents & libc::POLLIN != 0
}

/// Async-signal-safe: the wait status of our child `pid`.
unsafe fn wait_for(pid: libc::pid_t) -> libc::c_int {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child into a stack variable.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if rc == pid {
            return status;
        }
        // SAFETY: reading errno.
        if rc < 0 && unsafe { *libc::__errno_location() } != libc::EINTR {
            // SAFETY: plain exit.
            unsafe { libc::_exit(125) };
        }
    }
}
