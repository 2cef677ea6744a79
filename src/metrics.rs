//! Counters and latency windows behind `worker_get_metrics`.

use crate::protocol::{EndReason, JobCounts, JobStatus, Percentiles};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// Percentiles are computed over the most recent samples of each phase.
const WINDOW: usize = 10_000;

pub const PHASES: [&str; 7] = [
    "queue", "prepare", "spawn", "execute", "collect", "destroy", "total",
];

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    dispatched: u64,
    rejected: u64,
    ended: BTreeMap<&'static str, u64>,
    reasons: BTreeMap<&'static str, u64>,
    windows: BTreeMap<&'static str, VecDeque<f64>>,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn dispatched(&self) {
        self.lock().dispatched += 1;
    }

    pub fn rejected(&self) {
        self.lock().rejected += 1;
    }

    pub fn ended(
        &self,
        status: JobStatus,
        reason: Option<EndReason>,
        phases_ms: &[(&'static str, f64)],
    ) {
        let mut inner = self.lock();
        *inner.ended.entry(status.as_str()).or_default() += 1;
        if let Some(reason) = reason {
            *inner.reasons.entry(reason.as_str()).or_default() += 1;
        }
        for &(phase, ms) in phases_ms {
            let window = inner.windows.entry(phase).or_default();
            if window.len() == WINDOW {
                window.pop_front();
            }
            window.push_back(ms);
        }
    }

    /// `queued` and `running` come from the pool, the ended statuses from the counters.
    pub fn counts(&self, queued: u64, running: u64) -> JobCounts {
        let inner = self.lock();
        let mut by_status: BTreeMap<String, u64> = JobStatus::ALL
            .iter()
            .map(|status| (status.as_str().to_owned(), 0))
            .collect();
        by_status.insert("queued".into(), queued);
        by_status.insert("running".into(), running);
        for (status, count) in &inner.ended {
            by_status.insert((*status).to_owned(), *count);
        }
        let by_reason = EndReason::ALL
            .iter()
            .map(|reason| {
                let name = reason.as_str();
                (
                    name.to_owned(),
                    inner.reasons.get(name).copied().unwrap_or(0),
                )
            })
            .collect();
        JobCounts {
            dispatched: inner.dispatched,
            rejected: inner.rejected,
            by_status,
            by_reason,
        }
    }

    pub fn latency(&self) -> BTreeMap<String, Percentiles> {
        let inner = self.lock();
        PHASES
            .iter()
            .map(|phase| {
                let samples = inner
                    .windows
                    .get(phase)
                    .map(|w| w.iter().copied().collect())
                    .unwrap_or_default();
                ((*phase).to_owned(), percentiles(samples))
            })
            .collect()
    }
}

pub fn percentiles(mut samples: Vec<f64>) -> Percentiles {
    if samples.is_empty() {
        return Percentiles::default();
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1]
    };
    Percentiles {
        count: samples.len() as u64,
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: samples[samples.len() - 1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let p = percentiles((1..=100).map(f64::from).collect());
        assert_eq!(
            (p.p50, p.p90, p.p99, p.max, p.count),
            (50.0, 90.0, 99.0, 100.0, 100)
        );
        assert_eq!(percentiles(vec![]).count, 0);
    }
}
