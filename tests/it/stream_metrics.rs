//! `worker_get_metrics` against the jobs actually run: every count adds up exactly, and the
//! Prometheus text follows the exposition format line by line and says the same numbers.

use crate::common;
use opencode_worker::protocol::table::{self, Method};

use common::Worker;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

fn run(w: &mut Worker, spec: Value) -> Value {
    let mut spec = spec;
    spec["wait_ms"] = json!(20000);
    w.dispatch(spec)
}

/// Parses the text exposition format strictly: HELP and TYPE before each family's samples,
/// valid names and labels, numeric values. Returns sample -> value, keyed `name{labels}`.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    assert!(text.ends_with('\n'));
    for line in text.lines() {
        assert!(!line.is_empty(), "blank line");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(name_ok(name) && !help.is_empty(), "{line}");
            assert!(
                helps.insert(name.into(), help.into()).is_none(),
                "HELP twice: {line}"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(name_ok(name), "{line}");
            assert!(
                ["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(helps.contains_key(name), "TYPE before HELP: {line}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter without _total: {line}");
            }
            assert!(
                types.insert(name.into(), kind.into()).is_none(),
                "TYPE twice: {line}"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "{line}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, Some(rest.strip_suffix('}').expect(line))),
            None => (series, None),
        };
        assert!(name_ok(name), "{line}");
        assert!(name.starts_with("opencode_worker_"), "{line}");
        if let Some(labels) = labels {
            for pair in labels.split(',') {
                let (key, quoted) = pair.split_once('=').expect(line);
                assert!(name_ok(key), "{line}");
                assert!(
                    quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'),
                    "{line}"
                );
            }
        }
        let family = ["_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix).filter(|base| {
                    types
                        .get(*base)
                        .is_some_and(|t| t == "summary" || t == "histogram")
                })
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before its TYPE: {line}");
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "duplicate {line}"
        );
    }
    samples
}

#[test]
fn metrics_add_up_to_the_jobs_run_and_prometheus_says_the_same() {
    let mut w = Worker::start();
    for _ in 0..3 {
        assert_eq!(
            run(&mut w, json!({"command": "true"}))["status"],
            "finished"
        );
    }
    for _ in 0..2 {
        assert_eq!(
            run(&mut w, json!({"command": "exit 3"}))["status"],
            "failed"
        );
    }
    let timed = run(
        &mut w,
        json!({"command": "sleep 30", "limits": {"timeout": 300}}),
    );
    assert_eq!(timed["status"], "timeout");
    let flood = run(
        &mut w,
        json!({"command": "yes | head -c 5000000", "limits": {"output": 100000}}),
    );
    assert_eq!(flood["reason"], "output_limit");
    w.dispatch(json!({"job_id": "c", "command": "sleep 30"}));
    w.wait_status("c", "running");
    w.call(table::CancelJob::NAME, json!({"job_id": "c"}));
    for bad in [
        json!({"command": "true", "limits": {"memory": "lots"}}),
        json!({}),
    ] {
        w.call_err(table::DispatchJob::NAME, bad);
    }
    w.wait_ended("c");

    let m = w.call(table::GetMetrics::NAME, json!({}));
    assert_eq!(m["format"], "json");
    assert!(m.get("text").is_none());
    let jobs = &m["jobs"];
    assert_eq!(jobs["dispatched"], 8, "{m}");
    assert_eq!(jobs["rejected"], 2);
    let by_status: BTreeMap<String, u64> =
        serde_json::from_value(jobs["by_status"].clone()).unwrap();
    let expected_status = [
        ("finished", 3),
        ("failed", 2),
        ("timeout", 1),
        ("killed", 1),
        ("cancelled", 1),
        ("queued", 0),
        ("running", 0),
    ];
    for (status, n) in expected_status {
        assert_eq!(by_status[status], n, "{status}: {m}");
    }
    assert_eq!(
        by_status.values().sum::<u64>(),
        8,
        "statuses add up to dispatched"
    );
    let by_reason: BTreeMap<String, u64> =
        serde_json::from_value(jobs["by_reason"].clone()).unwrap();
    for (reason, n) in [
        ("exit_code", 2),
        ("timeout", 1),
        ("output_limit", 1),
        ("cancelled", 1),
    ] {
        assert_eq!(by_reason[reason], n, "{reason}: {m}");
    }
    assert_eq!(
        by_reason.values().sum::<u64>(),
        5,
        "one reason per job that did not finish"
    );
    assert_eq!(m["retained"], 8);
    assert_eq!(m["latency_ms"]["total"]["count"], 8);
    assert_eq!(m["latency_ms"]["execute"]["count"], 8);
    assert_eq!(m["job_resources"]["cpu_ms"]["count"], 8);
    assert_eq!(m["job_resources"]["max_rss_bytes"]["count"], 8);
    assert!(m["job_resources"]["max_rss_bytes"]["max"].as_f64().unwrap() > 0.0);
    let process = &m["process"];
    assert!(process["rss_bytes"].as_u64().unwrap() > 0);
    assert!(process["peak_rss_bytes"].as_u64() >= process["rss_bytes"].as_u64());
    assert!(process["open_fds"].as_u64().unwrap() >= 3);

    let p = w.call(table::GetMetrics::NAME, json!({"format": "prometheus"}));
    assert_eq!(p["format"], "prometheus");
    let samples = parse_prometheus(p["text"].as_str().unwrap());
    let get = |key: &str| {
        samples
            .get(key)
            .copied()
            .unwrap_or_else(|| panic!("no {key}"))
    };
    assert_eq!(get("opencode_worker_jobs_dispatched_total"), 8.0);
    assert_eq!(get("opencode_worker_jobs_rejected_total"), 2.0);
    for (status, n) in expected_status
        .iter()
        .filter(|(s, _)| !matches!(*s, "queued" | "running"))
    {
        assert_eq!(
            get(&format!(
                "opencode_worker_jobs_ended_total{{status=\"{status}\"}}"
            )),
            *n as f64
        );
    }
    assert_eq!(
        get("opencode_worker_jobs_ended_by_reason_total{reason=\"exit_code\"}"),
        2.0
    );
    assert_eq!(get("opencode_worker_jobs_running"), 0.0);
    assert_eq!(get("opencode_worker_jobs_queued"), 0.0);
    assert_eq!(get("opencode_worker_jobs_retained"), 8.0);
    assert_eq!(get("opencode_worker_job_duration_seconds_count"), 8.0);
    assert_eq!(
        get("opencode_worker_job_phase_duration_seconds_count{phase=\"execute\"}"),
        8.0
    );
    assert_eq!(get("opencode_worker_job_cpu_seconds_count"), 8.0);
    let p50 = get("opencode_worker_job_duration_seconds{quantile=\"0.5\"}");
    let p99 = get("opencode_worker_job_duration_seconds{quantile=\"0.99\"}");
    assert!(p50 > 0.0 && p50 <= p99);
    // The JSON p50 in milliseconds is the same sample as the Prometheus one in seconds.
    let json_p50 = m["latency_ms"]["total"]["p50"].as_f64().unwrap();
    assert!((json_p50 / 1e3 - p50).abs() < 1e-9);
    assert!(get("opencode_worker_process_resident_memory_bytes") > 0.0);
    assert!(get("opencode_worker_host_memory_total_bytes") > 0.0);
}
