//! Thin, allocation-free wrappers over the system calls the child makes between fork and exec.
//! Everything here is async-signal-safe: plain syscalls on memory prepared before fork.

use std::ffi::CStr;
use std::io;
use std::os::fd::RawFd;

pub(super) fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

pub(super) fn check_int(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

pub(super) fn write_all(fd: RawFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: the pointer and length describe a live slice.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// Opens `path`, writes `bytes` in one go, closes: the shape of every procfs and cgroupfs
/// control-file write.
pub(super) fn write_file(path: &CStr, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: path is NUL-terminated.
    let fd = check_int(unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) })?;
    let result = write_all(fd, bytes);
    // SAFETY: fd was opened above and is closed once.
    unsafe { libc::close(fd) };
    result
}

pub(super) fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is NULL or a NUL-terminated string that outlives the call.
    check_int(unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags,
            ptr(data).cast(),
        )
    })
    .map(drop)
}

pub(super) fn set_rlimit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value as libc::rlim_t,
        rlim_max: value as libc::rlim_t,
    };
    // SAFETY: reads a valid struct.
    check_int(unsafe { libc::setrlimit(resource, &limit) }).map(drop)
}

pub(super) fn no_new_privs() -> io::Result<()> {
    // SAFETY: plain prctl with integer arguments.
    check_int(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }).map(drop)
}

/// Puts the calling thread at the lowest priority: for work that only prepares ahead or
/// cleans up after (the cgroup keeper, the session janitor, a slot's own teardown), so it
/// never delays a job's path. Lowering needs no privilege.
pub fn background_thread() {
    // SAFETY: gettid and setpriority on the calling thread (Linux nice values are per thread).
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
    }
}
