//! CPU-core limits by affinity: a job asking for N cores is pinned to N of the worker's CPUs,
//! rotating the starting CPU so concurrent jobs spread out.

use std::sync::atomic::{AtomicUsize, Ordering};

pub struct CpuPicker {
    allowed: Vec<usize>,
    next: AtomicUsize,
}

impl CpuPicker {
    pub fn from_current_affinity() -> Self {
        let allowed = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
            .map(|set| {
                (0..nix::sched::CpuSet::count())
                    .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
                    .collect()
            })
            .unwrap_or_default();
        CpuPicker {
            allowed,
            next: AtomicUsize::new(0),
        }
    }

    pub fn available(&self) -> usize {
        self.allowed.len()
    }

    /// The CPU set for a job, or None when the job may use every CPU the worker has.
    pub fn pick(&self, cores: f64) -> Option<nix::sched::CpuSet> {
        let wanted = cores.ceil().max(1.0) as usize;
        if self.allowed.is_empty() || wanted >= self.allowed.len() {
            return None;
        }
        let start = self.next.fetch_add(wanted, Ordering::Relaxed);
        let mut set = nix::sched::CpuSet::new();
        for i in 0..wanted {
            let cpu = self.allowed[(start + i) % self.allowed.len()];
            set.set(cpu).ok()?;
        }
        Some(set)
    }
}
