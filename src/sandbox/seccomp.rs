//! A seccomp deny list: the syscalls a build or a test never needs and that widen the kernel
//! surface or reach outside the job. It is a deny list, not an allow list, on purpose: jobs run
//! arbitrary toolchains, and an allow list that misses one syscall breaks a runtime in ways an
//! agent cannot diagnose. Filesystem and network confinement come from Landlock and namespaces;
//! this filter closes what those do not cover.
//!
//! The BPF program is assembled in the parent; the child only hands it to the kernel.

use super::sys::check;
use std::io;

const LD_ABS_W: u16 = 0x20;
const JEQ: u16 = 0x15;
const JGE: u16 = 0x35;
const JSET: u16 = 0x45;
const RET: u16 = 0x06;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const SECCOMP_SET_MODE_FILTER: libc::c_long = 1;
/// Namespace flags a clone() may not carry; CLONE_NEWTIME (0x80) overlaps the exit-signal byte
/// of clone() and is only reachable through clone3 and unshare, both refused outright.
const CLONE_NAMESPACES: u32 = 0x7e02_0000;
const TIOCSTI: u32 = 0x5412;
const TIOCLINUX: u32 = 0x541c;

/// Refused with EPERM: debugging other processes, mounting, kernel extension points, keyrings,
/// io_uring (a second syscall interface this filter could not see into), host clock and power.
#[cfg(target_arch = "x86_64")]
pub const DENIED: &[(&str, libc::c_long)] = &[
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("process_madvise", libc::SYS_process_madvise),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("open_tree", libc::SYS_open_tree),
    ("move_mount", libc::SYS_move_mount),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("acct", libc::SYS_acct),
    ("syslog", libc::SYS_syslog),
    ("quotactl", libc::SYS_quotactl),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("adjtimex", libc::SYS_adjtimex),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("iopl", libc::SYS_iopl),
    ("ioperm", libc::SYS_ioperm),
    ("uselib", libc::SYS_uselib),
    ("vhangup", libc::SYS_vhangup),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
];

pub struct Filter {
    program: Vec<libc::sock_filter>,
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

fn arg_low(index: u32) -> u32 {
    // struct seccomp_data: nr, arch, instruction_pointer (u64), args[6] (u64, little endian).
    16 + 8 * index
}

fn errno(code: i32) -> u32 {
    RET_ERRNO | (code as u32 & 0xffff)
}

impl Filter {
    /// `allow_inet`: false when the job has network "none" but no network namespace to
    /// enforce it, so IP sockets are refused here instead.
    #[cfg(target_arch = "x86_64")]
    pub fn build(allow_inet: bool) -> Filter {
        let mut p = vec![
            stmt(LD_ABS_W, OFFSET_ARCH),
            jump(JEQ, AUDIT_ARCH_X86_64, 1, 0),
            // An i386 syscall (int 0x80) would be judged by x86_64 numbers: refuse the process.
            stmt(RET, RET_KILL_PROCESS),
            stmt(LD_ABS_W, OFFSET_NR),
            jump(JGE, X32_SYSCALL_BIT, 0, 1),
            stmt(RET, errno(libc::EPERM)),
        ];
        for (_, nr) in DENIED {
            p.push(jump(JEQ, *nr as u32, 0, 1));
            p.push(stmt(RET, errno(libc::EPERM)));
        }
        // glibc falls back to clone() on ENOSYS, whose flags a filter can inspect.
        p.push(jump(JEQ, libc::SYS_clone3 as u32, 0, 1));
        p.push(stmt(RET, errno(libc::ENOSYS)));

        p.push(jump(JEQ, libc::SYS_clone as u32, 0, 4));
        p.push(stmt(LD_ABS_W, arg_low(0)));
        p.push(jump(JSET, CLONE_NAMESPACES, 0, 1));
        p.push(stmt(RET, errno(libc::EPERM)));
        p.push(stmt(RET, RET_ALLOW));

        let mut families = vec![libc::AF_UNIX as u32, libc::AF_NETLINK as u32];
        if allow_inet {
            families.extend([libc::AF_INET as u32, libc::AF_INET6 as u32]);
        }
        let m = families.len() as u8;
        p.push(jump(JEQ, libc::SYS_socket as u32, 0, m + 3));
        p.push(stmt(LD_ABS_W, arg_low(0)));
        for (i, family) in families.iter().enumerate() {
            p.push(jump(JEQ, *family, m - i as u8, 0));
        }
        // AF_VSOCK, AF_PACKET, Bluetooth...: either not namespaced (vsock reaches the
        // hypervisor) or never needed by a build.
        p.push(stmt(RET, errno(libc::EAFNOSUPPORT)));
        p.push(stmt(RET, RET_ALLOW));

        // Pushing input into a terminal would type commands into whoever owns it.
        p.push(jump(JEQ, libc::SYS_ioctl as u32, 0, 5));
        p.push(stmt(LD_ABS_W, arg_low(1)));
        p.push(jump(JEQ, TIOCSTI, 2, 0));
        p.push(jump(JEQ, TIOCLINUX, 1, 0));
        p.push(stmt(RET, RET_ALLOW));
        p.push(stmt(RET, errno(libc::EPERM)));

        p.push(stmt(RET, RET_ALLOW));
        Filter { program: p }
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub fn build(_allow_inet: bool) -> Filter {
        Filter {
            program: Vec::new(),
        }
    }

    pub fn supported() -> Result<(), String> {
        if !cfg!(target_arch = "x86_64") {
            return Err("the deny list is written for x86_64 syscall numbers only".into());
        }
        // SAFETY: plain prctl query.
        let rc = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
        if rc < 0 {
            return Err(format!(
                "the kernel has no seccomp filter support: {}",
                io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    /// Async-signal-safe. Requires no_new_privs, set by the caller.
    pub fn install(&self) -> io::Result<()> {
        if self.program.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::ENOSYS));
        }
        let prog = libc::sock_fprog {
            len: self.program.len() as u16,
            filter: self.program.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: prog points at a live program; the kernel copies it.
        check(unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                SECCOMP_SET_MODE_FILTER,
                0u32,
                &prog as *const libc::sock_fprog,
            )
        })
        .map(drop)
    }
}
