//! One job's sandbox: everything that can allocate or fail slowly happens in `prepare`, in
//! the parent; `enter_in_child` only makes system calls on what was prepared.

use super::cgroup::{self, Baseline, Slot};
use super::host::{Host, TreeKill};
use super::landlock::{self, Extras, Rights, Ruleset};
use super::listener;
use super::ns::{self, MountStep, UserMaps};
use super::report::{AppliedLayer, Breach, Usage};
use super::seccomp::Filter;
use super::sys;
use super::{Profile, SandboxError};
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
    /// Builds the job's sandbox. With `strict` (from the job or the worker's floor) a layer
    /// the host cannot provide is an error naming it; otherwise missing layers are skipped and
    /// left out of `layers()`.
    pub fn prepare(host: &Host, req: &JobRequest) -> Result<JobSandbox, SandboxError> {
        let h = &host.inner;
        let profile = req.profile.at_least(h.config.profile);
        if req.network_open && !h.config.allow_network {
            return Err(SandboxError::NetworkNotAllowed);
        }
        if profile == Profile::Strict
            && let Some(gap) = host.strict_gaps().into_iter().next()
        {
            return Err(SandboxError::Refused {
                layer: gap.name,
                why: gap.detail,
            });
        }
        let sandboxed = profile != Profile::None;
        let mut layers = Vec::new();
        let mut child = ChildPlan::default();
        // Directories the job sees as a fresh writable tmpfs (their rule is added in the child).
        let mut private_dirs: Vec<PathBuf> = Vec::new();

        let cgroup = if h.cgroups.any() {
            let limits = cgroup::Limits {
                memory: req.memory_bytes,
                pids: req.pids,
                cpu_cores: req.cpu_cores,
            };
            match h.cgroups.take(limits) {
                Ok(pair) => Some(pair),
                Err(source) if profile == Profile::Strict => {
                    return Err(SandboxError::Io {
                        what: "creating the job's cgroup",
                        source,
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "job runs without a cgroup");
                    None
                }
            }
        } else {
            None
        };
        if let Some((slot, _)) = &cgroup {
            child.cgroup_procs = slot.procs_fds().collect();
        }
        let layout = &h.cgroups.layout;
        let in_cgroup = cgroup.is_some();
        let memory_cg = in_cgroup.then(|| layout.memory()).flatten();
        let pids_cg = in_cgroup.then(|| layout.pids()).flatten();
        let cpu_cg = in_cgroup.then(|| layout.cpu()).flatten();
        if let (Some(bytes), Some(mechanism)) = (req.memory_bytes, memory_cg) {
            layers.push(layer("memory", format!("{mechanism} = {bytes}")));
        } else if let Some(bytes) = req.memory_bytes {
            child.data = Some(bytes);
            layers.push(layer(
                "memory",
                format!("RLIMIT_DATA = {bytes} per process"),
            ));
        }
        if let (Some(cores), Some(mechanism)) = (req.cpu_cores, cpu_cg) {
            layers.push(layer("cpu", format!("{mechanism} = {cores} cores")));
        }

        // Always where the host allows it, cgroup.kill or not: the job as init of its own
        // namespace (with the parent-death signal on it) dies with the worker even when the
        // worker is SIGKILLed and nothing runs `cgroup.kill`, and its /proc shows no host
        // process (other workers' jobs and their command lines included).
        let use_pidns = sandboxed && h.pidns();
        let userns = sandboxed && h.userns();
        if let (Some(n), None) = (req.pids, pids_cg) {
            if userns && !h.root {
                // The relay and the init of a PID namespace count too.
                child.nproc = Some(n + 2 * u64::from(use_pidns));
                layers.push(layer(
                    "pids",
                    format!(
                        "RLIMIT_NPROC = {n} in the job's user namespace (refused forks are not \
                         seen by the worker: the end is the job's own, not pids_limit)"
                    ),
                ));
            }
        } else if let (Some(n), Some(mechanism)) = (req.pids, pids_cg) {
            layers.push(layer("pids", format!("{mechanism} = {n}")));
        }

        if sandboxed && h.can_unshare() {
            if userns {
                child.user = Some(UserMaps::identity());
                layers.push(layer("privileges", "user namespace"));
            } else if h.root {
                child.drop_caps = true;
                layers.push(layer("privileges", "all capabilities dropped"));
            }
            if h.mountns() {
                child.unshare |= libc::CLONE_NEWNS;
            }
            if !req.network_open && h.netns() {
                child.unshare |= libc::CLONE_NEWNET;
                layers.push(layer("network", "network namespace"));
            }
            if h.ns.ipc.is_ok() {
                child.unshare |= libc::CLONE_NEWIPC;
            }
            if use_pidns {
                child.unshare |= libc::CLONE_NEWPID;
                child.pid_namespace = true;
                child.proc_mount = h.mountns() && h.ns.proc_mount.is_ok();
            }
        }
        match h.tree_kill() {
            TreeKill::Cgroup if in_cgroup => {
                let kill = layout.kill().unwrap_or("cgroup");
                layers.push(layer(
                    "process_tree",
                    if child.pid_namespace {
                        format!("{kill} + PID namespace")
                    } else {
                        kill.to_owned()
                    },
                ));
            }
            _ if child.pid_namespace => layers.push(layer("process_tree", "PID namespace")),
            _ => layers.push(layer("process_tree", "process group")),
        }

        let keep = keep_paths(req, h);
        if req.workspace.is_some() && child.unshare & libc::CLONE_NEWNS == 0 {
            return Err(SandboxError::WorkspaceUnavailable(
                "a workspace job needs a mount namespace (its read-only paths are mounts), \
                 which this worker cannot create here or under profile `none`"
                    .into(),
            ));
        }
        if child.unshare & libc::CLONE_NEWNS != 0 {
            let landlock_ok = h.landlock_abi().is_some();
            let (tmp_size, shm_size) = tmpfs_sizes(req.memory_bytes);
            let mut masks: Vec<(PathBuf, bool, String)> = vec![
                (PathBuf::from("/tmp"), true, format!("mode=1777{tmp_size}")),
                (
                    PathBuf::from("/dev/shm"),
                    true,
                    format!("mode=1777{shm_size}"),
                ),
            ];
            if !req.network_open {
                masks.push((PathBuf::from("/run"), false, masked("mode=755")));
                masks.push((PathBuf::from("/var/run"), false, masked("mode=755")));
            }
            let mut hidden_files = Vec::new();
            if !landlock_ok {
                // Without Landlock the mounts are the only thing hiding secrets.
                for path in h.hidden.iter().flat_map(|p| super::fsview::expand(p)) {
                    if path.is_dir() {
                        masks.push((path, false, masked("mode=000")));
                    } else if path.exists() {
                        hidden_files.push(path);
                    }
                }
                if let Some(root) = sessions_root(req) {
                    let siblings = super::host::sibling_workers(&root)
                        .map(|pattern| super::fsview::expand(&pattern))
                        .unwrap_or_default();
                    for sibling in siblings.into_iter().filter(|s| *s != root) {
                        masks.push((sibling, false, masked("mode=000")));
                    }
                    masks.push((root, false, masked("mode=755")));
                }
            }
            let masks = real_dirs(masks);
            let (mut steps, mut keeps) = ns::plan_mounts(&masks, &hidden_files, &keep)
                .map_err(io_err("planning the job's mounts"))?;
            private_dirs = private_tmpfs_dirs(&steps, req.workspace.as_ref());
            if let Some(workspace) = &req.workspace {
                let mounts = workspace_mounts(workspace, &mut steps, &mut keeps)
                    .map_err(io_err("planning the workspace mounts"))?;
                steps.extend(mounts);
                layers.push(layer("workspace", workspace_mechanism(workspace)));
            }
            child.mounts = steps;
            child.keeps = keeps;
            child.rechdir = true;
            layers.push(layer(
                "mounts",
                match req.memory_bytes {
                    Some(bytes) => format!(
                        "mount namespace: private /tmp and /dev/shm, tmpfs of at most {} and {} \
                         bytes (their sum is the memory limit)",
                        bytes - bytes / 4,
                        bytes / 4
                    ),
                    None => "mount namespace: private /tmp and /dev/shm".to_owned(),
                },
            ));
            if !req.network_open {
                layers.push(layer("unix_sockets", "tmpfs over /run and /tmp"));
            }
        }

        if sandboxed {
            if let Some(abi) = h.landlock_abi() {
                let rights = Rights::for_abi(abi);
                let extras = Extras {
                    deny_tcp: !req.network_open && !child.own_netns(),
                    scope: true,
                };
                let ruleset = build_ruleset(h, req, rights, extras, &private_dirs)
                    .map_err(io_err("building the Landlock ruleset"))?;
                child.landlock = Some(ruleset);
                layers.push(layer("filesystem", format!("Landlock ABI {abi}")));
                if abi >= 6 {
                    layers.push(layer("signals", "Landlock scope"));
                }
            }
            if h.seccomp.is_ok() {
                let allow_inet = req.network_open || child.own_netns();
                child.seccomp = Some(Filter::build(allow_inet));
                layers.push(layer("syscall_filter", "seccomp deny list + no_new_privs"));
                if !allow_inet {
                    layers.push(layer("network", "IP sockets refused by seccomp"));
                }
            }
        }

        Ok(JobSandbox {
            host: host.clone(),
            profile,
            layers,
            cgroup,
            child,
            leader: Mutex::new(None),
            egress: Mutex::new(None),
        })
    }

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
            for step in &c.mounts {
                if let MountStep::Tmpfs {
                    target,
                    writable: true,
                    ..
                }
                | MountStep::Overlay { target, .. } = step
                {
                    landlock::add_rule_at(ruleset.raw_fd(), target, ruleset.rights().all_fs)?;
                }
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

fn sessions_root(req: &JobRequest) -> Option<PathBuf> {
    let root = std::fs::canonicalize(req.session_dir.parent()?).ok()?;
    (root != Path::new("/")).then_some(root)
}

/// The workspace's own mounts, made after the masks (a workspace under /tmp is back in place
/// by then): the whole tree read-only for `read`; for `write`, pins then read-only holes.
fn workspace_mounts(
    workspace: &WorkspaceView,
    steps: &mut Vec<MountStep>,
    keeps: &mut Vec<ns::Keep>,
) -> io::Result<Vec<MountStep>> {
    // The layers are opened right after the namespace is made, before any mask can hide
    // them; the handles also keep commas or colons in a path out of the option string.
    let mut overlay = |target: &Path, layers: &[&Path]| -> io::Result<MountStep> {
        let mut slots = Vec::with_capacity(layers.len());
        for path in layers {
            slots.push(keeps.len());
            keeps.push(ns::Keep::new(path)?);
            steps.insert(1, MountStep::Open(keeps.len() - 1));
        }
        Ok(MountStep::Overlay {
            target: ns::cstring(target)?,
            layers: slots,
        })
    };
    let mut mounts = Vec::new();
    for cache in &workspace.caches {
        let layers = [
            cache.worker_layer.as_path(),
            &cache.path,
            &cache.dirs.upper,
            &cache.dirs.work,
        ];
        mounts.push(overlay(&cache.path, &layers)?);
    }
    if let Some(dirs) = &workspace.overlay {
        mounts.push(overlay(
            &workspace.path,
            &[&workspace.path, &dirs.upper, &dirs.work],
        )?);
        return Ok(mounts);
    }
    if !workspace.writable {
        mounts.push(MountStep::BindSelf {
            target: ns::cstring(&workspace.path)?,
            read_only: true,
        });
        return Ok(mounts);
    }
    let pins = workspace.pins.iter().map(|p| (p, false));
    let holes = workspace.read_only.iter().map(|p| (p, true));
    for (path, read_only) in pins.chain(holes) {
        mounts.push(MountStep::BindSelf {
            target: ns::cstring(path)?,
            read_only,
        });
    }
    Ok(mounts)
}

fn workspace_mechanism(workspace: &WorkspaceView) -> String {
    if workspace.overlay.is_some() {
        format!(
            "{} copy-on-write overlayfs; writes kept apart as changes",
            workspace.path.display()
        )
    } else if workspace.writable {
        format!(
            "{} writable in place (Landlock); {} protected path(s) read-only bind mounts",
            workspace.path.display(),
            workspace.read_only.len()
        )
    } else {
        format!("{} read-only bind mount", workspace.path.display())
    }
}

/// Paths the job must keep seeing where they are, even under a masked directory.
fn keep_paths(req: &JobRequest, h: &super::host::Inner) -> Vec<PathBuf> {
    let mut keep: Vec<PathBuf> = [req.session_dir, req.work_dir, req.output_dir, req.tmp_dir]
        .into_iter()
        .map(Path::to_path_buf)
        .chain(req.workspace.iter().map(|w| w.path.clone()))
        .chain(h.config.extra_rw.iter().cloned())
        .chain(h.config.extra_ro.iter().cloned())
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    keep.sort();
    keep.dedup();
    // A path inside another kept path comes back with its parent.
    let all = keep.clone();
    keep.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q)));
    keep
}

/// `size=` options for the job's writable tmpfs mounts: a tmpfs lives in RAM, and where no
/// memory cgroup charges its pages to the job (RLIMIT_DATA does not count them) the size is
/// the only bound. /tmp gets three quarters of the memory limit and /dev/shm the rest, so
/// together they never hold more than the limit. Without a limit, the kernel's default.
fn tmpfs_sizes(memory_bytes: Option<u64>) -> (String, String) {
    match memory_bytes {
        Some(bytes) => (
            format!(",size={}", (bytes - bytes / 4).max(4096)),
            format!(",size={}", (bytes / 4).max(4096)),
        ),
        None => (String::new(), String::new()),
    }
}

/// Options of a tmpfs that only hides what is below it: the job cannot write there through
/// Landlock, and the size keeps it harmless where Landlock is missing.
fn masked(mode: &str) -> String {
    format!("{mode},size=1m")
}

/// Masks only apply to directories that exist; a symlink (/var/run -> /run) is masked through
/// its target once.
fn real_dirs(masks: Vec<(PathBuf, bool, String)>) -> Vec<(PathBuf, bool, String)> {
    let mut out: Vec<(PathBuf, bool, String)> = Vec::new();
    for (path, writable, options) in masks {
        let Ok(real) = std::fs::canonicalize(&path) else {
            continue;
        };
        if real.is_dir() && !out.iter().any(|(p, _, _)| *p == real) {
            out.push((real, writable, options));
        }
    }
    out
}

/// The writable tmpfs masks the plan kept (a mask over a kept path is dropped by the plan).
/// A workspace under one is reached through the host's entries there, so that mask is left
/// out and its directory walked as before.
fn private_tmpfs_dirs(steps: &[MountStep], workspace: Option<&WorkspaceView>) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    steps
        .iter()
        .filter_map(|step| match step {
            MountStep::Tmpfs {
                target,
                writable: true,
                ..
            } => Some(PathBuf::from(std::ffi::OsStr::from_bytes(
                target.as_bytes(),
            ))),
            _ => None,
        })
        .filter(|dir| {
            !workspace.is_some_and(|w| {
                std::fs::canonicalize(&w.path)
                    .unwrap_or_else(|_| w.path.clone())
                    .starts_with(dir)
            })
        })
        .collect()
}

fn build_ruleset(
    h: &super::host::Inner,
    req: &JobRequest,
    rights: Rights,
    extras: Extras,
    private_dirs: &[PathBuf],
) -> io::Result<Ruleset> {
    let ruleset = Ruleset::new(rights, extras)?;
    let view = h.read_view(sessions_root(req).as_deref(), private_dirs)?;
    for entry in &view.entries {
        let access = entry.access.unwrap_or(rights.read);
        let access = if entry.is_dir {
            access
        } else {
            rights.for_file(access)
        };
        landlock::add_rule(ruleset.raw_fd(), entry.raw_fd(), access & rights.all_fs)?;
    }
    for path in [req.session_dir, req.tmp_dir]
        .into_iter()
        .chain(h.config.extra_rw.iter().map(PathBuf::as_path))
    {
        ruleset.allow(path, rights.all_fs)?;
    }
    for path in &h.config.extra_ro {
        ruleset.allow(path, rights.read)?;
    }
    if let Some(workspace) = req.workspace.as_ref().filter(|w| w.writable) {
        ruleset.allow(&workspace.path, rights.all_fs)?;
    }
    for dir in req.workspace.iter().flat_map(|w| &w.shared_caches) {
        ruleset.allow(dir, rights.all_fs)?;
    }
    Ok(ruleset)
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
