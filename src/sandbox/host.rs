//! What this host can enforce, probed once at start-up and reported honestly.

use super::cgroup::{self, Cgroups};
use super::config::{ROOT_HIDDEN, SandboxConfig, WORKER_DIR_PREFIX, expand_home, hidden_category};
use super::fsview::{self, ReadView};
use super::report::{HiddenPath, IsolationReport, LayerReport, active, degraded, unavailable};
use super::{landlock, ns, seccomp};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The host's sandbox capabilities; cheap to clone (shared).
#[derive(Clone)]
pub struct Host {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub config: SandboxConfig,
    pub root: bool,
    pub uid: u32,
    /// Hidden paths, absolute and symlink-resolved.
    pub hidden: Vec<PathBuf>,
    pub landlock: Result<u32, String>,
    pub seccomp: Result<(), String>,
    pub ns: ns::Support,
    pub cgroups: Cgroups,
    pub probe_ms: f64,
    /// Prepared single-use sandboxes, once the worker started them (`Host::start_warm`).
    pub warm: std::sync::OnceLock<Arc<super::warm::WarmPool>>,
    /// Views by excluded set: jobs with and without a private /tmp need different ones, and
    /// alternating between them must not rebuild each time.
    views: Mutex<Vec<Arc<ReadView>>>,
    /// Resolved fixed paths (see `Inner::resolved`).
    resolved: Mutex<Vec<(PathBuf, Resolved)>>,
}

/// A fixed path, symlinks resolved, and whether it is a directory.
#[derive(Debug, Clone)]
pub(super) struct Resolved {
    pub path: PathBuf,
    pub is_dir: bool,
}

/// How a job's whole process tree is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TreeKill {
    Cgroup,
    PidNamespace,
    ProcessGroup,
}

/// Distinct read views cached at once (a handful of job shapes; each holds one fd per rule).
const VIEWS_KEPT: usize = 4;

fn home() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(home));
    }
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|user| user.dir)
}

impl Host {
    /// Probes Landlock, seccomp, namespaces (in a throwaway child) and cgroups. A few
    /// milliseconds; needs no root.
    pub fn probe(config: &SandboxConfig) -> Host {
        let started = Instant::now();
        let home = home();
        // SAFETY: geteuid cannot fail.
        let uid = unsafe { libc::geteuid() };
        let root_only = ROOT_HIDDEN.iter().map(PathBuf::from).filter(|_| uid == 0);
        let hidden = fsview::normalise(
            config
                .hidden
                .iter()
                .filter_map(|path| expand_home(path, home.as_deref()))
                .chain(root_only),
        );
        let landlock_abi = landlock::probe_abi();
        let seccomp_ok = seccomp::Filter::supported();
        let filter = seccomp_ok
            .as_ref()
            .ok()
            .map(|_| seccomp::Filter::build(true));
        let ns = ns::probe(landlock_abi.as_ref().ok().copied(), filter.as_ref());
        let landlock = match (&landlock_abi, &ns.landlock_enforced) {
            (Ok(abi), Ok(())) => Ok(*abi),
            (Ok(abi), Err(why)) => Err(format!(
                "Landlock ABI {abi} reported but not enforced: {why}"
            )),
            (Err(why), _) => Err(why.clone()),
        };
        let seccomp = match (&seccomp_ok, &ns.seccomp_enforced) {
            (Ok(()), Ok(())) => Ok(()),
            (Ok(()), Err(why)) => Err(format!(
                "seccomp present but the filter did not work: {why}"
            )),
            (Err(why), _) => Err(why.clone()),
        };
        let cgroups = Cgroups::new(cgroup::probe());
        let inner = Inner {
            config: config.clone(),
            root: uid == 0,
            uid,
            hidden,
            landlock,
            seccomp,
            ns,
            cgroups,
            probe_ms: started.elapsed().as_secs_f64() * 1000.0,
            views: Mutex::new(Vec::new()),
            resolved: Mutex::new(Vec::new()),
            warm: std::sync::OnceLock::new(),
        };
        tracing::debug!(probe_ms = inner.probe_ms, "sandbox host probed");
        Host {
            inner: Arc::new(inner),
        }
    }

    /// Starts keeping `isolation.warm_slots` prepared sandboxes per kind, beginning with the
    /// kind a default job (network none) uses. Sandboxed jobs use slots only where every
    /// namespace a slot is made of is available; jobs start cold until the first is ready.
    /// While busy it keeps up to `max_concurrent` (the jobs the worker runs at once) ready.
    pub fn start_warm(&self, max_concurrent: usize) {
        let h = &self.inner;
        if h.config.warm_slots == 0 {
            return;
        }
        // The kind a job with no profile of its own will want; others are added on first use.
        // Without the namespaces a sandboxed slot needs, only profile `none` jobs use slots.
        let kind = match h.config.profile {
            super::Profile::None => 0,
            _ => h.warm_namespaces(false).unwrap_or(0),
        };
        let weak = Arc::downgrade(&self.inner);
        let configured = h.config.warm_slots as usize;
        if let Some(pool) = super::warm::WarmPool::start(configured, max_concurrent, kind, weak) {
            let _ = h.warm.set(pool);
        }
    }

    /// The warm pool's figures, when it runs.
    pub fn warm_metrics(&self) -> Option<crate::protocol::WarmSandboxMetrics> {
        self.inner.warm.get().map(|pool| pool.metrics())
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// Whether jobs can get a mount namespace here (workspaces choose their mechanism by it).
    pub fn mount_namespace(&self) -> bool {
        self.inner.mountns()
    }

    /// Milliseconds the probe took.
    pub fn probe_ms(&self) -> f64 {
        self.inner.probe_ms
    }

    pub fn report(&self) -> IsolationReport {
        let i = &self.inner;
        IsolationReport {
            profile: i.config.profile.as_str().into(),
            layers: vec![
                i.filesystem_layer(),
                i.network_layer(),
                i.egress_layer(),
                i.unix_socket_layer(),
                i.syscall_layer(),
                i.process_tree_layer(),
                i.signal_layer(),
                i.privilege_layer(),
            ],
            limits: vec![
                i.memory_limit(),
                i.pids_limit(),
                i.cpu_limit(),
                i.accounting(),
            ],
            hidden: i.hidden_report(),
        }
    }

    /// Layers `strict` needs that this host cannot give: empty when strict works.
    pub fn strict_gaps(&self) -> Vec<LayerReport> {
        let report = self.report();
        report
            .layers
            .into_iter()
            .chain(report.limits)
            .filter(|layer| {
                layer.state != super::LayerState::Active
                    && STRICT_LAYERS.contains(&layer.name.as_str())
            })
            .collect()
    }
}

/// Character devices every job may use, inside an otherwise unreadable /dev.
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
];

/// What `strict` refuses to run without.
pub(super) const STRICT_LAYERS: &[&str] = &[
    "filesystem",
    "network",
    "unix_sockets",
    "syscall_filter",
    "process_tree",
    "signals",
    "privileges",
    "memory",
    "pids",
];

/// Every worker's dir beside `sessions_root` (ours included), as a hidden pattern, when the
/// sessions root is a worker dir under a shared base.
pub(super) fn sibling_workers(sessions_root: &Path) -> Option<PathBuf> {
    let name = sessions_root.file_name()?.to_str()?;
    name.starts_with(WORKER_DIR_PREFIX)
        .then(|| sessions_root.parent())
        .flatten()
        .map(|base| base.join(format!("{WORKER_DIR_PREFIX}*")))
}

impl Inner {
    /// `canonicalize` of a path that stays put while the worker runs (the sessions root, the
    /// directories a job's mounts mask, configured extra paths), resolved once instead of a
    /// `readlink` per component per job. A path that cannot be resolved yet is tried again
    /// next time.
    pub fn resolved(&self, path: &Path) -> Option<Resolved> {
        let mut memo = crate::sync::lock(&self.resolved);
        if let Some((_, hit)) = memo.iter().find(|(p, _)| p == path) {
            return Some(hit.clone());
        }
        let real = std::fs::canonicalize(path).ok()?;
        let resolved = Resolved {
            is_dir: real.is_dir(),
            path: real,
        };
        // Bounded: the fixed paths of a worker are a handful.
        if memo.len() < 64 {
            memo.push((path.to_path_buf(), resolved.clone()));
        }
        Some(resolved)
    }

    pub fn userns(&self) -> bool {
        self.ns.user.is_ok()
    }

    /// Mount, network, IPC and PID namespaces need CAP_SYS_ADMIN: a user namespace gives it,
    /// so does running as root.
    pub fn can_unshare(&self) -> bool {
        self.userns() || self.root
    }

    pub fn mountns(&self) -> bool {
        self.can_unshare() && self.ns.mount.is_ok()
    }

    /// A job with its own PID namespace gets its own /proc (a cold start mounts it in the
    /// child, a warm slot ahead of its job).
    pub fn own_proc(&self) -> bool {
        self.mountns() && self.ns.proc_mount.is_ok()
    }

    pub fn netns(&self) -> bool {
        self.can_unshare() && self.ns.net.is_ok()
    }

    pub fn pidns(&self) -> bool {
        self.can_unshare() && self.ns.pid.is_ok()
    }

    /// The namespaces besides the user namespace a sandboxed job gets here (its own network
    /// only without `network: "open"`): what a cold start unshares and a slot is made with.
    pub fn job_namespaces(&self, network_open: bool) -> libc::c_int {
        let mut flags = 0;
        if self.mountns() {
            flags |= libc::CLONE_NEWNS;
        }
        if !network_open && self.netns() {
            flags |= libc::CLONE_NEWNET;
        }
        if self.ns.ipc.is_ok() {
            flags |= libc::CLONE_NEWIPC;
        }
        if self.pidns() {
            flags |= libc::CLONE_NEWPID;
        }
        flags
    }

    /// The namespaces of a prepared sandbox a sandboxed job can enter; `None` where a slot
    /// lacks one it needs (a user, mount and PID namespace).
    pub fn warm_namespaces(&self, network_open: bool) -> Option<libc::c_int> {
        (self.userns() && self.mountns() && self.pidns()).then(|| self.job_namespaces(network_open))
    }

    pub fn landlock_abi(&self) -> Option<u32> {
        self.landlock.as_ref().ok().copied()
    }

    pub fn tree_kill(&self) -> TreeKill {
        if self.cgroups.layout.kill().is_some() {
            TreeKill::Cgroup
        } else if self.pidns() {
            TreeKill::PidNamespace
        } else {
            TreeKill::ProcessGroup
        }
    }

    /// The read-only view for jobs whose sessions live under `sessions_root`, rebuilt only
    /// when a directory it was derived from changed.
    pub fn read_view(
        &self,
        sessions_root: Option<&Path>,
        masked: &[PathBuf],
    ) -> std::io::Result<Arc<ReadView>> {
        // `hidden` was resolved at probe and the sessions root is canonical already.
        let mut excluded: Vec<PathBuf> = self.hidden.clone();
        excluded.push(PathBuf::from("/dev"));
        excluded.extend(sessions_root.map(Path::to_path_buf));
        // Other workers sharing the configured base dir keep their sessions beside ours.
        excluded.extend(sessions_root.and_then(sibling_workers));
        // A directory the job's mount namespace covers with a fresh tmpfs shows the job none
        // of the host's entries, so granting them (one rule per entry of a busy /tmp, and a
        // rebuild each time someone adds one) buys nothing: the tmpfs gets its own rule.
        excluded.extend(masked.iter().cloned());
        excluded.sort();
        excluded.dedup();
        let mut cache = self
            .views
            .lock()
            .map_err(|_| std::io::Error::other("view cache poisoned"))?;
        if let Some(view) = cache
            .iter()
            .find(|v| v.excluded() == excluded.as_slice() && v.is_fresh())
        {
            return Ok(view.clone());
        }
        let rights = landlock::Rights::for_abi(self.landlock_abi().unwrap_or(1));
        let device = rights.file_rw | rights.all_fs & landlock::IOCTL_DEV;
        let mut grants: Vec<(&str, u64)> = DEVICES.iter().map(|d| (*d, device)).collect();
        // Listing /dev is harmless; opening a raw disk as a root job is not.
        grants.push(("/dev", landlock::READ_DIR));
        grants.push(("/dev/pts", device | landlock::READ_DIR));
        let view = Arc::new(ReadView::build(excluded, &grants)?);
        cache.retain(|v| v.excluded() != view.excluded());
        if cache.len() >= VIEWS_KEPT {
            cache.remove(0);
        }
        cache.push(view.clone());
        Ok(view)
    }

    /// The configured hidden paths (and the root-only ones on a root worker), by category;
    /// empty when neither Landlock nor a mount namespace can hide anything.
    pub fn hidden_report(&self) -> Vec<HiddenPath> {
        if self.landlock.is_err() && !self.mountns() {
            return Vec::new();
        }
        let root_only = ROOT_HIDDEN.iter().map(PathBuf::from).filter(|_| self.root);
        self.config
            .hidden
            .iter()
            .cloned()
            .chain(root_only)
            .map(|path| HiddenPath {
                category: hidden_category(&path).to_owned(),
                path: path.display().to_string(),
            })
            .collect()
    }

    fn hidden_list(&self) -> String {
        let mut categories: Vec<String> = Vec::new();
        for hidden in self.hidden_report() {
            if !categories.contains(&hidden.category) {
                categories.push(hidden.category);
            }
        }
        format!(
            "the hidden paths ({}; listed in `hidden`)",
            categories.join(", ")
        )
    }

    fn filesystem_layer(&self) -> LayerReport {
        let mounts = if self.mountns() {
            "; mount namespace: private /tmp and /dev/shm"
        } else {
            ""
        };
        match (&self.landlock, self.mountns()) {
            (Ok(abi), _) => active(
                "filesystem",
                format!(
                    "Landlock ABI {abi} (restriction checked enforced): writes only to the session \
                     dir and private tmp, the rest read-only; unreadable: {}, other sessions (of \
                     every worker sharing the base dir), raw devices{mounts}",
                    self.hidden_list()
                ),
            ),
            (Err(why), true) => degraded(
                "filesystem",
                format!(
                    "no Landlock ({why}): credential stores and other sessions are hidden by tmpfs \
                     mounts, but writes anywhere the user can write are NOT confined"
                ),
            ),
            (Err(why), false) => unavailable(
                "filesystem",
                format!(
                    "no Landlock ({why}) and no mount namespace ({})",
                    self.mount_why()
                ),
            ),
        }
    }

    fn mount_why(&self) -> String {
        match (&self.ns.user, &self.ns.mount) {
            (Err(why), _) if !self.root => why.clone(),
            (_, Err(why)) => why.clone(),
            _ => "unknown".into(),
        }
    }

    fn network_layer(&self) -> LayerReport {
        if self.netns() {
            return active(
                "network",
                "network \"none\": a network namespace per job with only its own loopback (host \
                 127.0.0.1 services, UDP and DNS unreachable); AF_VSOCK/AF_PACKET refused by seccomp",
            );
        }
        let why = match &self.ns.net {
            Err(why) => why.clone(),
            Ok(()) => self.mount_why(),
        };
        match (
            self.seccomp.is_ok(),
            self.landlock_abi().is_some_and(|abi| abi >= 4),
        ) {
            (true, _) => degraded(
                "network",
                format!(
                    "no network namespace ({why}): network \"none\" refuses IP sockets with seccomp \
                     (and TCP with Landlock when ABI >= 4)"
                ),
            ),
            (false, true) => degraded(
                "network",
                format!(
                    "no network namespace ({why}) and no seccomp: only TCP is denied (Landlock); UDP and DNS are open"
                ),
            ),
            (false, false) => unavailable(
                "network",
                format!("no network namespace ({why}), no seccomp, no Landlock network rules"),
            ),
        }
    }

    /// The middle network mode. A job that gets no network namespace (this host, or isolation
    /// profile `none`) is refused rather than given an allowlist nothing enforces.
    fn egress_layer(&self) -> LayerReport {
        if self.netns() {
            active(
                "egress",
                "network {\"allow\": [...]}: a per-job HTTP proxy (CONNECT tunnels, plain HTTP) \
                 listening inside the job's own network namespace; names resolved by the proxy, \
                 loopback/private/link-local addresses only when listed; refused under profile none",
            )
        } else {
            unavailable(
                "egress",
                "network allowlists are refused: jobs get no network namespace of their own here",
            )
        }
    }

    fn unix_socket_layer(&self) -> LayerReport {
        let abstract_scoped = self.landlock_abi().is_some_and(|abi| abi >= 6);
        match (self.mountns(), abstract_scoped || self.netns()) {
            (true, true) => active(
                "unix_sockets",
                "network \"none\": tmpfs over /run and /tmp hides host sockets (docker.sock, D-Bus, \
                 ssh-agent); abstract sockets are per network namespace and Landlock-scoped",
            ),
            (true, false) => degraded(
                "unix_sockets",
                "path sockets under /run and /tmp are hidden, abstract sockets of the host are reachable",
            ),
            (false, _) => degraded(
                "unix_sockets",
                format!(
                    "no mount namespace ({}): host path sockets (docker.sock, D-Bus) stay \
                     connectable; the job's environment drops SSH_AUTH_SOCK and similar",
                    self.mount_why()
                ),
            ),
        }
    }

    fn syscall_layer(&self) -> LayerReport {
        match &self.seccomp {
            Ok(()) => active(
                "syscall_filter",
                format!(
                    "no_new_privs + seccomp deny list of {} syscalls (ptrace, mount, bpf, keyctl, \
                     kexec, perf_event_open, io_uring, userfaultfd, unshare/setns, namespace clone \
                     flags, TIOCSTI, ...)",
                    seccomp::DENIED.len() + 3
                ),
            ),
            Err(why) => unavailable("syscall_filter", why.clone()),
        }
    }

    fn process_tree_layer(&self) -> LayerReport {
        match self.tree_kill() {
            TreeKill::Cgroup => active(
                "process_tree",
                format!(
                    "{} kills the whole tree, setsid and double-forked processes included{}",
                    self.cgroups.layout.kill().unwrap_or("cgroup"),
                    if self.pidns() {
                        "; a PID namespace per job (the job as its init, with the parent-death \
                         signal) also ends it when the worker itself is killed"
                    } else {
                        "; no PID namespace here: a SIGKILLed worker leaves setsid escapees \
                         running until the next worker start sweeps them"
                    }
                ),
            ),
            TreeKill::PidNamespace => active(
                "process_tree",
                "PID namespace per job: when the job or the worker ends, the kernel kills every \
                 process left inside",
            ),
            TreeKill::ProcessGroup => degraded(
                "process_tree",
                "process-group kill only: a process that calls setsid escapes (no writable cgroup, \
                 no PID namespace)",
            ),
        }
    }

    fn signal_layer(&self) -> LayerReport {
        let scoped = self.landlock_abi().is_some_and(|abi| abi >= 6);
        match (scoped, self.pidns(), self.seccomp.is_ok()) {
            (true, _, true) => active(
                "signals",
                "Landlock signal scoping (ABI >= 6): no signal reaches a process outside the job; \
                 ptrace denied by seccomp and Landlock",
            ),
            (_, true, true) => active(
                "signals",
                "PID namespace: processes outside the job cannot be named; ptrace denied by seccomp",
            ),
            _ => degraded(
                "signals",
                "the job can signal other processes of the same user",
            ),
        }
    }

    fn privilege_layer(&self) -> LayerReport {
        match (self.userns(), self.root) {
            (true, true) => active(
                "privileges",
                "user namespace per job: uid 0 inside holds no capability on the host",
            ),
            (true, false) => active(
                "privileges",
                format!(
                    "runs as uid {} in its own user namespace, no host capability",
                    self.uid
                ),
            ),
            (false, false) => active(
                "privileges",
                format!("runs as unprivileged uid {} with no_new_privs", self.uid),
            ),
            (false, true) => degraded(
                "privileges",
                format!(
                    "the worker is root and user namespaces are unavailable ({}): jobs run as root \
                     with all capabilities dropped",
                    self.mount_why()
                ),
            ),
        }
    }

    fn memory_limit(&self) -> LayerReport {
        let tmpfs = if self.mountns() {
            "; the job's private /tmp and /dev/shm are tmpfs sized to 3/4 and 1/4 of the limit \
             (writes past it fail with ENOSPC)"
        } else {
            "; no mount namespace: no private tmpfs, files count on the host's disks"
        };
        match self.cgroups.layout.memory() {
            Some(mechanism) => active(
                "memory",
                format!(
                    "{mechanism} on the whole job tree; the kernel OOM-kills at the limit{tmpfs}"
                ),
            ),
            None => degraded(
                "memory",
                format!(
                    "RLIMIT_DATA per process (allocations fail past it); not the tree total. \
                     RLIMIT_AS is not used: it breaks node and Java{tmpfs}"
                ),
            ),
        }
    }

    fn pids_limit(&self) -> LayerReport {
        match self.cgroups.layout.pids() {
            Some(mechanism) => active(
                "pids",
                format!(
                    "{mechanism} on the whole job tree; a refused fork ends the job as \
                     killed/pids_limit (read from pids.events)"
                ),
            ),
            None if self.userns() && !self.root => active(
                "pids",
                "RLIMIT_NPROC set inside the job's user namespace (counts only the job's \
                 processes); the kernel keeps no count of refused forks, so the job ends as its \
                 own exit, not pids_limit",
            ),
            None => unavailable(
                "pids",
                "no writable pids cgroup, and RLIMIT_NPROC cannot bound a root job",
            ),
        }
    }

    fn cpu_limit(&self) -> LayerReport {
        match self.cgroups.layout.cpu() {
            Some(mechanism) => active(
                "cpu",
                format!("{mechanism}: CPU time per period for the tree"),
            ),
            None => degraded(
                "cpu",
                "CPU affinity to ceil(cores) CPUs (no writable cpu cgroup)",
            ),
        }
    }

    fn accounting(&self) -> LayerReport {
        match self.cgroups.layout.accounting() {
            Some(source) => active("accounting", format!("whole tree from cgroup {source}")),
            None => degraded(
                "accounting",
                "rusage of the job's first process and the children it waited for",
            ),
        }
    }
}
