//! Per-job leaves: single-use. Made ahead by a keeper thread, limited at take, killed as a
//! tree, and removed by the keeper once empty. A leaf is never handed to a second job: its
//! counters (memory.events, memory.peak, pids.events, cpu.stat, memory.stat) and settings
//! are readable by the job inside it, and nothing of one job may be observable by the next.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SendError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::readings::Baseline;
use super::teardown::{kill_members, remove_base};
use super::{Layout, V2};

/// Fresh leaves made ahead: creating one costs ~0.3 ms per v1 hierarchy, which a job start
/// should not pay; a few cover a burst of starts while the keeper refills.
const READY_WANTED: usize = 3;
const CPU_PERIOD_US: u64 = 100_000;
/// A used leaf whose members have not exited yet is retried at growing intervals.
const RETRY_FIRST: Duration = Duration::from_millis(5);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// Names already taken (a dead worker with the same pid left its base behind) are skipped.
const NAME_ATTEMPTS: usize = 8;

/// One job's leaves, one per usable hierarchy.
pub struct Slot {
    pub v2: Option<PathBuf>,
    pub memory: Option<PathBuf>,
    pub pids: Option<PathBuf>,
    pub cpu: Option<PathBuf>,
    procs: Vec<OwnedFd>,
    /// Counters when the leaf was made: nothing but the job joins a leaf (or the prepared
    /// sandbox that becomes the job's init, as the relay does in a cold start), so they are
    /// the job's starting point (zero on a fresh leaf; read, not assumed).
    baseline: Baseline,
    /// The limits written when the leaf was made (those the last job asked for), so a job
    /// asking for the same writes nothing on its path; `None` when a write failed half-way.
    applied: Option<Limits>,
}

impl Slot {
    fn dirs(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.v2, &self.memory, &self.pids, &self.cpu]
            .into_iter()
            .flatten()
    }

    /// The `cgroup.procs` files the child writes itself into.
    pub fn procs_fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.procs.iter().map(|fd| fd.as_raw_fd())
    }

    /// The leaf holding `controller`'s files, and whether it is the v2 one: v2 where the v2
    /// hierarchy has the controller, else the controller's own v1 hierarchy.
    pub fn controller(&self, layout: &Layout, controller: Controller) -> Option<(&Path, bool)> {
        let (in_v2, v1) = match controller {
            Controller::Memory => (v2_has(layout, |v| v.memory), &self.memory),
            Controller::Pids => (v2_has(layout, |v| v.pids), &self.pids),
            Controller::Cpu => (v2_has(layout, |v| v.cpu), &self.cpu),
        };
        match (&self.v2, v1) {
            (Some(dir), _) if in_v2 => Some((dir.as_path(), true)),
            (_, Some(dir)) => Some((dir.as_path(), false)),
            _ => None,
        }
    }

    /// Removes every leaf that is empty; true when none is left.
    fn remove(&mut self) -> bool {
        self.procs.clear();
        for dir in [
            &mut self.v2,
            &mut self.memory,
            &mut self.pids,
            &mut self.cpu,
        ] {
            if let Some(path) = dir
                && match fs::remove_dir(path) {
                    Ok(()) => true,
                    Err(error) => error.kind() == io::ErrorKind::NotFound,
                }
            {
                *dir = None;
            }
        }
        self.dirs().next().is_none()
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Controller {
    Memory,
    Pids,
    Cpu,
}

/// Limits for one job; `None` leaves the fresh leaf's default (no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub cpu_cores: Option<f64>,
}

/// What the keeper thread shares with the worker.
struct Shared {
    layout: Arc<Layout>,
    ready: Mutex<Vec<Slot>>,
    /// What the last job asked for: the limits fresh leaves are made with.
    expected: Mutex<Limits>,
    next: AtomicU64,
    closed: AtomicBool,
}

enum Chore {
    Refill,
    Retire(Slot),
}

pub struct Cgroups {
    pub layout: Arc<Layout>,
    shared: Arc<Shared>,
    /// None when there is no keeper thread (no cgroups, or the thread could not start): then
    /// leaves are made at take and removed at release, inline.
    chores: Option<Sender<Chore>>,
    keeper: Option<JoinHandle<()>>,
}

impl Cgroups {
    pub fn new(layout: Layout) -> Cgroups {
        let layout = Arc::new(layout);
        let shared = Arc::new(Shared {
            layout: layout.clone(),
            ready: Mutex::new(Vec::new()),
            expected: Mutex::new(Limits::default()),
            next: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        let mut cgroups = Cgroups {
            layout,
            shared: shared.clone(),
            chores: None,
            keeper: None,
        };
        if !cgroups.any() {
            return cgroups;
        }
        let (chores, inbox) = channel();
        match std::thread::Builder::new()
            .name("cgroup-keeper".into())
            .spawn(move || {
                crate::sandbox::background_thread();
                keep(&shared, inbox)
            }) {
            Ok(handle) => {
                let _ = chores.send(Chore::Refill);
                cgroups.chores = Some(chores);
                cgroups.keeper = Some(handle);
            }
            Err(error) => {
                tracing::warn!(%error, "no cgroup keeper thread: job leaves are made and removed inline");
            }
        }
        cgroups
    }

    pub fn any(&self) -> bool {
        self.layout.bases().next().is_some()
    }

    /// A never-used slot with `limits` applied, and its baselines.
    pub fn take(&self, limits: Limits) -> io::Result<(Slot, Baseline)> {
        self.configure_taken(self.take_unconfigured()?, limits)
    }

    /// A never-used leaf with no limits set yet, for a prepared sandbox to join ahead of its
    /// job (a migration into a cgroup can wait for an RCU grace period: off the job's path
    /// there).
    pub fn take_unconfigured(&self) -> io::Result<Slot> {
        let ready = self.shared.ready.lock().ok().and_then(|mut r| r.pop());
        if let Some(chores) = &self.chores {
            let _ = chores.send(Chore::Refill);
        }
        match ready {
            Some(slot) => Ok(slot),
            None => create(&self.shared),
        }
    }

    /// Applies a job's limits to a leaf taken with `take_unconfigured`: only those that differ
    /// from what the leaf was made with.
    pub fn configure_taken(&self, mut slot: Slot, limits: Limits) -> io::Result<(Slot, Baseline)> {
        *crate::sync::lock(&self.shared.expected) = limits;
        match configure(&self.layout, &slot, slot.applied, limits) {
            Ok(()) => {
                slot.applied = Some(limits);
                let baseline = slot.baseline;
                Ok((slot, baseline))
            }
            Err(error) => {
                self.release(slot);
                Err(error)
            }
        }
    }

    /// Retires a used slot: the keeper kills what is left in it and removes it once empty.
    pub fn release(&self, slot: Slot) {
        let mut slot = match &self.chores {
            Some(chores) => match chores.send(Chore::Retire(slot)) {
                Ok(()) => return,
                Err(SendError(Chore::Retire(slot))) => slot,
                Err(_) => return,
            },
            None => slot,
        };
        // No keeper: whatever cannot be removed now is removed with the base at exit.
        if !slot.remove() {
            kill_slot(&slot);
            slot.remove();
        }
    }
}

/// The keeper: refills the fresh leaves and removes retired ones, off every job's path.
fn keep(shared: &Shared, inbox: Receiver<Chore>) {
    let mut retired: Vec<Slot> = Vec::new();
    let mut retry_in = RETRY_FIRST;
    let mut retry_at = Instant::now();
    loop {
        let chore = if retired.is_empty() {
            inbox.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            inbox.recv_timeout(retry_at.saturating_duration_since(Instant::now()))
        };
        match chore {
            Ok(Chore::Refill) => refill(shared),
            Ok(Chore::Retire(mut slot)) => {
                // Members still running (a job's escapee, a job refused after take) die now.
                if !slot.remove() {
                    kill_slot(&slot);
                    if retired.is_empty() {
                        retry_in = RETRY_FIRST;
                        retry_at = Instant::now() + retry_in;
                    }
                    retired.push(slot);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            // The worker's Drop removes the base and everything still in it.
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if !retired.is_empty() && Instant::now() >= retry_at {
            retired.retain_mut(|slot| {
                let gone = slot.remove();
                if !gone {
                    kill_slot(slot);
                }
                !gone
            });
            retry_in = (retry_in * 2).min(RETRY_MAX);
            retry_at = Instant::now() + retry_in;
        }
    }
}

fn refill(shared: &Shared) {
    loop {
        if shared.closed.load(Ordering::SeqCst) {
            return;
        }
        let have = shared.ready.lock().map_or(READY_WANTED, |r| r.len());
        if have >= READY_WANTED {
            return;
        }
        match create(shared) {
            Ok(slot) => match shared.ready.lock() {
                Ok(mut ready) => ready.push(slot),
                Err(_) => return,
            },
            Err(error) => {
                tracing::debug!(%error, "could not make a job cgroup ahead");
                return;
            }
        }
    }
}

fn create(shared: &Shared) -> io::Result<Slot> {
    let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
    for _ in 0..NAME_ATTEMPTS {
        let name = format!("job-{}", shared.next.fetch_add(1, Ordering::Relaxed));
        match create_named(&shared.layout, &name) {
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => last = error,
            Ok(mut slot) => {
                let expected = *crate::sync::lock(&shared.expected);
                // A leaf whose limits could not all be written is still fresh: the job's
                // own configure writes every one (and reports a failure) on its path.
                slot.applied = configure(&shared.layout, &slot, slot.applied, expected)
                    .ok()
                    .map(|()| expected);
                return Ok(slot);
            }
            Err(error) => return Err(error),
        }
    }
    Err(last)
}

fn create_named(l: &Layout, name: &str) -> io::Result<Slot> {
    let mut slot = Slot {
        v2: None,
        memory: None,
        pids: None,
        cpu: None,
        procs: Vec::new(),
        baseline: Baseline::default(),
        applied: Some(Limits::default()),
    };
    let result = (|| -> io::Result<()> {
        // An existing leaf is an error, never adopted: it may have had members.
        let leaf = |base: Option<&PathBuf>| -> io::Result<Option<PathBuf>> {
            let Some(base) = base else { return Ok(None) };
            let dir = base.join(name);
            fs::create_dir(&dir)?;
            Ok(Some(dir))
        };
        slot.v2 = leaf(l.v2.as_ref().map(|v2| &v2.base))?;
        slot.memory = leaf(l.memory_v1.as_ref())?;
        slot.pids = leaf(l.pids_v1.as_ref())?;
        slot.cpu = leaf(l.cpu_v1.as_ref())?;
        if let Some(memory) = &slot.memory {
            // Without swap accounting a limited job would swap instead of being stopped.
            let _ = fs::write(memory.join("memory.swappiness"), "0");
        }
        for dir in slot.dirs().cloned().collect::<Vec<_>>() {
            let fd = fs::File::options()
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(dir.join("cgroup.procs"))?;
            slot.procs.push(fd.into());
        }
        slot.baseline = Baseline::read(&slot, l);
        Ok(())
    })();
    match result {
        Ok(()) => Ok(slot),
        Err(error) => {
            slot.remove();
            Err(error)
        }
    }
}

fn v2_has(l: &Layout, f: fn(&V2) -> bool) -> bool {
    l.v2.as_ref().is_some_and(f)
}

/// Moves a leaf's limits from `from` (what is written now; a fresh leaf has none, `None` is
/// unknown) to `to`, writing only what differs; a limit dropped goes back to "no limit".
fn configure(l: &Layout, slot: &Slot, from: Option<Limits>, to: Limits) -> io::Result<()> {
    let differs = |field: fn(&Limits) -> Option<u64>| from.is_none_or(|f| field(&f) != field(&to));
    if differs(|limits| limits.memory) {
        let bytes = to.memory.map(|b| b.to_string());
        match slot.controller(l, Controller::Memory) {
            Some((dir, true)) => {
                fs::write(dir.join("memory.max"), bytes.as_deref().unwrap_or("max"))?;
                let swap = if to.memory.is_some() { "0" } else { "max" };
                let _ = fs::write(dir.join("memory.swap.max"), swap);
            }
            Some((dir, false)) => fs::write(
                dir.join("memory.limit_in_bytes"),
                bytes.as_deref().unwrap_or("-1"),
            )?,
            None => {}
        }
    }
    if differs(|limits| limits.pids)
        && let Some((dir, _)) = slot.controller(l, Controller::Pids)
    {
        let pids = to.pids.map_or_else(|| "max".to_owned(), |n| n.to_string());
        fs::write(dir.join("pids.max"), pids)?;
    }
    if differs(cpu_quota) {
        let quota = cpu_quota(&to);
        match slot.controller(l, Controller::Cpu) {
            Some((dir, true)) => {
                let quota = quota.map_or_else(|| "max".to_owned(), |q| q.to_string());
                fs::write(dir.join("cpu.max"), format!("{quota} {CPU_PERIOD_US}"))?;
            }
            Some((dir, false)) => {
                fs::write(dir.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string())?;
                let quota = quota.map_or_else(|| "-1".to_owned(), |q| q.to_string());
                fs::write(dir.join("cpu.cfs_quota_us"), quota)?;
            }
            None => {}
        }
    }
    Ok(())
}

fn cpu_quota(limits: &Limits) -> Option<u64> {
    limits
        .cpu_cores
        .filter(|c| *c > 0.0)
        .map(|c| ((c * CPU_PERIOD_US as f64) as u64).max(1000))
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        // The keeper ends once its inbox is closed; join it so it makes no leaf after the
        // bases are gone.
        self.chores = None;
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
        if let Ok(mut ready) = self.shared.ready.lock() {
            for mut slot in ready.drain(..) {
                slot.remove();
            }
        }
        // Retired leaves that never emptied: killed and removed with their base.
        for base in self.layout.bases() {
            remove_base(base);
        }
    }
}

/// Kills every process of the job, however it detached from its parent or session.
pub fn kill_slot(slot: &Slot) {
    if let Some(dir) = &slot.v2
        && fs::write(dir.join("cgroup.kill"), "1").is_ok()
    {
        return;
    }
    for dir in slot.dirs() {
        kill_members(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::super::probe;
    use super::*;
    use crate::sandbox::cgroup::readings::read_key;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    fn eventually(mut condition: impl FnMut() -> bool) -> bool {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if condition() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        condition()
    }

    fn pids_dir<'a>(cgroups: &Cgroups, slot: &'a Slot) -> Option<&'a Path> {
        slot.controller(&cgroups.layout, Controller::Pids)
            .map(|(dir, _)| dir)
    }

    /// `sh -c script` with every leaf of `slot` joined before exec, as a job joins them.
    fn run_in(slot: &Slot, script: &str) -> std::process::Child {
        let fds: Vec<RawFd> = slot.procs_fds().collect();
        let mut command = Command::new("/bin/sh");
        command
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only write(2) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                for fd in &fds {
                    if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        command.spawn().expect("spawn into the leaf")
    }

    #[test]
    fn a_used_leaf_is_never_handed_out_again_and_is_removed_once_its_members_die() {
        let cgroups = Cgroups::new(probe());
        if !cgroups.any() {
            return;
        }
        let limits = Limits {
            memory: Some(64 << 20),
            pids: Some(3),
            cpu_cores: Some(0.5),
        };
        let (used, _) = cgroups.take(limits).expect("take");
        let used_dirs: Vec<PathBuf> = used.dirs().cloned().collect();
        // Runs past its release: the keeper must kill it before it can remove the leaf.
        let mut child = run_in(
            &used,
            "for i in 1 2 3 4 5 6; do sleep 60 & done; setsid sleep 60 & wait",
        );
        let hit = pids_dir(&cgroups, &used).map(|dir| dir.join("pids.events"));
        if let Some(events) = &hit {
            assert!(
                eventually(|| read_key(events, "max").unwrap_or(0) > 0),
                "the pids limit was never hit"
            );
        }
        cgroups.release(used);
        let _ = child.wait();
        assert!(
            eventually(|| used_dirs.iter().all(|dir| !dir.exists())),
            "a used leaf was not removed: {used_dirs:?}"
        );

        let mut later = Vec::new();
        for _ in 0..2 * READY_WANTED + 2 {
            let (slot, baseline) = cgroups.take(Limits::default()).expect("take");
            assert!(slot.dirs().all(|dir| !used_dirs.contains(dir)));
            assert_eq!(baseline.pids_max_events, 0);
            assert_eq!(baseline.oom_kills, 0);
            if let Some(dir) = pids_dir(&cgroups, &slot) {
                let max = fs::read_to_string(dir.join("pids.max")).unwrap();
                assert_eq!(max.trim(), "max", "a limit of an earlier job is visible");
                assert_eq!(read_key(&dir.join("pids.events"), "max"), Some(0));
            }
            if let Some(dir) = &slot.memory {
                let limit = fs::read_to_string(dir.join("memory.limit_in_bytes")).unwrap();
                assert_ne!(limit.trim(), (64u64 << 20).to_string());
                let peak = fs::read_to_string(dir.join("memory.max_usage_in_bytes")).unwrap();
                assert_eq!(peak.trim(), "0");
            }
            later.push(slot);
        }
        let later_dirs: Vec<PathBuf> = later.iter().flat_map(|s| s.dirs().cloned()).collect();
        for slot in later {
            cgroups.release(slot);
        }
        assert!(eventually(|| later_dirs.iter().all(|dir| !dir.exists())));
    }

    #[test]
    fn fresh_leaves_come_with_the_last_limits_and_a_job_gets_exactly_its_own() {
        let cgroups = Cgroups::new(probe());
        if !cgroups.any() {
            return;
        }
        let first = Limits {
            memory: Some(96 << 20),
            pids: Some(7),
            cpu_cores: Some(0.5),
        };
        let (slot, _) = cgroups.take(first).expect("take");
        cgroups.release(slot);
        assert!(
            eventually(|| {
                let ready = cgroups.shared.ready.lock().unwrap();
                ready.len() == READY_WANTED && ready.iter().all(|s| s.applied == Some(first))
            }),
            "the keeper did not make leaves with the last job's limits ahead"
        );
        let read = |dir: &Path, file: &str| fs::read_to_string(dir.join(file)).unwrap();
        // Same limits: nothing to write on the job's path, and they are in place.
        let (same, _) = cgroups.take(first).expect("take");
        if let Some(dir) = pids_dir(&cgroups, &same) {
            assert_eq!(read(dir, "pids.max").trim(), "7");
        }
        cgroups.release(same);
        // Other limits, one of them dropped: the leaf ends up with exactly the job's own.
        let other = Limits {
            memory: Some(128 << 20),
            pids: None,
            cpu_cores: None,
        };
        let (slot, _) = cgroups.take(other).expect("take");
        assert_eq!(slot.applied, Some(other));
        if let Some(dir) = pids_dir(&cgroups, &slot) {
            assert_eq!(read(dir, "pids.max").trim(), "max");
        }
        match slot.controller(&cgroups.layout, Controller::Memory) {
            Some((dir, true)) => assert_eq!(read(dir, "memory.max").trim(), "134217728"),
            Some((dir, false)) => {
                assert_eq!(read(dir, "memory.limit_in_bytes").trim(), "134217728")
            }
            None => {}
        }
        match slot.controller(&cgroups.layout, Controller::Cpu) {
            Some((dir, true)) => assert!(read(dir, "cpu.max").starts_with("max ")),
            Some((dir, false)) => assert_eq!(read(dir, "cpu.cfs_quota_us").trim(), "-1"),
            None => {}
        }
        cgroups.release(slot);
    }

    #[test]
    fn the_worker_leaves_no_cgroup_behind() {
        let cgroups = Cgroups::new(probe());
        if !cgroups.any() {
            return;
        }
        let bases: Vec<PathBuf> = cgroups.layout.bases().cloned().collect();
        let (held, _) = cgroups.take(Limits::default()).expect("take");
        let mut child = run_in(&held, "sleep 60");
        // Retired with a live member and the worker gone before the keeper's retry.
        cgroups.release(held);
        drop(cgroups);
        let _ = child.wait();
        for base in bases {
            assert!(!base.exists(), "{} left behind", base.display());
        }
    }
}
