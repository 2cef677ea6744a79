//! The worker's side of warm slots: the spawner it started, the slots ready per kind, and a
//! thread that refills them off the jobs' path.

use super::spawner::{CONTROL_FD, PARENT_ENV, SPAWNER_ARG};
use super::wire::{self, FromSlot, MakeSlot, SlotMade};
use crate::protocol::{SandboxStart, WarmSandboxMetrics};
use crate::sandbox::cgroup;
use crate::sandbox::host::Inner;
use crate::sandbox::job::{ViewRuleset, ViewSpec};
use nix::sys::socket::MsgFlags;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::Weak;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The longest the spawner may take to answer; it answers in microseconds when healthy.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// How long without a job before the ready slots a burst asked for are let go.
const IDLE_AFTER: Duration = Duration::from_secs(2);

/// A slot that said it is ready: its process waits for one job, already inside the cgroup
/// leaf the job will run in (when the host has cgroups).
pub struct Slot {
    pub(super) socket: OwnedFd,
    pub(super) pidfd: OwnedFd,
    pub(super) pid: libc::pid_t,
    leaf: Leaf,
    /// The read view's Landlock rules, made with the slot (sandboxed kinds only).
    ruleset: Option<ViewRuleset>,
    pub(super) active: Active,
}

/// A slot's cgroup leaf until its job's sandbox takes it; released if the slot is dropped
/// unused (killing the slot, which is inside it).
struct Leaf(Option<(cgroup::Slot, Weak<Inner>)>);

impl Drop for Leaf {
    fn drop(&mut self) {
        if let Some((leaf, host)) = self.0.take()
            && let Some(host) = host.upgrade()
        {
            host.cgroups.release(leaf);
        }
    }
}

impl Slot {
    fn alive(&self) -> bool {
        !super::pidfd::exited(self.pidfd.as_raw_fd())
    }

    /// The cgroup leaf the slot (and so its job) is in; the job's sandbox owns it from here.
    pub fn take_leaf(&mut self) -> Option<cgroup::Slot> {
        self.leaf.0.take().map(|(leaf, _)| leaf)
    }

    /// The view rules made ahead for the slot's job, if the pool knew the view.
    pub fn take_ruleset(&mut self) -> Option<ViewRuleset> {
        self.ruleset.take()
    }
}

pub struct WarmPool {
    configured: usize,
    /// The read view the last sandboxed job used: slots get its rules made ahead.
    view: Mutex<Option<ViewSpec>>,
    /// The most ready slots per kind while busy (the worker's concurrency cap).
    max_ready: usize,
    /// Warm jobs running now, by kind.
    active: Mutex<HashMap<libc::c_int, Arc<AtomicUsize>>>,
    /// Where the slots' cgroup leaves come from and go back to.
    host: Weak<Inner>,
    state: Mutex<State>,
    wake: Condvar,
    spawner: Mutex<Option<Spawner>>,
    started_warm: AtomicU64,
    started_on_demand: AtomicU64,
    started_cold: AtomicU64,
}

struct State {
    /// By the namespaces the slots have (besides the user namespace).
    ready: HashMap<libc::c_int, Vec<Slot>>,
    /// Kinds jobs have asked for; each is kept at `configured` ready slots.
    kinds: Vec<libc::c_int>,
    preparing: usize,
    last_take: Instant,
    spawner_up: bool,
    closed: bool,
}

struct Spawner {
    control: OwnedFd,
    process: std::process::Child,
}

impl WarmPool {
    /// Starts the refill thread (which starts the spawner) with `first_kind` wanted.
    pub fn start(
        configured: usize,
        max_ready: usize,
        first_kind: libc::c_int,
        host: Weak<Inner>,
    ) -> Option<Arc<WarmPool>> {
        let exe = std::env::current_exe().ok()?;
        if configured == 0 {
            return None;
        }
        let pool = Arc::new(WarmPool {
            configured,
            view: Mutex::new(None),
            max_ready,
            active: Mutex::new(HashMap::new()),
            host,
            state: Mutex::new(State {
                kinds: vec![first_kind],
                ready: HashMap::new(),
                preparing: 0,
                last_take: Instant::now(),
                spawner_up: false,
                closed: false,
            }),
            wake: Condvar::new(),
            spawner: Mutex::new(None),
            started_warm: AtomicU64::new(0),
            started_on_demand: AtomicU64::new(0),
            started_cold: AtomicU64::new(0),
        });
        let refill = pool.clone();
        // The spawner's death signal follows the thread that started it: this one lives as
        // long as the pool.
        std::thread::Builder::new()
            .name("ocw-warm".into())
            .spawn(move || refill.refill(exe))
            .ok()?;
        Some(pool)
    }

    /// A ready slot of `kind`, or one made now when none is; `None` when the pool cannot
    /// serve (the spawner is not up), so the job starts cold.
    pub fn take(&self, kind: libc::c_int) -> Option<(Slot, SandboxStart)> {
        {
            let mut state = crate::sync::lock(&self.state);
            if !state.spawner_up {
                return None;
            }
            if !state.kinds.contains(&kind) {
                state.kinds.push(kind);
            }
            while let Some(mut slot) = state.ready.get_mut(&kind).and_then(Vec::pop) {
                if slot.alive() {
                    slot.active = self.activate(kind);
                    state.last_take = Instant::now();
                    self.wake.notify_all();
                    self.started_warm.fetch_add(1, Ordering::Relaxed);
                    return Some((slot, SandboxStart::Warm));
                }
            }
        }
        self.wake.notify_all();
        match self.make(kind) {
            Ok(mut slot) => {
                slot.active = self.activate(kind);
                crate::sync::lock(&self.state).last_take = Instant::now();
                self.started_on_demand.fetch_add(1, Ordering::Relaxed);
                Some((slot, SandboxStart::OnDemand))
            }
            Err(error) => {
                tracing::warn!(%error, "could not prepare a sandbox for the job; it starts cold");
                None
            }
        }
    }

    /// Remembers the view a job's ruleset was built from, for the next slots.
    pub fn learn_view(&self, spec: &ViewSpec) {
        let mut view = crate::sync::lock(&self.view);
        if view.as_ref() != Some(spec) {
            *view = Some(spec.clone());
        }
    }

    fn activate(&self, kind: libc::c_int) -> Active {
        let counter = crate::sync::lock(&self.active)
            .entry(kind)
            .or_default()
            .clone();
        counter.fetch_add(1, Ordering::Relaxed);
        Active(Some(counter))
    }

    pub fn count_cold(&self) {
        self.started_cold.fetch_add(1, Ordering::Relaxed);
    }

    pub fn metrics(&self) -> WarmSandboxMetrics {
        let (ready, preparing, mut pids) = {
            let state = crate::sync::lock(&self.state);
            let pids: Vec<libc::pid_t> = state.ready.values().flatten().map(|s| s.pid).collect();
            (pids.len() as u64, state.preparing as u64, pids)
        };
        if ready > 0
            && let Some(spawner) = crate::sync::lock(&self.spawner).as_ref()
        {
            pids.push(spawner.process.id() as libc::pid_t);
        }
        WarmSandboxMetrics {
            configured: self.configured as u64,
            ready,
            preparing,
            idle_memory_bytes: pids.into_iter().map(proportional_set_size).sum(),
            started_warm: self.started_warm.load(Ordering::Relaxed),
            started_on_demand: self.started_on_demand.load(Ordering::Relaxed),
            started_cold: self.started_cold.load(Ordering::Relaxed),
        }
    }

    /// Runs the spawner and keeps the slots filled; a spawner that dies (killed, out of
    /// memory) is started again after a pause that doubles up to a minute, jobs starting cold
    /// meanwhile.
    fn refill(self: Arc<Self>, exe: PathBuf) {
        let mut pause = Duration::from_millis(250);
        let mut ever_up = false;
        loop {
            match Spawner::start(&exe) {
                Ok(spawner) => {
                    ever_up = true;
                    *crate::sync::lock(&self.spawner) = Some(spawner);
                    crate::sync::lock(&self.state).spawner_up = true;
                    let started = Instant::now();
                    if self.fill().is_ok() {
                        return;
                    }
                    // Drops the dead spawner (reaping it) before the next one starts.
                    crate::sync::lock(&self.spawner).take();
                    if started.elapsed() > Duration::from_secs(60) {
                        pause = Duration::from_millis(250);
                    }
                }
                Err(error) if !ever_up => {
                    // Not this binary's mode (a test harness), or the host refuses it: every
                    // job starts cold, as with `warm_slots = 0`.
                    tracing::info!(%error, "no sandbox spawner; jobs start cold");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "could not start the sandbox spawner; jobs start cold");
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(60));
            if crate::sync::lock(&self.state).closed {
                return;
            }
        }
    }

    /// Keeps every kind at its target until the pool closes (`Ok`) or the spawner fails.
    fn fill(&self) -> Result<(), ()> {
        loop {
            let (kind, missing) = {
                let mut state = crate::sync::lock(&self.state);
                loop {
                    if state.closed {
                        return Ok(());
                    }
                    let short = state.kinds.iter().find_map(|kind| {
                        let target = self.target(*kind);
                        let have = state.ready.get(kind).map_or(0, Vec::len);
                        (have < target).then(|| (*kind, target - have))
                    });
                    if let Some((kind, missing)) = short {
                        state.preparing += missing;
                        break (kind, missing);
                    }
                    self.trim_when_idle(&mut state);
                    state = self
                        .wake
                        .wait_timeout(state, IDLE_AFTER)
                        .unwrap_or_else(|poison| poison.into_inner())
                        .0;
                }
            };
            // All asked for first, then awaited: each slot's set-up (its cgroup migration
            // above all, which can wait for an RCU grace period) overlaps the others'.
            let mut asked = Vec::with_capacity(missing);
            let mut spawner_failed = None;
            for _ in 0..missing {
                match self.ask(kind) {
                    Ok(pending) => asked.push(pending),
                    Err(error) => {
                        spawner_failed = Some(error);
                        break;
                    }
                }
            }
            let made: Vec<io::Result<Slot>> = asked.into_iter().map(Pending::ready).collect();
            let mut state = crate::sync::lock(&self.state);
            state.preparing -= missing;
            for slot in made {
                match slot {
                    Ok(slot) => state.ready.entry(kind).or_default().push(slot),
                    Err(error) => {
                        tracing::warn!(%error, "a prepared sandbox failed; another is made")
                    }
                }
            }
            if let Some(error) = spawner_failed {
                tracing::warn!(%error, "the sandbox spawner failed; jobs start cold until it is back");
                state.spawner_up = false;
                state.ready.clear();
                return Err(());
            }
        }
    }

    /// Ready slots kept per kind: the configured number while the worker is idle, as many
    /// as there are warm jobs running while it is busy (the next wave of the same size then
    /// finds its sandboxes made), never more than the worker runs at once.
    fn target(&self, kind: libc::c_int) -> usize {
        let active = crate::sync::lock(&self.active)
            .get(&kind)
            .map_or(0, |n| n.load(Ordering::Relaxed));
        self.configured
            .max(active)
            .min(self.max_ready.max(self.configured))
    }

    /// Back to `configured` ready slots per kind once no job has taken one for `IDLE_AFTER`:
    /// the slots a burst needed are not held by an idle worker (dropping one ends it).
    fn trim_when_idle(&self, state: &mut State) {
        if state.last_take.elapsed() < IDLE_AFTER {
            return;
        }
        for slots in state.ready.values_mut() {
            if slots.len() > self.configured {
                slots.truncate(self.configured);
            }
        }
    }

    /// A slot made for a job that found none ready.
    fn make(&self, kind: libc::c_int) -> io::Result<Slot> {
        self.ask(kind)?.ready()
    }

    /// Asks the spawner for a slot of `kind`, joined to a fresh cgroup leaf.
    fn ask(&self, kind: libc::c_int) -> io::Result<Pending> {
        let host = self.host.upgrade();
        let leaf = host
            .as_ref()
            .filter(|h| h.cgroups.any())
            .and_then(|h| match h.cgroups.take_unconfigured() {
                Ok(leaf) => Some(leaf),
                Err(error) => {
                    tracing::warn!(%error, "a prepared sandbox gets no cgroup leaf; its job joins one at start");
                    None
                }
            });
        let procs: Vec<RawFd> = leaf.iter().flat_map(|l| l.procs_fds()).collect();
        let leaf = Leaf(leaf.map(|leaf| (leaf, self.host.clone())));
        let (pid, mut fds) = {
            let guard = crate::sync::lock(&self.spawner);
            let spawner = guard
                .as_ref()
                .ok_or_else(|| io::Error::other("no spawner"))?;
            let control = spawner.control.as_raw_fd();
            let proc_mount = kind & (libc::CLONE_NEWNS | libc::CLONE_NEWPID)
                == libc::CLONE_NEWNS | libc::CLONE_NEWPID
                && host.as_ref().is_some_and(|h| h.own_proc());
            let request = MakeSlot {
                namespaces: kind,
                proc_mount,
            };
            wire::send(control, &request, &procs)?;
            let mut buffer = Vec::new();
            match wire::receive::<SlotMade>(control, &mut buffer, MsgFlags::empty())? {
                Some((SlotMade::Made { pid }, fds)) if fds.len() == 2 => (pid, fds),
                Some((SlotMade::Failed { errno }, _)) => {
                    return Err(io::Error::from_raw_os_error(errno));
                }
                _ => return Err(io::Error::other("the spawner is gone")),
            }
        };
        let pidfd = fds.pop().expect("two descriptors");
        let socket = fds.pop().expect("two descriptors");
        // Built while the slot sets itself up: the view's rules, never the job's.
        let ruleset = (kind != 0)
            .then(|| crate::sync::lock(&self.view).clone())
            .flatten()
            .zip(host.as_ref())
            .and_then(|(spec, h)| ViewRuleset::build(h, spec).ok());
        Ok(Pending(Slot {
            socket,
            pidfd,
            pid,
            leaf,
            ruleset,
            active: Active(None),
        }))
    }
}

/// A slot the spawner made that has not said it is ready yet.
struct Pending(Slot);

impl Pending {
    fn ready(self) -> io::Result<Slot> {
        let mut buffer = Vec::new();
        match wire::receive::<FromSlot>(self.0.socket.as_raw_fd(), &mut buffer, MsgFlags::empty())?
        {
            Some((FromSlot::Ready, _)) => Ok(self.0),
            _ => Err(io::Error::other(
                "a prepared sandbox failed before it was ready (its namespaces could not be made)",
            )),
        }
    }
}

/// Counts a slot handed to a job as a running warm job until the job's handle is dropped.
pub(super) struct Active(Option<Arc<AtomicUsize>>);

impl Drop for Active {
    fn drop(&mut self) {
        if let Some(active) = self.0.take() {
            active.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for WarmPool {
    fn drop(&mut self) {
        crate::sync::lock(&self.state).closed = true;
        self.wake.notify_all();
    }
}

impl Spawner {
    fn start(exe: &std::path::Path) -> io::Result<Spawner> {
        let (control, theirs) = wire::pair()?;
        let theirs_fd: RawFd = theirs.as_raw_fd();
        let mut command = std::process::Command::new(exe);
        command
            .arg(SPAWNER_ARG)
            .env_clear()
            .env(PARENT_ENV, std::process::id().to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        // SAFETY: dup2 and fcntl only, on a descriptor that stays open until spawn returns.
        unsafe {
            command.pre_exec(move || {
                if theirs_fd == CONTROL_FD {
                    let flags = libc::fcntl(CONTROL_FD, libc::F_GETFD);
                    libc::fcntl(CONTROL_FD, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                } else if libc::dup2(theirs_fd, CONTROL_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let process = command.spawn()?;
        drop(theirs);
        let spawner = Spawner { control, process };
        // A binary that is not the worker (a test harness re-executed by mistake) never says
        // hello; one that hangs is given up after the same bound every later answer gets.
        nix::sys::socket::setsockopt(
            &spawner.control,
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(ANSWER_WITHIN.as_secs() as _, 0),
        )?;
        let mut buffer = Vec::new();
        match wire::receive::<String>(spawner.control.as_raw_fd(), &mut buffer, MsgFlags::empty())?
        {
            Some((hello, _)) if hello == super::spawner::HELLO => Ok(spawner),
            _ => Err(io::Error::other(
                "the re-executed binary did not answer as the sandbox spawner",
            )),
        }
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// `Pss` of /proc/PID/smaps_rollup in bytes: the process's fair share of the pages it maps,
/// so pages the slots share with the spawner are not counted once per slot.
fn proportional_set_size(pid: libc::pid_t) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("Pss:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map(|kb| kb * 1024)
        // A slot is not dumpable: a worker without CAP_SYS_PTRACE may not read its smaps, but
        // statm's resident pages (shared ones counted in full) are readable to anyone.
        .or_else(|| {
            let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
            let resident: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
            Some(resident * 4096)
        })
        .unwrap_or(0)
}
