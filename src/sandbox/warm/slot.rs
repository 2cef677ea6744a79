//! A slot: pid 1 of fresh user, mount, IPC, PID and (optionally) network namespaces, made
//! ahead by the spawner. It waits for one job, finishes that job's mounts in its own mount
//! namespace, forks the job (pid 2), reports how it ended and exits, which makes the kernel
//! kill whatever is left inside and tear the namespaces down. A slot never serves a second
//! job: nothing of one job can be found by the next.
//!
//! Everything a job inherits from the slot is set here: default signal dispositions, an empty
//! signal mask, no descriptor but its stdio.

use super::wire::{self, FromSlot, JobStart, MakeSlot, ToSlot};
use crate::sandbox::landlock;
use crate::sandbox::ns::{self, Keep, MountStep, UserMaps};
use crate::sandbox::seccomp::Filter;
use crate::sandbox::sys;
use nix::sys::socket::MsgFlags;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};

/// The slot's life; never returns.
pub fn run(
    socket: OwnedFd,
    spawner_pidfd: RawFd,
    maps: &UserMaps,
    request: &MakeSlot,
    leaf: &[RawFd],
) -> ! {
    let namespaces = request.namespaces;
    // SAFETY: set-up of a fresh single-threaded process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        if super::pidfd::exited(spawner_pidfd) {
            libc::_exit(1);
        }
        libc::close(spawner_pidfd);
        // Into the job's cgroup leaf now, off the job's path: the job inherits it at fork.
        for fd in leaf {
            if sys::write_all(*fd, b"0").is_err() {
                libc::_exit(1);
            }
        }
        // The spawner's control socket and anything else it held stay out of the slot.
        let keep = socket.as_raw_fd() as libc::c_uint;
        libc::syscall(libc::SYS_close_range, 3u32, keep - 1, 0u32);
        libc::syscall(libc::SYS_close_range, keep + 1, u32::MAX, 0u32);
        libc::prctl(libc::PR_SET_NAME, c"ocw-slot".as_ptr() as libc::c_ulong);
        // The spawner ignores SIGCHLD and the Rust runtime ignores SIGPIPE; a job must start
        // with every disposition at its default, as `std::process::Command` gives it.
        for signal in 1..libc::SIGRTMIN() {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
    }
    let fd = socket.as_raw_fd();
    let ready = if namespaces == 0 {
        Ok(())
    } else {
        maps.write_own()
    }
    .and_then(|()| {
        if namespaces & libc::CLONE_NEWNET != 0 {
            ns::loopback_up()
        } else {
            Ok(())
        }
    });
    // The slot's own /proc (its PID namespace's) does not depend on the job: mounted ahead,
    // after making the mount tree private, which the job's plan then need not do again.
    let ahead = ready.is_ok()
        && request.proc_mount
        && MountStep::MakePrivate.run(&[]).is_ok()
        && ns::mount_proc().is_ok();
    // Not dumpable: even a job holding CAP_SYS_PTRACE in this user namespace (a root worker
    // maps uid 0) cannot open the slot's memory or descriptors through /proc where no Landlock
    // keeps it out; the job gets its dumpable flag back at exec.
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if ready.is_err() || wire::send(fd, &FromSlot::Ready, &[]).is_err() {
        exit(1);
    }
    let mut buffer = Vec::new();
    let (start, fds) = match wire::receive::<ToSlot>(fd, &mut buffer, MsgFlags::empty()) {
        Ok(Some((ToSlot::Start(start), fds))) => (start, fds),
        _ => exit(0),
    };
    drop(buffer);
    match serve(fd, &start, fds, namespaces & libc::CLONE_NEWPID != 0, ahead) {
        Ok(never) => match never {},
        Err(error) => {
            let errno = error.raw_os_error().unwrap_or(libc::EIO);
            let _ = wire::send(fd, &FromSlot::Failed { errno }, &[]);
            exit(0)
        }
    }
}

enum Never {}

fn exit(code: i32) -> ! {
    // SAFETY: plain exit; as pid 1 it ends the namespace.
    unsafe { libc::_exit(code) }
}

/// Runs the job; returns only if it could not start.
fn serve(
    socket: RawFd,
    start: &JobStart,
    fds: Vec<OwnedFd>,
    pid_namespace: bool,
    proc_ahead: bool,
) -> io::Result<Never> {
    let mut fds = fds.into_iter();
    let mut next = || {
        fds.next()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    };
    let stdio = [next()?, next()?, next()?];
    let ruleset = start.landlock.map(|_| next()).transpose()?;
    let egress = start.egress_port.map(|_| next()).transpose()?;
    let cgroup_procs = (0..start.cgroup_procs)
        .map(|_| next())
        .collect::<io::Result<Vec<_>>>()?;

    let keeps = start
        .keeps
        .iter()
        .map(|path| Keep::from_cstring(path.clone()))
        .collect::<Vec<_>>();
    for step in &start.mounts {
        if !(proc_ahead && matches!(step, MountStep::MakePrivate)) {
            step.run(&keeps)?;
        }
    }
    if proc_ahead && !start.proc_mount {
        // Never the case today (the pool asks for it exactly where jobs get one); a job that
        // is not to have its own /proc must not find it.
        // SAFETY: NUL-terminated path.
        sys::check_int(unsafe { libc::umount2(c"/proc".as_ptr(), libc::MNT_DETACH) })?;
    }
    if start.proc_mount
        && (proc_ahead || ns::mount_proc().is_ok())
        && let (Some(ruleset), Some((_, read))) = (&ruleset, start.landlock)
    {
        landlock::add_rule_at(ruleset.as_raw_fd(), c"/proc", read)?;
    }
    if let (Some(ruleset), Some((all, _))) = (&ruleset, start.landlock) {
        for target in start.mounts.iter().filter_map(MountStep::writable_target) {
            landlock::add_rule_at(ruleset.as_raw_fd(), target, all)?;
        }
    }
    if let (Some(channel), Some(port)) = (egress, start.egress_port) {
        crate::sandbox::listener::hand_over(channel.into_raw_fd(), port)?;
    }
    let filter = start.seccomp.map(Filter::build);
    let exec = Exec::new(start)?;
    let cpu_set = start.cpu_set.as_ref().map(|cpus| {
        // SAFETY: a zeroed cpu_set_t is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for cpu in cpus {
            // SAFETY: CPU_SET bounds-checks against the set's size.
            unsafe { libc::CPU_SET(*cpu, &mut set) };
        }
        set
    });

    // SIGCHLD is taken through a signalfd; blocked before the fork so no exit is missed.
    // SAFETY: signal-mask calls on stack sets.
    let signalfd = unsafe {
        let mut chld: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut chld);
        libc::sigaddset(&mut chld, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &chld, std::ptr::null_mut());
        sys::check_int(libc::signalfd(-1, &chld, libc::SFD_CLOEXEC))?
    };
    let mut report = [0 as RawFd; 2];
    // SAFETY: pipe2 fills a two-int array.
    sys::check_int(unsafe { libc::pipe2(report.as_mut_ptr(), libc::O_CLOEXEC) })?;
    let child = Child {
        stdio: [
            stdio[0].as_raw_fd(),
            stdio[1].as_raw_fd(),
            stdio[2].as_raw_fd(),
        ],
        rlimits: &start.rlimits,
        cpu_set: cpu_set.as_ref(),
        cgroup_procs: &cgroup_procs,
        nproc: start.nproc,
        data: start.data,
        cwd: &start.cwd,
        ruleset: ruleset.as_ref().map(AsRawFd::as_raw_fd),
        filter: filter.as_ref(),
        exec: &exec,
        report: report[1],
        // SAFETY: getpid cannot fail (1 inside our own PID namespace).
        slot: unsafe { libc::getpid() },
    };
    let pid = child.spawn()?;
    // SAFETY: closing our copy of the pipe's write end.
    unsafe { libc::close(report[1]) };
    drop(stdio);
    drop(cgroup_procs);
    drop(ruleset);
    let mut errno = [0u8; 4];
    // SAFETY: reading into a stack buffer; EOF means the exec succeeded.
    let n = loop {
        let n = unsafe { libc::read(report[0], errno.as_mut_ptr().cast(), 4) };
        if n >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break n;
        }
    };
    // SAFETY: our own descriptor.
    unsafe { libc::close(report[0]) };
    if n == 4 {
        let mut status = 0;
        // SAFETY: reaping our own child, which exits right after writing.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        return Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)));
    }
    // SAFETY: pidfd_open of our own, not yet reaped child.
    let pidfd = sys::check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) })? as RawFd;
    let sent = wire::send(socket, &FromSlot::Started, &[pidfd]);
    // SAFETY: our copy; the worker has its own.
    unsafe { libc::close(pidfd) };
    if sent.is_err() {
        kill_everything();
    }
    watch(socket, signalfd, pid, pid_namespace)
}

/// Waits for the job, reaping the orphans that land on pid 1 meanwhile, and forwards the
/// worker's signals to the job while it lives.
fn watch(socket: RawFd, signalfd: RawFd, job: libc::pid_t, pid_namespace: bool) -> ! {
    let mut buffer = Vec::new();
    loop {
        let mut fds = [
            libc::pollfd {
                fd: socket,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: signalfd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: polling two descriptors we own.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            continue;
        }
        if fds[1].revents != 0 {
            let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
            // SAFETY: draining the signalfd into a stack buffer of its record size.
            unsafe { libc::read(signalfd, info.as_mut_ptr().cast(), info.len()) };
            if !pid_namespace {
                end_the_group(job);
            }
            loop {
                let mut status = 0;
                // SAFETY: an all-zero rusage is valid.
                let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
                // SAFETY: reaping our own children with valid out-pointers.
                let pid = unsafe {
                    libc::wait4(-1, &mut status, libc::WNOHANG | libc::__WALL, &mut usage)
                };
                if pid <= 0 {
                    break;
                }
                if pid == job {
                    if pid_namespace {
                        empty_the_namespace();
                    }
                    let micros =
                        |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
                    let _ = wire::send(
                        socket,
                        &FromSlot::Exited {
                            status,
                            user_us: micros(usage.ru_utime),
                            system_us: micros(usage.ru_stime),
                            max_rss_kb: usage.ru_maxrss as u64,
                        },
                        &[],
                    );
                    // The namespaces' teardown in our exit is nobody's path any more: at the
                    // lowest priority (lowering needs no privilege).
                    crate::sandbox::background_thread();
                    kill_everything();
                }
            }
        }
        if fds[0].revents != 0 {
            match wire::receive::<ToSlot>(socket, &mut buffer, MsgFlags::MSG_DONTWAIT) {
                Ok(Some((ToSlot::Signal { signal }, _))) => {
                    // SAFETY: the job is our unreaped child, so its pid and group id are its own.
                    unsafe {
                        libc::kill(job, signal);
                        libc::killpg(job, signal);
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                // The worker let go of the job (or died): nothing may outlive it.
                _ => kill_everything(),
            }
        }
    }
}

/// Without a PID namespace the job's leftovers are not ours to reap: once the leader has
/// ended (still unreaped, so its group id is its own) its process group goes, as a cold
/// start's reap does; the cgroup's kill reaches the rest.
fn end_the_group(job: libc::pid_t) {
    // SAFETY: waitid with WNOWAIT only looks at our own child; killpg of its group.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(
            libc::P_PID,
            job as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        if rc == 0 && info.si_pid() == job {
            libc::killpg(job, libc::SIGKILL);
        }
    }
}

/// As pid 1: kills every other process of the namespace and reaps them all, so the report
/// that follows means nothing of the job is left; the namespaces' own teardown (unmounting,
/// the network namespace's cleanup) then happens in the slot's exit, after the worker has its
/// answer.
fn empty_the_namespace() {
    // SAFETY: kill(-1) from a namespace's init reaches every process of the namespace but
    // itself; waiting for our own children.
    unsafe {
        libc::kill(-1, libc::SIGKILL);
        loop {
            let mut status = 0;
            if libc::waitpid(-1, &mut status, libc::__WALL) < 0 && errno() != libc::EINTR {
                break;
            }
        }
    }
}

/// As pid 1: exiting kills every process left in the namespace and ends the namespaces.
fn kill_everything() -> ! {
    exit(0)
}

/// The exec, prepared before fork: argv and envp as pointer arrays, and for a bare program
/// name every place `PATH` (the job's own) would find it.
struct Exec {
    candidates: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// `/bin/sh <file> <args>` for a file the kernel cannot execute (no `#!`), as `execvp`
    /// runs it (and so a cold start): the file's slot is filled in the child.
    shell_argv: Vec<std::cell::Cell<*const libc::c_char>>,
}

impl Exec {
    fn new(start: &JobStart) -> io::Result<Exec> {
        let program = start
            .argv
            .first()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        let candidates = if program.as_bytes().contains(&b'/') {
            vec![program.clone()]
        } else {
            let path = start
                .env
                .iter()
                .find_map(|entry| entry.as_bytes().strip_prefix(b"PATH="))
                .unwrap_or(b"/bin:/usr/bin");
            path.split(|b| *b == b':')
                .map(|dir| {
                    let dir = if dir.is_empty() { &b"."[..] } else { dir };
                    let mut full = dir.to_vec();
                    full.push(b'/');
                    full.extend_from_slice(program.as_bytes());
                    CString::new(full).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
                })
                .collect::<io::Result<Vec<_>>>()?
        };
        let pointers = |list: &[CString]| {
            list.iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        let argv = pointers(&start.argv);
        let shell_argv = [c"/bin/sh".as_ptr(), std::ptr::null()]
            .into_iter()
            .chain(argv[1..].iter().copied())
            .map(std::cell::Cell::new)
            .collect();
        Ok(Exec {
            candidates,
            argv,
            envp: pointers(&start.env),
            shell_argv,
        })
    }

    /// Async-signal-safe: returns only with the error of the most telling failed attempt,
    /// as `execvp` picks it.
    fn run(&self) -> i32 {
        let mut error = libc::ENOENT;
        for candidate in &self.candidates {
            // SAFETY: NUL-terminated arrays prepared before fork.
            unsafe { libc::execve(candidate.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
            match errno() {
                libc::ENOENT | libc::ENOTDIR => {}
                libc::EACCES => error = libc::EACCES,
                libc::ENOEXEC => {
                    self.shell_argv[1].set(candidate.as_ptr());
                    // SAFETY: `Cell<*const c_char>` has the layout of `*const c_char`; the
                    // array is NUL-terminated and prepared before fork.
                    unsafe {
                        libc::execve(
                            c"/bin/sh".as_ptr(),
                            self.shell_argv.as_ptr().cast(),
                            self.envp.as_ptr(),
                        )
                    };
                    return errno();
                }
                other => return other,
            }
        }
        error
    }
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// What the forked job does before exec, all of it on memory prepared before the fork.
struct Child<'a> {
    stdio: [RawFd; 3],
    rlimits: &'a [(u32, u64, u64)],
    cpu_set: Option<&'a libc::cpu_set_t>,
    cgroup_procs: &'a [OwnedFd],
    nproc: Option<u64>,
    data: Option<u64>,
    cwd: &'a CStr,
    ruleset: Option<RawFd>,
    filter: Option<&'a Filter>,
    exec: &'a Exec,
    report: RawFd,
    slot: libc::pid_t,
}

/// Room for the job's set-up code until its exec: a handful of syscalls, no allocation.
const SPAWN_STACK: usize = 64 * 1024;

impl Child<'_> {
    /// Starts the job as `posix_spawn` does: a process sharing the slot's memory until its
    /// exec (`CLONE_VM | CLONE_VFORK`), so no page table is copied and no page faulted in
    /// again, and the slot sleeps until the exec has happened or failed. The child has its own
    /// descriptor table, credentials, rlimits and signal state (no `CLONE_FILES`, `CLONE_THREAD`
    /// or `CLONE_SIGHAND`), so its set-up (dup2, setsid, Landlock, seccomp) stays its own.
    fn spawn(&self) -> io::Result<libc::pid_t> {
        extern "C" fn entry(child: *mut libc::c_void) -> libc::c_int {
            // SAFETY: `spawn` passes a live `Child`; the slot is suspended until the exec.
            let child = unsafe { &*(child as *const Child) };
            child.run()
        }
        let mut stack = vec![0u8; SPAWN_STACK];
        // SAFETY: one past the end of the stack buffer, rounded down to 16 bytes as the ABI
        // wants; the stack grows down into the buffer.
        let top = unsafe { stack.as_mut_ptr().add(SPAWN_STACK) };
        let top = (top as usize & !15) as *mut libc::c_void;
        // SAFETY: the child runs only async-signal-safe code on memory prepared before, and
        // the slot (single-threaded) does not run until the child has exec'd or exited.
        let pid = unsafe {
            libc::clone(
                entry,
                top,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                self as *const Child as *mut libc::c_void,
            )
        };
        drop(stack);
        sys::check_int(pid)
    }

    fn run(&self) -> ! {
        let errno = match self.prepare() {
            Ok(()) => self.exec.run(),
            Err(error) => error.raw_os_error().unwrap_or(libc::EIO),
        };
        let _ = sys::write_all(self.report, &errno.to_ne_bytes());
        exit(127)
    }

    fn prepare(&self) -> io::Result<()> {
        // SAFETY: async-signal-safe calls on values prepared before fork.
        unsafe {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            for (target, fd) in self.stdio.iter().enumerate() {
                sys::check_int(libc::dup2(*fd, target as RawFd))?;
            }
            sys::check_int(libc::setsid())?;
            sys::check_int(libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
            ))?;
            // The slot may have died before the signal was armed.
            if libc::getppid() != self.slot {
                libc::_exit(1);
            }
            for (resource, soft, hard) in self.rlimits {
                let limit = libc::rlimit {
                    rlim_cur: *soft as libc::rlim_t,
                    rlim_max: *hard as libc::rlim_t,
                };
                sys::check_int(libc::setrlimit(*resource as _, &limit))?;
            }
            if let Some(set) = self.cpu_set {
                sys::check_int(libc::sched_setaffinity(
                    0,
                    std::mem::size_of::<libc::cpu_set_t>(),
                    set,
                ))?;
            }
        }
        for fd in self.cgroup_procs {
            sys::write_all(fd.as_raw_fd(), b"0")?;
        }
        if let Some(n) = self.nproc {
            sys::set_rlimit(libc::RLIMIT_NPROC, n)?;
        }
        if let Some(bytes) = self.data {
            sys::set_rlimit(libc::RLIMIT_DATA, bytes)?;
        }
        // SAFETY: NUL-terminated path.
        sys::check_int(unsafe { libc::chdir(self.cwd.as_ptr()) })?;
        if let Some(ruleset) = self.ruleset {
            sys::no_new_privs()?;
            landlock::restrict_self(ruleset)?;
        }
        if let Some(filter) = self.filter {
            sys::no_new_privs()?;
            filter.install()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(argv0: &str, path: Option<&str>) -> JobStart {
        JobStart {
            argv: vec![CString::new(argv0).unwrap()],
            env: path
                .map(|p| CString::new(format!("PATH={p}")).unwrap())
                .into_iter()
                .collect(),
            ..JobStart::default()
        }
    }

    #[test]
    fn a_bare_name_is_looked_up_in_the_jobs_own_path_in_order() {
        let exec = Exec::new(&start("cargo", Some("/opt/a::/usr/bin"))).unwrap();
        let candidates: Vec<&str> = exec
            .candidates
            .iter()
            .map(|c| c.to_str().unwrap())
            .collect();
        assert_eq!(candidates, ["/opt/a/cargo", "./cargo", "/usr/bin/cargo"]);
        let exec = Exec::new(&start("./build.sh", Some("/usr/bin"))).unwrap();
        assert_eq!(exec.candidates, [CString::new("./build.sh").unwrap()]);
        let exec = Exec::new(&start("ls", None)).unwrap();
        assert_eq!(
            exec.candidates.len(),
            2,
            "execvp's default path without PATH"
        );
    }
}
