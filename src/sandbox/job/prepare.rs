//! `JobSandbox::prepare`: one step per layer, in the order the report lists them. Each step
//! decides from the host's probe and the request, records what the child must do in the
//! `ChildPlan` and the layer it enforces in `layers`; nothing here runs in the child.

use super::super::cgroup::{self, Baseline, Slot};
use super::super::host::{Host, Inner, TreeKill};
use super::super::landlock::{self, Extras, Rights, Ruleset};
use super::super::ns::{self, MountStep, UserMaps};
use super::super::report::AppliedLayer;
use super::super::seccomp::Filter;
use super::super::{Profile, SandboxError};
use super::{ChildPlan, JobRequest, JobSandbox, WorkspaceView, io_err, layer};
use crate::protocol::SandboxStart;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

impl JobSandbox {
    /// Builds the job's sandbox. With `strict` (from the job or the worker's floor) a layer
    /// the host cannot provide is an error naming it; otherwise missing layers are skipped and
    /// left out of `layers()`.
    pub fn prepare(host: &Host, req: &JobRequest) -> Result<JobSandbox, SandboxError> {
        let profile = admit(host, req)?;
        let h = &host.inner;
        let sandboxed = profile != Profile::None;
        let kind = warm_kind(h, req, profile);
        let mut warm = match (h.warm.get(), kind) {
            (Some(pool), Some(kind)) => pool.take(kind),
            _ => None,
        };
        let warm_leaf = warm.as_mut().and_then(|(slot, _)| slot.take_leaf());
        let warm_ruleset = warm.as_mut().and_then(|(slot, _)| slot.take_ruleset());
        let in_slot_leaf = warm_leaf.is_some();
        let mut plan = Plan {
            h,
            req,
            profile,
            sandboxed,
            // Always where the host allows it, cgroup.kill or not: the job as init of its own
            // namespace (with the parent-death signal on it) dies with the worker even when
            // the worker is SIGKILLed and nothing runs `cgroup.kill`, and its /proc shows no
            // host process (other workers' jobs and their command lines included).
            use_pidns: sandboxed && h.pidns(),
            userns: sandboxed && h.userns(),
            layers: Vec::new(),
            child: ChildPlan::default(),
            private_dirs: Vec::new(),
            warm_leaf,
            warm_ruleset,
        };
        let cgroup = plan.cgroup()?;
        let in_cgroup = cgroup.is_some();
        plan.resource_limits(in_cgroup);
        plan.namespaces();
        plan.process_tree(in_cgroup);
        plan.mounts()?;
        plan.landlock()?;
        plan.seccomp();
        // The slot already is in the job's leaf: the job inherits it, no migration at start.
        if in_slot_leaf {
            plan.child.cgroup_procs.clear();
        }
        debug_assert!(warm.is_none() || kind == Some(plan.child.unshare));
        let (warm, start) = match warm {
            Some((slot, start)) => (Some(slot), start),
            None => {
                if let Some(pool) = h.warm.get() {
                    pool.count_cold();
                }
                (None, SandboxStart::Cold)
            }
        };
        Ok(JobSandbox {
            host: host.clone(),
            profile,
            layers: plan.layers,
            cgroup,
            child: plan.child,
            leader: Mutex::new(None),
            egress: Mutex::new(None),
            warm: Mutex::new(warm),
            start,
        })
    }
}

/// The namespaces (besides the user namespace) of a prepared sandbox this job can enter: the
/// flags `Plan::namespaces` will choose. Profile `none` enters a slot without any; a host
/// without user, mount and PID namespaces builds every other job's sandbox itself.
fn warm_kind(h: &Inner, req: &JobRequest, profile: Profile) -> Option<libc::c_int> {
    match profile {
        // No namespace: the slot is a plain child of the spawner, already in the job's leaf.
        Profile::None => Some(0),
        _ => h.warm_namespaces(req.network_open),
    }
}

/// The job's effective profile, or the refusal that stops it before anything is built.
fn admit(host: &Host, req: &JobRequest) -> Result<Profile, SandboxError> {
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
    Ok(profile)
}

struct Plan<'a, 'r> {
    h: &'a Inner,
    req: &'a JobRequest<'r>,
    profile: Profile,
    sandboxed: bool,
    use_pidns: bool,
    userns: bool,
    layers: Vec<AppliedLayer>,
    child: ChildPlan,
    /// Directories the job sees as a fresh writable tmpfs (their rule is added in the child).
    private_dirs: Vec<PathBuf>,
    /// The leaf a prepared sandbox already sits in, to become the job's.
    warm_leaf: Option<Slot>,
    /// The view rules a prepared sandbox brought along.
    warm_ruleset: Option<ViewRuleset>,
}

impl Plan<'_, '_> {
    /// A never-used cgroup slot with the job's limits; under `strict` a failure refuses the job.
    fn cgroup(&mut self) -> Result<Option<(Slot, Baseline)>, SandboxError> {
        let (h, req) = (self.h, self.req);
        if !h.cgroups.any() {
            return Ok(None);
        }
        let limits = cgroup::Limits {
            memory: req.memory_bytes,
            pids: req.pids,
            cpu_cores: req.cpu_cores,
        };
        let taken = match self.warm_leaf.take() {
            Some(leaf) => h.cgroups.configure_taken(leaf, limits),
            None => h.cgroups.take(limits),
        };
        let cgroup = match taken {
            Ok(pair) => Some(pair),
            Err(source) if self.profile == Profile::Strict => {
                return Err(SandboxError::Io {
                    what: "creating the job's cgroup",
                    source,
                });
            }
            Err(error) => {
                tracing::warn!(%error, "job runs without a cgroup");
                None
            }
        };
        if let Some((slot, _)) = &cgroup {
            self.child.cgroup_procs = slot.procs_fds().collect();
        }
        Ok(cgroup)
    }

    /// Memory, cpu and pids: the cgroup's limits, else the rlimit fallbacks.
    fn resource_limits(&mut self, in_cgroup: bool) {
        let (h, req) = (self.h, self.req);
        let layout = &h.cgroups.layout;
        let memory_cg = in_cgroup.then(|| layout.memory()).flatten();
        let pids_cg = in_cgroup.then(|| layout.pids()).flatten();
        let cpu_cg = in_cgroup.then(|| layout.cpu()).flatten();
        if let (Some(bytes), Some(mechanism)) = (req.memory_bytes, memory_cg) {
            self.layers
                .push(layer("memory", format!("{mechanism} = {bytes}")));
        } else if let Some(bytes) = req.memory_bytes {
            self.child.data = Some(bytes);
            self.layers.push(layer(
                "memory",
                format!("RLIMIT_DATA = {bytes} per process"),
            ));
        }
        if let (Some(cores), Some(mechanism)) = (req.cpu_cores, cpu_cg) {
            self.layers
                .push(layer("cpu", format!("{mechanism} = {cores} cores")));
        }
        if let (Some(n), None) = (req.pids, pids_cg) {
            if self.userns && !h.root {
                // The relay and the init of a PID namespace count too.
                self.child.nproc = Some(n + 2 * u64::from(self.use_pidns));
                self.layers.push(layer(
                    "pids",
                    format!(
                        "RLIMIT_NPROC = {n} in the job's user namespace (refused forks are not \
                         seen by the worker: the end is the job's own, not pids_limit)"
                    ),
                ));
            }
        } else if let (Some(n), Some(mechanism)) = (req.pids, pids_cg) {
            self.layers
                .push(layer("pids", format!("{mechanism} = {n}")));
        }
    }

    /// Privileges (user namespace or dropped capabilities) and which namespaces to unshare.
    fn namespaces(&mut self) {
        let (h, req) = (self.h, self.req);
        if !(self.sandboxed && h.can_unshare()) {
            return;
        }
        let child = &mut self.child;
        if self.userns {
            child.user = Some(UserMaps::identity());
            self.layers.push(layer("privileges", "user namespace"));
        } else if h.root {
            child.drop_caps = true;
            self.layers
                .push(layer("privileges", "all capabilities dropped"));
        }
        child.unshare = h.job_namespaces(req.network_open);
        if child.own_netns() {
            self.layers.push(layer("network", "network namespace"));
        }
        if self.use_pidns {
            child.pid_namespace = true;
            child.proc_mount = h.own_proc();
        }
    }

    /// How the whole tree is killed: cgroup, PID namespace, or the process group.
    fn process_tree(&mut self, in_cgroup: bool) {
        let h = self.h;
        let pid_namespace = self.child.pid_namespace;
        let entry = match h.tree_kill() {
            TreeKill::Cgroup if in_cgroup => {
                let kill = h.cgroups.layout.kill().unwrap_or("cgroup");
                layer(
                    "process_tree",
                    if pid_namespace {
                        format!("{kill} + PID namespace")
                    } else {
                        kill.to_owned()
                    },
                )
            }
            _ if pid_namespace => layer("process_tree", "PID namespace"),
            _ => layer("process_tree", "process group"),
        };
        self.layers.push(entry);
    }

    /// The mount namespace's plan: private /tmp and /dev/shm, masks over host sockets (and
    /// secrets, without Landlock), the workspace's mounts.
    fn mounts(&mut self) -> Result<(), SandboxError> {
        let (h, req) = (self.h, self.req);
        let keep = keep_paths(req, h);
        if req.workspace.is_some() && self.child.unshare & libc::CLONE_NEWNS == 0 {
            return Err(SandboxError::WorkspaceUnavailable(
                "a workspace job needs a mount namespace (its read-only paths are mounts), \
                 which this worker cannot create here or under profile `none`"
                    .into(),
            ));
        }
        if self.child.unshare & libc::CLONE_NEWNS == 0 {
            return Ok(());
        }
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
        let fixed = masks.len();
        let mut hidden_files = Vec::new();
        if !landlock_ok {
            // Without Landlock the mounts are the only thing hiding secrets.
            for path in h
                .hidden
                .iter()
                .flat_map(|p| super::super::fsview::expand(p))
            {
                if path.is_dir() {
                    masks.push((path, false, masked("mode=000")));
                } else if path.exists() {
                    hidden_files.push(path);
                }
            }
            if let Some(root) = sessions_root(h, req) {
                let siblings = super::super::host::sibling_workers(&root)
                    .map(|pattern| super::super::fsview::expand(&pattern))
                    .unwrap_or_default();
                for sibling in siblings.into_iter().filter(|s| *s != root) {
                    masks.push((sibling, false, masked("mode=000")));
                }
                masks.push((root, false, masked("mode=755")));
            }
        }
        let masks = real_dirs(h, masks, fixed);
        let (mut steps, mut keeps) = ns::plan_mounts(&masks, &hidden_files, &keep)
            .map_err(io_err("planning the job's mounts"))?;
        self.private_dirs = private_tmpfs_dirs(&steps, req.workspace.as_ref());
        if let Some(workspace) = &req.workspace {
            let mounts = workspace_mounts(workspace, &mut steps, &mut keeps)
                .map_err(io_err("planning the workspace mounts"))?;
            steps.extend(mounts);
            self.layers
                .push(layer("workspace", workspace_mechanism(workspace)));
        }
        self.child.mounts = steps;
        self.child.keeps = keeps;
        self.child.rechdir = true;
        self.layers.push(layer(
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
            self.layers
                .push(layer("unix_sockets", "tmpfs over /run and /tmp"));
        }
        Ok(())
    }

    /// The filesystem view (and, from ABI 6, signal scoping) as a Landlock ruleset.
    fn landlock(&mut self) -> Result<(), SandboxError> {
        let (h, req) = (self.h, self.req);
        let Some(abi) = h.landlock_abi().filter(|_| self.sandboxed) else {
            return Ok(());
        };
        let spec = ViewSpec {
            sessions_root: sessions_root(h, req),
            private_dirs: self.private_dirs.clone(),
            extras: Extras {
                deny_tcp: !req.network_open && !self.child.own_netns(),
                scope: true,
            },
        };
        if let Some(pool) = h.warm.get() {
            pool.learn_view(&spec);
        }
        let ruleset = build_ruleset(h, req, spec, self.warm_ruleset.take())
            .map_err(io_err("building the Landlock ruleset"))?;
        self.child.landlock = Some(ruleset);
        self.layers
            .push(layer("filesystem", format!("Landlock ABI {abi}")));
        if abi >= 6 {
            self.layers.push(layer("signals", "Landlock scope"));
        }
        Ok(())
    }

    /// The seccomp deny list; without a network namespace it also refuses IP sockets.
    fn seccomp(&mut self) {
        if !(self.sandboxed && self.h.seccomp.is_ok()) {
            return;
        }
        let allow_inet = self.req.network_open || self.child.own_netns();
        self.child.seccomp = Some(Filter::build(allow_inet));
        self.child.allow_inet = allow_inet;
        self.layers
            .push(layer("syscall_filter", "seccomp deny list + no_new_privs"));
        if !allow_inet {
            self.layers
                .push(layer("network", "IP sockets refused by seccomp"));
        }
    }
}

fn sessions_root(h: &Inner, req: &JobRequest) -> Option<PathBuf> {
    let root = h.resolved(req.session_dir.parent()?)?.path;
    (root != Path::new("/")).then_some(root)
}

/// A path of the job's session, symlinks resolved: the worker made the session's dirs under
/// its sessions root a moment ago, so only the root needs resolving (once per worker).
fn session_path(h: &Inner, req: &JobRequest, path: &Path) -> Option<PathBuf> {
    let parent = req.session_dir.parent()?;
    match path.strip_prefix(parent) {
        Ok(rest) if path.is_dir() => Some(h.resolved(parent)?.path.join(rest)),
        _ => std::fs::canonicalize(path).ok(),
    }
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
fn keep_paths(req: &JobRequest, h: &Inner) -> Vec<PathBuf> {
    let mut keep: Vec<PathBuf> = [req.session_dir, req.work_dir, req.output_dir, req.tmp_dir]
        .into_iter()
        .filter_map(|p| session_path(h, req, p))
        .chain(
            req.workspace
                .iter()
                .filter_map(|w| std::fs::canonicalize(&w.path).ok()),
        )
        .chain(
            h.config
                .extra_rw
                .iter()
                .chain(&h.config.extra_ro)
                .filter_map(|p| h.resolved(p).map(|r| r.path)),
        )
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
/// its target once. The first `fixed` are the host's own directories (/tmp, /run, ...),
/// resolved once per worker; the rest (hidden paths, other workers' dirs) come and go.
fn real_dirs(
    h: &Inner,
    masks: Vec<(PathBuf, bool, String)>,
    fixed: usize,
) -> Vec<(PathBuf, bool, String)> {
    let mut out: Vec<(PathBuf, bool, String)> = Vec::new();
    for (index, (path, writable, options)) in masks.into_iter().enumerate() {
        let real = if index < fixed {
            h.resolved(&path).filter(|r| r.is_dir).map(|r| r.path)
        } else {
            std::fs::canonicalize(&path).ok().filter(|p| p.is_dir())
        };
        let Some(real) = real else { continue };
        if !out.iter().any(|(p, _, _)| *p == real) {
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

/// Which read view a job's ruleset starts from: what a prepared sandbox's ruleset must have
/// been built for to serve the job.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::sandbox) struct ViewSpec {
    pub sessions_root: Option<PathBuf>,
    pub private_dirs: Vec<PathBuf>,
    pub extras: Extras,
}

/// A ruleset holding one read view's rules and nothing of any job: made ahead for a prepared
/// sandbox (a few hundred `landlock_add_rule` calls off the job's path), used by one job.
pub(in crate::sandbox) struct ViewRuleset {
    pub spec: ViewSpec,
    pub view: std::sync::Arc<super::super::fsview::ReadView>,
    pub ruleset: Ruleset,
}

impl ViewRuleset {
    pub fn build(h: &Inner, spec: ViewSpec) -> io::Result<ViewRuleset> {
        let rights = Rights::for_abi(h.landlock_abi().unwrap_or(1));
        let view = h.read_view(spec.sessions_root.as_deref(), &spec.private_dirs)?;
        let ruleset = Ruleset::new(rights, spec.extras)?;
        for entry in &view.entries {
            let access = entry.access.unwrap_or(rights.read);
            let access = if entry.is_dir {
                access
            } else {
                rights.for_file(access)
            };
            landlock::add_rule(ruleset.raw_fd(), entry.raw_fd(), access & rights.all_fs)?;
        }
        Ok(ViewRuleset {
            spec,
            view,
            ruleset,
        })
    }
}

/// The job's ruleset: the view's rules (made ahead with its prepared sandbox when that was
/// built for this very view, still current), then the job's own paths.
fn build_ruleset(
    h: &Inner,
    req: &JobRequest,
    spec: ViewSpec,
    prebuilt: Option<ViewRuleset>,
) -> io::Result<Ruleset> {
    let rights = Rights::for_abi(h.landlock_abi().unwrap_or(1));
    let current = h.read_view(spec.sessions_root.as_deref(), &spec.private_dirs)?;
    let ruleset =
        match prebuilt.filter(|p| p.spec == spec && std::sync::Arc::ptr_eq(&p.view, &current)) {
            Some(prebuilt) => prebuilt.ruleset,
            None => ViewRuleset::build(h, spec)?.ruleset,
        };
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
