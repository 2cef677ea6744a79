//! One job's sandbox: everything that can allocate or fail slowly happens in `prepare`, in
//! the parent; `enter_in_child` only makes system calls on what was prepared.

mod prepare;

pub(in crate::sandbox) use prepare::{ViewRuleset, ViewSpec};

use super::cgroup::{self, Baseline, Slot};
use super::host::Host;
use super::landlock::{self, Ruleset};
use super::listener;
use super::ns::{self, MountStep, UserMaps};
use super::report::{AppliedLayer, Breach, Usage};
use super::seccomp::Filter;
use super::sys;
use super::{Profile, SandboxError};
use crate::protocol::SandboxStart;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What the core knows about a job when it is about to spawn it.
#[derive(Debug, Clone)]
pub struct JobRequest<'a> {
    /// The session's root (`<sessions>/<id>`); its parent holds the other sessions.
    pub session_dir: &'a Path,
    pub work_dir: &'a Path,
    pub output_dir: &'a Path,
    pub tmp_dir: &'a Path,
    pub network_open: bool,
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub cpu_cores: Option<f64>,
    pub profile: Profile,
    /// The user's project, mounted at its own path (see `crate::workspace`).
    pub workspace: Option<WorkspaceView>,
}

/// How a job sees the user's project: at its real path, read-only or writable, with the
/// protected paths of a writable one bind-mounted read-only in the job's mount namespace.
#[derive(Debug, Clone)]
pub struct WorkspaceView {
    pub path: PathBuf,
    pub writable: bool,
    /// Directories bound over themselves (read-write) so they cannot be renamed away.
    pub pins: Vec<PathBuf>,
    /// Paths bound over themselves read-only.
    pub read_only: Vec<PathBuf>,
    /// Copy-on-write: an overlay of the project is mounted over it, writes go to `upper`.
    pub overlay: Option<OverlayDirs>,
    /// Toolchain caches of the user, each overlaid at its own path (see
    /// `crate::workspace::caches`).
    pub caches: Vec<CacheOverlay>,
    /// Cache dirs the operator shares writable (`workspace.shared_caches`): Landlock grants
    /// them in place.
    pub shared_caches: Vec<PathBuf>,
}

/// An overlay at `path` whose lower layers are `worker_layer` over `path` itself.
#[derive(Debug, Clone)]
pub struct CacheOverlay {
    pub path: PathBuf,
    pub worker_layer: PathBuf,
    pub dirs: OverlayDirs,
}

/// The overlay's own directories (empty, on one filesystem, owned by the worker).
#[derive(Debug, Clone)]
pub struct OverlayDirs {
    pub upper: PathBuf,
    pub work: PathBuf,
}

/// Two small cgroupfs reads per poll (~10 µs).
const BREACH_POLL: std::time::Duration = std::time::Duration::from_millis(50);

pub struct JobSandbox {
    host: Host,
    profile: Profile,
    layers: Vec<AppliedLayer>,
    cgroup: Option<(Slot, Baseline)>,
    child: ChildPlan,
    leader: Mutex<Option<(OwnedFd, libc::pid_t)>>,
    /// With a network allowlist: where the child hands over its listener.
    egress: Mutex<Option<listener::Channel>>,
    /// A prepared sandbox the job enters instead of building one, until it is spawned.
    warm: Mutex<Option<super::warm::Slot>>,
    start: SandboxStart,
}

/// Everything `enter_in_child` touches, prepared before fork.
#[derive(Default)]
struct ChildPlan {
    cgroup_procs: Vec<RawFd>,
    user: Option<UserMaps>,
    unshare: libc::c_int,
    mounts: Vec<MountStep>,
    keeps: Vec<ns::Keep>,
    /// Re-enter the cwd by path after the mounts: it may sit under a mask, re-bound.
    rechdir: bool,
    pid_namespace: bool,
    proc_mount: bool,
    nproc: Option<u64>,
    data: Option<u64>,
    drop_caps: bool,
    landlock: Option<Ruleset>,
    seccomp: Option<Filter>,
    /// The hand-over channel's child end and the port to listen on in the job's namespace.
    egress: Option<(RawFd, u16)>,
    /// What the seccomp filter was built with (a warm slot builds its own copy).
    allow_inet: bool,
}

impl ChildPlan {
    fn own_netns(&self) -> bool {
        self.unshare & libc::CLONE_NEWNET != 0
    }
}

fn layer(name: &str, mechanism: impl Into<String>) -> AppliedLayer {
    AppliedLayer {
        name: name.into(),
        mechanism: mechanism.into(),
    }
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> SandboxError {
    move |source| SandboxError::Io { what, source }
}

impl JobSandbox {
    /// For a job with a network allowlist: the child will listen on 127.0.0.1:`port` in its
    /// own network namespace and hand the listener to the worker (`egress_listener`).
    pub fn listen_for_egress(&mut self, port: u16) -> Result<(), SandboxError> {
        if !self.child.own_netns() {
            return Err(SandboxError::EgressUnavailable(
                "this host or the job's isolation profile gives it none, so the allowlist could not be enforced"
                    .into(),
            ));
        }
        let channel = listener::Channel::new().map_err(io_err("creating the egress channel"))?;
        self.child.egress = Some((channel.child_fd(), port));
        *self
            .egress
            .get_mut()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(channel);
        self.layers.push(layer(
            "network",
            format!("egress proxy on 127.0.0.1:{port} in the job's network namespace: only allowlisted destinations"),
        ));
        Ok(())
    }

    /// After spawn: the listener the job's namespace handed over.
    pub fn egress_listener(&self) -> io::Result<std::net::TcpListener> {
        let channel = self
            .egress
            .lock()
            .ok()
            .and_then(|mut channel| channel.take())
            .ok_or_else(|| io::Error::other("no egress channel was prepared"))?;
        channel.receive()
    }

    /// Where the job's sandbox comes from.
    pub fn start_kind(&self) -> SandboxStart {
        self.start
    }

    /// Whether the job will enter a prepared sandbox (`start_warm`) rather than build one in
    /// its own start (`enter_in_child`).
    pub fn has_warm_slot(&self) -> bool {
        crate::sync::lock(&self.warm).is_some()
    }

    /// Starts the job in its prepared sandbox: the slot runs the same mount plan, limits,
    /// Landlock ruleset and seccomp filter a cold start applies in `enter_in_child`.
    pub fn start_warm(&self, launch: super::warm::Launch) -> io::Result<super::warm::WarmJob> {
        let slot = crate::sync::lock(&self.warm)
            .take()
            .ok_or_else(|| io::Error::other("no prepared sandbox"))?;
        let c = &self.child;
        let mut fds = launch.stdio.to_vec();
        if let Some(ruleset) = &c.landlock {
            fds.push(ruleset.raw_fd());
        }
        if let Some((channel, _)) = c.egress {
            fds.push(channel);
        }
        fds.extend(c.cgroup_procs.iter().copied());
        let start = super::warm::JobStart {
            argv: launch.argv,
            env: launch.env,
            cwd: launch.cwd,
            rlimits: launch.rlimits,
            cpu_set: launch.cpu_set,
            mounts: c.mounts.clone(),
            keeps: c.keeps.iter().map(|k| k.path().to_owned()).collect(),
            proc_mount: c.proc_mount,
            // RLIMIT_NPROC counted a cold start's relay and init; a slot is one process.
            nproc: c.nproc.map(|n| n - u64::from(c.pid_namespace)),
            data: c.data,
            landlock: c
                .landlock
                .as_ref()
                .map(|r| (r.rights().all_fs, r.rights().read)),
            seccomp: c.seccomp.as_ref().map(|_| c.allow_inet),
            egress_port: c.egress.map(|(_, port)| port),
            cgroup_procs: c.cgroup_procs.len(),
        };
        super::warm::launch(slot, &start, &fds, c.pid_namespace)
    }

    /// The profile the job actually runs under (never looser than the worker's floor).
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Call inside `pre_exec`, after setsid and the rlimits. Async-signal-safe: system calls
    /// on memory prepared by `prepare`, no allocation, no locks.
    ///
    /// With a PID namespace the calling process becomes a relay that never returns from here:
    /// it waits for the job (forked into the namespace) and exits with its status.
    ///
    /// # Safety
    /// Only between fork and exec, in the child of a `Command` whose `JobSandbox` is alive.
    pub unsafe fn enter_in_child(&self) -> io::Result<()> {
        let c = &self.child;
        for fd in &c.cgroup_procs {
            sys::write_all(*fd, b"0")?;
        }
        if let Some(maps) = &c.user {
            maps.enter()?;
        }
        if c.unshare != 0 {
            // SAFETY: plain syscall.
            sys::check_int(unsafe { libc::unshare(c.unshare) })?;
        }
        if c.unshare & libc::CLONE_NEWNET != 0 {
            ns::loopback_up()?;
        }
        if let Some((channel, port)) = c.egress {
            listener::hand_over(channel, port)?;
        }
        let mut cwd = [0u8; libc::PATH_MAX as usize];
        if c.rechdir {
            // SAFETY: getcwd writes at most len bytes into our stack buffer; no allocation.
            if unsafe { libc::getcwd(cwd.as_mut_ptr().cast(), cwd.len()) }.is_null() {
                return Err(io::Error::last_os_error());
            }
        }
        for step in &c.mounts {
            step.run(&c.keeps)?;
        }
        if c.rechdir {
            // SAFETY: getcwd NUL-terminated the buffer.
            sys::check_int(unsafe { libc::chdir(cwd.as_ptr().cast()) })?;
        }
        if c.pid_namespace {
            ns::fork_into_pid_namespace()?;
            if c.proc_mount
                && ns::mount_proc().is_ok()
                && let Some(ruleset) = &c.landlock
            {
                landlock::add_rule_at(ruleset.raw_fd(), c"/proc", ruleset.rights().read)?;
            }
        }
        if let Some(n) = c.nproc {
            sys::set_rlimit(libc::RLIMIT_NPROC, n)?;
        }
        if let Some(bytes) = c.data {
            sys::set_rlimit(libc::RLIMIT_DATA, bytes)?;
        }
        if c.drop_caps {
            drop_capabilities()?;
        }
        if let Some(ruleset) = &c.landlock {
            for target in c.mounts.iter().filter_map(MountStep::writable_target) {
                landlock::add_rule_at(ruleset.raw_fd(), target, ruleset.rights().all_fs)?;
            }
            sys::no_new_privs()?;
            landlock::restrict_self(ruleset.raw_fd())?;
        }
        if let Some(filter) = &c.seccomp {
            sys::no_new_privs()?;
            filter.install()?;
        }
        Ok(())
    }

    /// Call right after a successful spawn with the child's pid: keeps a pidfd so the tree
    /// kill can never hit a recycled pid.
    pub fn attach(&self, child_pid: u32) -> io::Result<()> {
        // SAFETY: pidfd_open on our own child.
        let fd = sys::check(unsafe {
            libc::syscall(libc::SYS_pidfd_open, child_pid as libc::pid_t, 0u32)
        })?;
        // SAFETY: a new fd from the kernel.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        if let Ok(mut leader) = self.leader.lock() {
            *leader = Some((fd, child_pid as libc::pid_t));
        }
        Ok(())
    }

    /// SIGKILL to every process of the job, including those that left its process group or
    /// session. Idempotent. Call before reaping the leader when only the process group is
    /// available.
    pub fn kill_all(&self) {
        if let Some((slot, _)) = &self.cgroup {
            cgroup::kill_slot(slot);
        }
        let Ok(leader) = self.leader.lock() else {
            return;
        };
        let Some((pidfd, pid)) = leader.as_ref() else {
            return;
        };
        // SAFETY: signal through a pidfd (cannot hit a recycled pid).
        let alive = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0u32,
            )
        } == 0;
        if alive {
            // The leader is not reaped, so its group id still names the job's group. With a
            // PID namespace, killing the relay takes the namespace down through its init's
            // parent-death signal.
            // SAFETY: plain signal delivery.
            unsafe { libc::killpg(*pid, libc::SIGKILL) };
        }
    }

    /// A limit the kernel enforced on the job, if any.
    pub fn breach(&self) -> Option<Breach> {
        let (slot, baseline) = self.cgroup.as_ref()?;
        let layout = &self.host.inner.cgroups.layout;
        if cgroup::oom_kills(slot, baseline, layout) {
            Some(Breach::MemoryLimit)
        } else if cgroup::pids_hit(slot, baseline, layout) {
            Some(Breach::PidsLimit)
        } else {
            None
        }
    }

    /// Resolves when the kernel enforces a limit on the job; never resolves without a cgroup.
    /// Cancel-safe: meant for a `select!` beside the job's exit, so a fork bomb or an OOM kill
    /// ends the job at once with its own reason instead of at the timeout.
    pub async fn breached(&self) -> Breach {
        if self.cgroup.is_none() {
            return std::future::pending().await;
        }
        loop {
            if let Some(breach) = self.breach() {
                return breach;
            }
            tokio::time::sleep(BREACH_POLL).await;
        }
    }

    /// Peak memory and CPU time of the whole tree, where a cgroup measures them.
    pub fn usage(&self) -> Usage {
        match &self.cgroup {
            Some((slot, baseline)) => {
                cgroup::usage(slot, baseline, &self.host.inner.cgroups.layout)
            }
            None => Usage::default(),
        }
    }

    /// What the job actually ran under.
    pub fn layers(&self) -> Vec<AppliedLayer> {
        self.layers.clone()
    }
}

impl Drop for JobSandbox {
    fn drop(&mut self) {
        if let Some((slot, _)) = self.cgroup.take() {
            self.host.inner.cgroups.release(slot);
        }
    }
}

/// Root without a user namespace: keep uid 0 (Landlock still confines it) but drop every
/// capability, now and for anything exec'd later. Async-signal-safe.
fn drop_capabilities() -> io::Result<()> {
    for cap in 0..64 {
        // SAFETY: plain prctl; EINVAL past the last capability ends the loop.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } < 0 {
            break;
        }
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let data = [
        Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        },
        Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        },
    ];
    // SAFETY: capset reads a valid header and two data structs.
    sys::check(unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) })
        .map(drop)
}
