//! One job process: spawned as the leader of a new session, observed through a pidfd, reaped
//! with `wait4` so its resource use is known, and ended with its whole process group.
//!
//! We reap the leader ourselves instead of through tokio so we get its `rusage`; tokio's own
//! reaper only waits for pids it spawned, so the two never steal each other's children.

use super::RlimitPlan;
use crate::sandbox::JobSandbox;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;

#[derive(Debug, Clone)]
pub enum Program {
    /// Run by `/bin/sh -c`: a non-login, non-interactive shell reads no rc files.
    Shell(String),
    Argv(Vec<String>),
}

pub struct LaunchSpec {
    pub program: Program,
    pub cwd: PathBuf,
    pub env: Vec<(OsString, OsString)>,
    pub stdin: bool,
    pub rlimits: RlimitPlan,
    pub cpu_set: Option<nix::sched::CpuSet>,
}

/// How the leader ended: one or the other, never both or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitInfo {
    Exited(i32),
    Signaled(i32),
}

impl ExitInfo {
    pub fn code(self) -> Option<i32> {
        match self {
            ExitInfo::Exited(code) => Some(code),
            ExitInfo::Signaled(_) => None,
        }
    }

    pub fn signal(self) -> Option<i32> {
        match self {
            ExitInfo::Signaled(signal) => Some(signal),
            ExitInfo::Exited(_) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ResourceUse {
    pub user: Duration,
    pub system: Duration,
    pub max_rss_bytes: u64,
}

pub struct JobProcess {
    pid: libc::pid_t,
    leader: Leader,
    pub stdin: Option<tokio::process::ChildStdin>,
    pub stdout: Option<tokio::process::ChildStdout>,
    pub stderr: Option<tokio::process::ChildStderr>,
    reaped: bool,
    /// The job's kernel sandbox; its tree kill also reaches processes that left the group.
    sandbox: Option<Arc<JobSandbox>>,
}

/// Whose child the job is: the worker's (a cold start) or a prepared sandbox's.
enum Leader {
    /// Watched through its pidfd, reaped here with `wait4`.
    Forked(AsyncFd<OwnedFd>),
    /// The slot reports its end and resource use, and reaps it.
    Warm(crate::sandbox::WarmJob),
}

impl JobProcess {
    /// Must run on a thread that outlives the job (a runtime worker, never a blocking-pool
    /// thread): the kernel sends the parent-death signal when the forking *thread* exits.
    pub fn spawn(spec: LaunchSpec) -> io::Result<JobProcess> {
        JobProcess::spawn_sandboxed(spec, None)
    }

    /// `spawn`, with the job entering `sandbox` (prepared before fork) as the last step
    /// before exec.
    pub fn spawn_sandboxed(
        spec: LaunchSpec,
        sandbox: Option<Arc<JobSandbox>>,
    ) -> io::Result<JobProcess> {
        if let Some(sandbox) = sandbox.as_ref().filter(|s| s.has_warm_slot()) {
            return JobProcess::spawn_warm(spec, sandbox.clone());
        }
        let mut command = match &spec.program {
            Program::Shell(line) => {
                let mut command = Command::new("/bin/sh");
                command.arg("-c").arg(line);
                command
            }
            Program::Argv(argv) => {
                let mut command = Command::new(&argv[0]);
                command.args(&argv[1..]);
                command
            }
        };
        command
            .current_dir(&spec.cwd)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(if spec.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());

        let parent = std::process::id() as libc::pid_t;
        let rlimits = spec.rlimits;
        let cpu_set = spec.cpu_set;
        let child_sandbox = sandbox.clone();
        // SAFETY: the closure only makes async-signal-safe system calls on values computed
        // before fork; it allocates nothing and takes no locks.
        unsafe {
            command.pre_exec(move || {
                // Descriptors the worker inherited without close-on-exec (its parent's) must
                // not reach the job; ours are close-on-exec already, and those the sandbox
                // still uses before exec stay open until then.
                libc::syscall(
                    libc::SYS_close_range,
                    3u32,
                    u32::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                );
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) < 0 {
                    return Err(io::Error::last_os_error());
                }
                // The worker may have died between fork and prctl; the signal would never come.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                rlimits.apply()?;
                if let Some(set) = &cpu_set {
                    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), set)
                        .map_err(io::Error::from)?;
                }
                // Last: it seals the filesystem and the syscall filter, and with a PID
                // namespace this process stays behind as a relay for the job.
                if let Some(sandbox) = &child_sandbox {
                    sandbox.enter_in_child()?;
                }
                Ok(())
            });
        }

        let mut child = command.spawn()?;
        let pid = child.id() as libc::pid_t;
        // SAFETY: the OwnedFd stays open and unchanged for the AsyncFd's whole life.
        let watched = pidfd_open(pid)
            .and_then(|fd| unsafe { AsyncFd::register(fd) }.map_err(io::Error::from))
            .and_then(|fd| match &sandbox {
                Some(sandbox) => sandbox.attach(pid as u32).map(|()| fd),
                None => Ok(fd),
            });
        let pidfd = match watched {
            Ok(fd) => fd,
            Err(error) => {
                // SAFETY: plain kill of our own, not yet reaped child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                if let Some(sandbox) = &sandbox {
                    sandbox.kill_all();
                }
                let _ = child.wait();
                return Err(error);
            }
        };
        // From here on, Drop kills and reaps the child whatever fails.
        let mut process = JobProcess {
            pid,
            leader: Leader::Forked(pidfd),
            stdin: None,
            stdout: None,
            stderr: None,
            reaped: false,
            sandbox,
        };
        process.stdin = child
            .stdin
            .take()
            .map(tokio::process::ChildStdin::from_std)
            .transpose()?;
        process.stdout = child
            .stdout
            .take()
            .map(tokio::process::ChildStdout::from_std)
            .transpose()?;
        process.stderr = child
            .stderr
            .take()
            .map(tokio::process::ChildStderr::from_std)
            .transpose()?;
        // `child` is dropped without waiting: we reap through the pidfd.
        Ok(process)
    }

    /// The same job started in its prepared sandbox: the pipes are made here and handed over
    /// with the launch; everything the cold path's `pre_exec` does, the slot's child does.
    fn spawn_warm(spec: LaunchSpec, sandbox: Arc<JobSandbox>) -> io::Result<JobProcess> {
        use std::os::unix::ffi::OsStrExt;
        let cstring = |bytes: &[u8]| {
            std::ffi::CString::new(bytes).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "nul byte found in provided data",
                )
            })
        };
        let argv = match &spec.program {
            Program::Shell(line) => vec![
                cstring(b"/bin/sh")?,
                cstring(b"-c")?,
                cstring(line.as_bytes())?,
            ],
            Program::Argv(argv) => argv
                .iter()
                .map(|arg| cstring(arg.as_bytes()))
                .collect::<io::Result<_>>()?,
        };
        let env = spec
            .env
            .iter()
            .map(|(key, value)| {
                let mut entry = key.as_bytes().to_vec();
                entry.push(b'=');
                entry.extend_from_slice(value.as_bytes());
                cstring(&entry)
            })
            .collect::<io::Result<_>>()?;
        let cpu_set = spec.cpu_set.map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|cpu| set.is_set(*cpu).unwrap_or(false))
                .collect()
        });
        let stdin = if spec.stdin {
            let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            (read, Some(write))
        } else {
            (std::fs::File::open("/dev/null")?.into(), None)
        };
        let (stdout_read, stdout_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (stderr_read, stderr_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let launch = crate::sandbox::Launch {
            argv,
            env,
            cwd: cstring(spec.cwd.as_os_str().as_bytes())?,
            rlimits: spec.rlimits.as_table().to_vec(),
            cpu_set,
            stdio: [
                stdin.0.as_raw_fd(),
                stdout_write.as_raw_fd(),
                stderr_write.as_raw_fd(),
            ],
        };
        let job = sandbox.start_warm(launch)?;
        drop((stdin.0, stdout_write, stderr_write));
        Ok(JobProcess {
            pid: 0,
            leader: Leader::Warm(job),
            stdin: stdin
                .1
                .map(|fd| tokio::process::ChildStdin::from_std(std::process::ChildStdin::from(fd)))
                .transpose()?,
            stdout: Some(tokio::process::ChildStdout::from_std(
                std::process::ChildStdout::from(stdout_read),
            )?),
            stderr: Some(tokio::process::ChildStderr::from_std(
                std::process::ChildStderr::from(stderr_read),
            )?),
            reaped: false,
            sandbox: Some(sandbox),
        })
    }

    /// The leader's pid (a warm job's is looked up when asked; 0 once it has ended).
    pub fn pid(&self) -> u32 {
        match &self.leader {
            Leader::Forked(_) => self.pid as u32,
            Leader::Warm(job) => job.pid() as u32,
        }
    }

    pub fn sandbox(&self) -> Option<&Arc<JobSandbox>> {
        self.sandbox.as_ref()
    }

    /// Resolves when the leader has exited (it stays a zombie until `reap`, which keeps its
    /// pid and process-group id from being reused meanwhile).
    pub async fn exited(&self) -> io::Result<()> {
        let pidfd = match &self.leader {
            Leader::Forked(pidfd) => pidfd,
            Leader::Warm(job) => return job.exited().await,
        };
        loop {
            let mut guard = pidfd.readable().await?;
            if self.has_exited() {
                return Ok(());
            }
            guard.clear_ready();
        }
    }

    fn has_exited(&self) -> bool {
        let Leader::Forked(pidfd) = &self.leader else {
            return false;
        };
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with WNOWAIT only inspects our own child; info is a valid out-pointer.
        let rc = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.get_ref().as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        rc == 0 && unsafe { info.si_pid() } != 0
    }

    /// Signals the leader and every process still in its process group.
    pub fn signal_tree(&self, signal: libc::c_int) {
        // The sandbox's kill reaches setsid/double-forked escapees too, and never a recycled
        // pid, so it is safe even after the leader was reaped.
        if signal == libc::SIGKILL
            && let Some(sandbox) = &self.sandbox
        {
            sandbox.kill_all();
        }
        if self.reaped {
            return;
        }
        let pidfd = match &self.leader {
            Leader::Forked(pidfd) => pidfd,
            Leader::Warm(job) => return job.signal(signal),
        };
        // SAFETY: plain signal delivery; the group id cannot have been reused because the
        // leader is not reaped yet.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.get_ref().as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
            libc::killpg(self.pid, signal);
        }
    }

    /// Kills what is left of the group, then collects the leader's status and resource use.
    /// Call after `exited` resolved.
    pub fn reap(&mut self) -> io::Result<(ExitInfo, ResourceUse)> {
        let nothing_left = matches!(&self.leader, Leader::Warm(job) if job.nothing_left());
        if !nothing_left {
            self.signal_tree(libc::SIGKILL);
        }
        if let Leader::Warm(job) = &self.leader {
            let exit = job.reap()?;
            self.reaped = true;
            return Ok((
                exit_info(exit.status),
                ResourceUse {
                    user: Duration::from_micros(exit.user_us),
                    system: Duration::from_micros(exit.system_us),
                    max_rss_bytes: exit.max_rss_kb * 1024,
                },
            ));
        }
        let mut status = 0;
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child with valid out-pointers.
        let rc = unsafe { libc::wait4(self.pid, &mut status, 0, &mut usage) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        self.reaped = true;
        let exit = exit_info(status);
        let time = |tv: libc::timeval| {
            Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64)
        };
        Ok((
            exit,
            ResourceUse {
                user: time(usage.ru_utime),
                system: time(usage.ru_stime),
                max_rss_bytes: usage.ru_maxrss as u64 * 1024,
            },
        ))
    }
}

fn exit_info(status: libc::c_int) -> ExitInfo {
    if libc::WIFEXITED(status) {
        ExitInfo::Exited(libc::WEXITSTATUS(status))
    } else {
        ExitInfo::Signaled(libc::WTERMSIG(status))
    }
}

impl Drop for JobProcess {
    /// Whatever path dropped us, nothing of the job survives and no zombie is left (a warm
    /// job's slot is killed by the `WarmJob`'s own drop).
    fn drop(&mut self) {
        if !self.reaped && matches!(self.leader, Leader::Forked(_)) {
            self.signal_tree(libc::SIGKILL);
            let mut status = 0;
            // SAFETY: blocking wait for our own SIGKILLed child; it cannot take long.
            unsafe { libc::waitpid(self.pid, &mut status, 0) };
        }
    }
}

fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open returns a new fd we own, or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, libc::PIDFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
