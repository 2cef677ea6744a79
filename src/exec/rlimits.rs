//! Per-process kernel limits set in the child before exec.

/// The rlimits a job's processes run under, computed before fork so the child only makes
/// system calls.
#[derive(Debug, Clone, Copy)]
pub struct RlimitPlan {
    pub cpu_seconds: u64,
    pub file_size_bytes: u64,
    pub open_files: u64,
}

impl RlimitPlan {
    /// CPU time per process is bounded by what the whole job could burn in its wall time on
    /// its cores; a process that spins past it gets SIGXCPU, then SIGKILL a second later.
    pub fn new(timeout_ms: u64, cores: f64, file_size_bytes: u64, open_files: u64) -> Self {
        let cpu_seconds = ((timeout_ms as f64 / 1000.0) * cores.max(1.0)).ceil() as u64 + 1;
        RlimitPlan {
            cpu_seconds,
            file_size_bytes,
            open_files,
        }
    }

    /// (resource, soft, hard) as `apply` sets them, for a child the worker does not fork.
    pub fn as_table(&self) -> Vec<(u32, u64, u64)> {
        vec![
            (libc::RLIMIT_CPU, self.cpu_seconds, self.cpu_seconds + 1),
            (
                libc::RLIMIT_FSIZE,
                self.file_size_bytes,
                self.file_size_bytes,
            ),
            (libc::RLIMIT_NOFILE, self.open_files, self.open_files),
            (libc::RLIMIT_CORE, 0, 0),
        ]
    }

    /// Async-signal-safe: called between fork and exec.
    pub(super) fn apply(&self) -> std::io::Result<()> {
        let set = |resource, soft: u64, hard: u64| -> std::io::Result<()> {
            let limit = libc::rlimit {
                rlim_cur: soft as libc::rlim_t,
                rlim_max: hard as libc::rlim_t,
            };
            // SAFETY: setrlimit reads a valid, initialised struct and is async-signal-safe.
            if unsafe { libc::setrlimit(resource, &limit) } == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        set(libc::RLIMIT_CPU, self.cpu_seconds, self.cpu_seconds + 1)?;
        set(
            libc::RLIMIT_FSIZE,
            self.file_size_bytes,
            self.file_size_bytes,
        )?;
        set(libc::RLIMIT_NOFILE, self.open_files, self.open_files)?;
        set(libc::RLIMIT_CORE, 0, 0)?;
        Ok(())
    }
}
