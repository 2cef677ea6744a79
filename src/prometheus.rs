//! `worker_get_metrics {format: "prometheus"}`: the same numbers in the Prometheus text
//! exposition format (0.0.4), named the Prometheus way: `opencode_worker_` prefix, base units
//! (seconds, bytes) in the names, `_total` on counters, summaries for the latency windows.

use crate::metrics::{JOB_CPU_MS, JOB_MAX_RSS, LatencyPhase, Metrics};
use crate::protocol::MetricsResult;
use std::fmt::Write;

const PREFIX: &str = "opencode_worker_";

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {PREFIX}{name} {help}");
        let _ = writeln!(self.0, "# TYPE {PREFIX}{name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.0, "{PREFIX}{name}");
        if !labels.is_empty() {
            let body: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.0, "{{{}}}", body.join(","));
        }
        let _ = writeln!(self.0, " {}", number(value));
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A summary from a window's percentiles and the all-time count and sum, scaled into base
    /// units by `scale`.
    fn summary(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        series: &(crate::protocol::Percentiles, u64, f64),
        scale: f64,
    ) {
        let (p, count, sum) = series;
        if p.count > 0 {
            for (q, v) in [("0.5", p.p50), ("0.9", p.p90), ("0.99", p.p99)] {
                let mut with_q = labels.to_vec();
                with_q.push(("quantile", q));
                self.sample(name, &with_q, v * scale);
            }
        }
        self.sample(&format!("{name}_sum"), labels, sum * scale);
        self.sample(&format!("{name}_count"), labels, *count as f64);
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

pub fn render(result: &MetricsResult, metrics: &Metrics) -> String {
    let mut out = Out(String::new());
    out.single(
        "uptime_seconds",
        "gauge",
        "Seconds since the worker started.",
        result.uptime_ms as f64 / 1e3,
    );
    out.single(
        "jobs_dispatched_total",
        "counter",
        "Jobs admitted since start.",
        result.jobs.dispatched as f64,
    );
    out.single(
        "jobs_rejected_total",
        "counter",
        "Dispatch requests refused (invalid, over a limit, busy, duplicate).",
        result.jobs.rejected as f64,
    );
    out.family(
        "jobs_ended_total",
        "counter",
        "Jobs ended since start, by final status.",
    );
    for (status, count) in &result.jobs.by_status {
        if !matches!(status.as_str(), "queued" | "running") {
            out.sample("jobs_ended_total", &[("status", status)], *count as f64);
        }
    }
    out.family(
        "jobs_ended_by_reason_total",
        "counter",
        "Jobs that did not finish cleanly, by reason.",
    );
    for (reason, count) in &result.jobs.by_reason {
        out.sample(
            "jobs_ended_by_reason_total",
            &[("reason", reason)],
            *count as f64,
        );
    }
    out.single(
        "jobs_running",
        "gauge",
        "Jobs with a live session.",
        result.active_sessions as f64,
    );
    out.single(
        "jobs_queued",
        "gauge",
        "Jobs waiting for a session slot.",
        result.queue_depth as f64,
    );
    out.single(
        "jobs_retained",
        "gauge",
        "Ended jobs kept for status and output.",
        result.retained as f64,
    );
    out.single(
        "sessions_max",
        "gauge",
        "Jobs that may run at once.",
        result.max_concurrent_sessions as f64,
    );
    out.single(
        "queue_max",
        "gauge",
        "Jobs that may wait for a slot.",
        result.max_queued as f64,
    );
    out.single(
        "subscriptions",
        "gauge",
        "Job event subscriptions open now.",
        result.subscriptions.unwrap_or(0) as f64,
    );
    if let Some(egress) = &result.egress {
        for (name, help, value) in [
            (
                "egress_jobs_total",
                "Ended jobs that ran with a network allowlist.",
                egress.jobs,
            ),
            (
                "egress_connections_total",
                "Connections the egress proxy opened for jobs.",
                egress.connections,
            ),
            (
                "egress_received_bytes_total",
                "Bytes from destinations to jobs through the egress proxy.",
                egress.bytes_in,
            ),
            (
                "egress_sent_bytes_total",
                "Bytes from jobs to destinations through the egress proxy.",
                egress.bytes_out,
            ),
            (
                "egress_denied_total",
                "Connections the egress proxy refused.",
                egress.denied,
            ),
        ] {
            out.single(name, "counter", help, value as f64);
        }
    }
    if let Some(process) = &result.process {
        out.single(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of the worker process (VmRSS).",
            process.rss_bytes as f64,
        );
        out.single(
            "process_resident_memory_peak_bytes",
            "gauge",
            "Peak resident memory of the worker process (VmHWM).",
            process.peak_rss_bytes as f64,
        );
        out.single(
            "process_open_fds",
            "gauge",
            "Open file descriptors of the worker process.",
            process.open_fds as f64,
        );
        out.single(
            "process_threads",
            "gauge",
            "Threads of the worker process.",
            process.threads as f64,
        );
    }
    out.family(
        "job_phase_duration_seconds",
        "summary",
        "Time per lifecycle phase; quantiles over the most recent 10000 jobs.",
    );
    for phase in LatencyPhase::ALL
        .into_iter()
        .filter(|p| *p != LatencyPhase::Total)
    {
        out.summary(
            "job_phase_duration_seconds",
            &[("phase", phase.as_str())],
            &metrics.series(phase.as_str()),
            1e-3,
        );
    }
    out.family(
        "job_duration_seconds",
        "summary",
        "Admission to end of destroy; quantiles over the most recent 10000 jobs.",
    );
    out.summary(
        "job_duration_seconds",
        &[],
        &metrics.series(LatencyPhase::Total.as_str()),
        1e-3,
    );
    out.family(
        "job_cpu_seconds",
        "summary",
        "User plus system CPU time per job; quantiles over the most recent 10000 jobs.",
    );
    out.summary("job_cpu_seconds", &[], &metrics.series(JOB_CPU_MS), 1e-3);
    out.family(
        "job_peak_memory_bytes",
        "summary",
        "Peak resident memory of a job's largest process; quantiles over the most recent 10000 jobs.",
    );
    out.summary(
        "job_peak_memory_bytes",
        &[],
        &metrics.series(JOB_MAX_RSS),
        1.0,
    );
    let host = &result.host;
    out.single("host_cpus", "gauge", "CPUs of the host.", host.cpus as f64);
    out.single(
        "host_cpu_usage_ratio",
        "gauge",
        "Whole-host CPU use since the previous metrics call (0 to 1).",
        f64::from(host.cpu_usage_percent) / 100.0,
    );
    out.single(
        "host_load1",
        "gauge",
        "Host load average over 1 minute.",
        host.load_average_1m,
    );
    out.single(
        "host_memory_total_bytes",
        "gauge",
        "Host memory.",
        host.memory_total_bytes as f64,
    );
    out.single(
        "host_memory_available_bytes",
        "gauge",
        "Host memory available.",
        host.memory_available_bytes as f64,
    );
    if let Some(fleet) = &result.fleet {
        out.single(
            "fleet_pending_jobs",
            "gauge",
            "Jobs waiting in the fleet's queue for a worker with room.",
            fleet.pending as f64,
        );
        type Reading = fn(&crate::protocol::WorkerMetrics) -> f64;
        let families: [(&str, &str, &str, Reading); 5] = [
            (
                "fleet_worker_up",
                "gauge",
                "1 when the worker's link is up.",
                |w| f64::from(u8::from(w.link == crate::protocol::WorkerLink::Up)),
            ),
            (
                "fleet_worker_capacity",
                "gauge",
                "Jobs the worker takes at once now.",
                |w| w.capacity as f64,
            ),
            (
                "fleet_worker_running_jobs",
                "gauge",
                "Jobs routed to the worker that have not ended.",
                |w| w.running as f64,
            ),
            (
                "fleet_worker_dispatched_total",
                "counter",
                "Jobs routed to the worker since start.",
                |w| w.dispatched as f64,
            ),
            (
                "fleet_worker_lost_jobs_total",
                "counter",
                "The worker's jobs that ended worker_lost.",
                |w| w.lost as f64,
            ),
        ];
        for (name, kind, help, value) in families {
            out.family(name, kind, help);
            for worker in &fleet.workers {
                out.sample(name, &[("worker", &worker.name)], value(worker));
            }
        }
    }
    out.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_labels() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
