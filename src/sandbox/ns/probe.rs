//! What namespaces (and enforcement of Landlock and seccomp) this host allows, found by
//! trying each in a throwaway child.

use super::{MountStep, UserMaps, mount_proc};
use crate::sandbox::sys::{self, check_int};
use std::io;

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
pub fn probe(
    landlock_abi: Option<u32>,
    seccomp: Option<&crate::sandbox::seccomp::Filter>,
) -> Support {
    let maps = UserMaps::identity();
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let ruleset = landlock_abi.and_then(|abi| {
        crate::sandbox::landlock::Ruleset::new(
            crate::sandbox::landlock::Rights::for_abi(abi),
            crate::sandbox::landlock::Extras {
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
    ruleset: Option<&crate::sandbox::landlock::Ruleset>,
    seccomp: Option<&crate::sandbox::seccomp::Filter>,
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
                sys::no_new_privs()
                    .and_then(|_| crate::sandbox::landlock::restrict_self(ruleset.raw_fd())),
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
