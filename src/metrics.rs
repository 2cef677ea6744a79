//! Counters and latency windows behind `worker_get_metrics`.

use crate::protocol::{EndReason, JobCounts, JobStatus, Percentiles};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// Percentiles are computed over the most recent samples of each phase.
const WINDOW: usize = 10_000;

/// The spans of a job's life the latency windows measure: the lifecycle phases as the pool
/// times them (waiting in the queue and spawning the process apart), and the whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyPhase {
    Queue,
    Prepare,
    Spawn,
    Execute,
    Collect,
    Destroy,
    Total,
}

impl LatencyPhase {
    pub const ALL: [LatencyPhase; 7] = [
        LatencyPhase::Queue,
        LatencyPhase::Prepare,
        LatencyPhase::Spawn,
        LatencyPhase::Execute,
        LatencyPhase::Collect,
        LatencyPhase::Destroy,
        LatencyPhase::Total,
    ];

    /// The key in `latency_ms` and the Prometheus `phase` label.
    pub fn as_str(self) -> &'static str {
        match self {
            LatencyPhase::Queue => "queue",
            LatencyPhase::Prepare => "prepare",
            LatencyPhase::Spawn => "spawn",
            LatencyPhase::Execute => "execute",
            LatencyPhase::Collect => "collect",
            LatencyPhase::Destroy => "destroy",
            LatencyPhase::Total => "total",
        }
    }
}

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
    /// Every sample since start, per window: (count, sum), for summaries' `_count` and `_sum`.
    totals: BTreeMap<&'static str, (u64, f64)>,
    egress: crate::protocol::EgressTotals,
}

/// Window names of per-job resource use.
pub const JOB_CPU_MS: &str = "job_cpu_ms";
pub const JOB_MAX_RSS: &str = "job_max_rss_bytes";

fn record(inner: &mut Inner, name: &'static str, value: f64) {
    let window = inner.windows.entry(name).or_default();
    if window.len() == WINDOW {
        window.pop_front();
    }
    window.push_back(value);
    let total = inner.totals.entry(name).or_default();
    total.0 += 1;
    total.1 += value;
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
        phases_ms: &[(LatencyPhase, f64)],
    ) {
        let mut inner = self.lock();
        *inner.ended.entry(status.as_str()).or_default() += 1;
        if let Some(reason) = reason {
            *inner.reasons.entry(reason.as_str()).or_default() += 1;
        }
        for &(phase, ms) in phases_ms {
            record(&mut inner, phase.as_str(), ms);
        }
    }

    /// CPU time and peak memory of a job that ran.
    pub fn job_usage(&self, cpu_ms: f64, max_rss_bytes: u64) {
        let mut inner = self.lock();
        record(&mut inner, JOB_CPU_MS, cpu_ms);
        record(&mut inner, JOB_MAX_RSS, max_rss_bytes as f64);
    }

    /// What an ended job moved through its egress proxy.
    pub fn egress(&self, network: &crate::protocol::NetworkMetrics) {
        let mut inner = self.lock();
        let totals = &mut inner.egress;
        totals.jobs += 1;
        totals.connections += network.connections;
        totals.bytes_in += network.bytes_in;
        totals.bytes_out += network.bytes_out;
        totals.denied += network.denied.iter().map(|d| d.count).sum::<u64>();
    }

    pub fn egress_totals(&self) -> crate::protocol::EgressTotals {
        self.lock().egress.clone()
    }

    /// Percentiles over the recent window plus all-time (count, sum) of one series.
    pub fn series(&self, name: &str) -> (Percentiles, u64, f64) {
        let inner = self.lock();
        let samples = inner
            .windows
            .get(name)
            .map(|w| w.iter().copied().collect())
            .unwrap_or_default();
        let (count, sum) = inner.totals.get(name).copied().unwrap_or_default();
        (percentiles(samples), count, sum)
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
        LatencyPhase::ALL
            .iter()
            .map(|phase| {
                let samples = inner
                    .windows
                    .get(phase.as_str())
                    .map(|w| w.iter().copied().collect())
                    .unwrap_or_default();
                (phase.as_str().to_owned(), percentiles(samples))
            })
            .collect()
    }
}

impl Metrics {
    pub fn job_resources(&self) -> crate::protocol::JobResources {
        crate::protocol::JobResources {
            max_rss_bytes: self.series(JOB_MAX_RSS).0,
            cpu_ms: self.series(JOB_CPU_MS).0,
        }
    }
}

/// The worker process's own memory, descriptors and threads, from /proc/self.
pub fn process_metrics() -> Option<crate::protocol::ProcessMetrics> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|dir| dir.count() as u64)
        .unwrap_or(0);
    Some(crate::protocol::ProcessMetrics {
        rss_bytes: field("VmRSS:") * 1024,
        peak_rss_bytes: field("VmHWM:") * 1024,
        // The read_dir handle itself is one of them.
        open_fds: open_fds.saturating_sub(1),
        threads: field("Threads:"),
    })
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
