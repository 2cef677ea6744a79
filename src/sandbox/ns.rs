//! Namespaces: a user namespace so the job holds no capability on the host (and can build the
//! others without root), a network namespace for `network: "none"`, a mount namespace to mask
//! host Unix sockets and give a private /tmp, an IPC namespace, and optionally a PID namespace.
//!
//! A PID namespace only applies to children of the caller, so the process `spawn` forked (the
//! "relay") forks once more: a minimal init runs as pid 1 of the new namespace and forks the
//! job (pid 2); when the job exits the init exits and the kernel kills everything left inside,
//! `setsid` escapees included. The relay waits and exits the way the job did, so the core's
//! wait status and rusage still describe the job.

use super::sys::{self, check_int};
use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

/// A filesystem change made in the job's mount namespace before Landlock seals it.
pub enum MountStep {
    /// Stop our mounts from propagating back to the host.
    MakePrivate,
    /// Opens a kept path (see `Keep`) before any mask hides it.
    Open(usize),
    /// An empty tmpfs over a directory; `writable` grants the job write access inside it.
    Tmpfs {
        target: CString,
        options: CString,
        writable: bool,
    },
    /// Creates one prefix of a kept path inside a fresh tmpfs so the bind can land on it.
    Mkdir(CString),
    /// Puts a kept path back in place from the handle `Open` took.
    Bind(usize),
    /// Hides a file (no Landlock to do it) behind /dev/null.
    HideFile(CString),
    /// Binds a path over itself, making it a mount point (which cannot be renamed or removed)
    /// and, with `read_only`, unwritable whatever Landlock grants around it.
    BindSelf { target: CString, read_only: bool },
    /// An overlayfs over a directory; `layers` index the kept handles of the lower layers (top
    /// first), then the upper and the work directory, taken in the new namespace (overlayfs
    /// refuses a layer reached through a mount of another namespace).
    Overlay { target: CString, layers: Vec<usize> },
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
        Ok(Keep {
            path: cstring(path)?,
            fd: AtomicI32::new(-1),
        })
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
        // An unprivileged process must give up setgroups before it may map its gid.
        sys::write_file(c"/proc/self/setgroups", b"deny")?;
        sys::write_file(c"/proc/self/uid_map", &self.uid_map)?;
        sys::write_file(c"/proc/self/gid_map", &self.gid_map)
    }
}

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

/// What namespaces this host lets the worker create, found by trying them in a throwaway
/// child: configuration files (sysctls, AppArmor) do not tell the whole story.
#[derive(Debug, Clone)]
pub struct Support {
    pub user: Result<(), String>,
    pub mount: Result<(), String>,
    pub net: Result<(), String>,
    pub ipc: Result<(), String>,
    pub pid: Result<(), String>,
    pub proc_mount: Result<(), String>,
    pub landlock_enforced: Result<(), String>,
    pub seccomp_enforced: Result<(), String>,
}

impl Support {
    fn unknown() -> Support {
        let no = || Err("not probed".to_string());
        Support {
            user: no(),
            mount: no(),
            net: no(),
            ipc: no(),
            pid: no(),
            proc_mount: no(),
            landlock_enforced: no(),
            seccomp_enforced: no(),
        }
    }
}

const STEPS: usize = 8;
const NOT_TRIED: i32 = -1;

/// Runs every step in a forked child and reads back one errno per step (0 = worked).
pub fn probe(landlock_abi: Option<u32>, seccomp: Option<&super::seccomp::Filter>) -> Support {
    let maps = UserMaps::identity();
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let ruleset = landlock_abi.and_then(|abi| {
        super::landlock::Ruleset::new(
            super::landlock::Rights::for_abi(abi),
            super::landlock::Extras {
                deny_tcp: false,
                scope: false,
            },
        )
        .ok()
    });
    let mut pipe = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills a two-int array.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        let mut support = Support::unknown();
        support.user = Err(format!("probe pipe: {}", io::Error::last_os_error()));
        return support;
    }
    // SAFETY: the child only makes async-signal-safe calls on memory prepared above and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            let mut results = [NOT_TRIED; STEPS];
            probe_child(&mut results, &maps, root, ruleset.as_ref(), seccomp);
            let _ = sys::write_all(
                pipe[1],
                std::slice::from_raw_parts(
                    results.as_ptr().cast(),
                    std::mem::size_of_val(&results),
                ),
            );
            libc::_exit(0);
        }
    }
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(pipe[1]) };
    let mut results = [NOT_TRIED; STEPS];
    if pid > 0 {
        // SAFETY: reading into a buffer of the given size.
        unsafe {
            libc::read(
                pipe[0],
                results.as_mut_ptr().cast(),
                std::mem::size_of_val(&results),
            );
            let mut status = 0;
            while libc::waitpid(pid, &mut status, 0) < 0 && *libc::__errno_location() == libc::EINTR
            {
            }
        }
    }
    // SAFETY: closing our read end.
    unsafe { libc::close(pipe[0]) };
    let verdict = |step: usize, what: &str| -> Result<(), String> {
        match results[step] {
            0 => Ok(()),
            NOT_TRIED => Err(format!("{what}: not possible (an earlier step failed)")),
            errno => Err(format!("{what}: {}", io::Error::from_raw_os_error(errno))),
        }
    };
    Support {
        user: verdict(0, "unshare(CLONE_NEWUSER) and uid/gid maps"),
        mount: verdict(1, "unshare(CLONE_NEWNS) and tmpfs mount"),
        net: verdict(2, "unshare(CLONE_NEWNET)"),
        ipc: verdict(3, "unshare(CLONE_NEWIPC)"),
        pid: verdict(4, "unshare(CLONE_NEWPID) and fork"),
        proc_mount: verdict(5, "mounting a procfs for the PID namespace"),
        landlock_enforced: verdict(6, "Landlock restriction (checked by a denied open)"),
        seccomp_enforced: verdict(7, "seccomp filter (checked by a denied ptrace)"),
    }
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn code(result: io::Result<()>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(error) => error.raw_os_error().unwrap_or(libc::EIO),
    }
}

/// Async-signal-safe.
unsafe fn probe_child(
    results: &mut [i32; STEPS],
    maps: &UserMaps,
    root: bool,
    ruleset: Option<&super::landlock::Ruleset>,
    seccomp: Option<&super::seccomp::Filter>,
) {
    // SAFETY: async-signal-safe syscalls only.
    unsafe {
        results[0] = code(maps.enter());
        let privileged = results[0] == 0 || root;
        if privileged {
            results[1] = code(
                check_int(libc::unshare(libc::CLONE_NEWNS))
                    .and_then(|_| MountStep::MakePrivate.run(&[]))
                    .and_then(|_| {
                        sys::mount(
                            Some(c"tmpfs"),
                            c"/tmp",
                            Some(c"tmpfs"),
                            0,
                            Some(c"mode=1777"),
                        )
                    }),
            );
            results[2] = code(check_int(libc::unshare(libc::CLONE_NEWNET)).map(drop));
            results[3] = code(check_int(libc::unshare(libc::CLONE_NEWIPC)).map(drop));
            // The relay hands its pidfd to the init and the job (`fork_into_pid_namespace`).
            let pidfd = libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0u32);
            if pidfd < 0 {
                results[4] = errno();
            } else if libc::unshare(libc::CLONE_NEWPID) < 0 {
                libc::close(pidfd as libc::c_int);
                results[4] = errno();
            } else {
                libc::close(pidfd as libc::c_int);
                let pid = libc::fork();
                if pid < 0 {
                    results[4] = errno();
                } else if pid == 0 {
                    let rc = if results[1] == 0 {
                        code(mount_proc())
                    } else {
                        libc::EPERM
                    };
                    libc::_exit(rc);
                } else {
                    results[4] = 0;
                    let mut status = 0;
                    while libc::waitpid(pid, &mut status, 0) < 0 && errno() == libc::EINTR {}
                    results[5] = if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        libc::EIO
                    };
                }
            }
        }
        if let Some(ruleset) = ruleset {
            results[6] = code(
                sys::no_new_privs().and_then(|_| super::landlock::restrict_self(ruleset.raw_fd())),
            );
            if results[6] == 0 {
                // Nothing is granted: if this open succeeds, the kernel did not enforce.
                let fd = libc::open(c"/".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
                results[6] = if fd >= 0 { libc::ENOTSUP } else { 0 };
            }
        }
        if let Some(filter) = seccomp {
            results[7] = code(sys::no_new_privs().and_then(|_| filter.install()));
            if results[7] == 0 {
                let rc = libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
                results[7] = if rc == 0 { libc::ENOTSUP } else { 0 };
            }
        }
    }
}
