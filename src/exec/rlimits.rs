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

    /// (resource, soft, hard): what `apply` sets, and what a prepared sandbox's child sets
    /// for a job the worker does not fork.
    pub fn as_table(&self) -> [(u32, u64, u64); 4] {
        [
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

    /// Async-signal-safe (the table is on the stack): called between fork and exec.
    pub(super) fn apply(&self) -> std::io::Result<()> {
        for (resource, soft, hard) in self.as_table() {
            let limit = libc::rlimit {
                rlim_cur: soft as libc::rlim_t,
                rlim_max: hard as libc::rlim_t,
            };
            // SAFETY: setrlimit reads a valid, initialised struct and is async-signal-safe.
            if unsafe { libc::setrlimit(resource, &limit) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}
