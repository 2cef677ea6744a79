//! A job floods 1 GiB of output while its only subscriber reads slowly: the worker's memory
//! stays bounded (VmHWM from /proc), the subscriber is told what it missed, and delivered plus
//! missed bytes add up to exactly what the job wrote.

use crate::common;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const FLOOD: u64 = 1 << 30;

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn a_slow_subscriber_to_a_1_gib_flood_keeps_the_worker_bounded() {
    let base = tempfile::tempdir().unwrap();
    let mut child = Command::new(common::BIN)
        .arg("serve")
        .args([
            "--set",
            &format!("session.base_dir={}", base.path().display()),
        ])
        .args(["--set", "governance.maximums.output=4GiB"])
        .args(["--set", "session.output_keep_bytes=4MiB"])
        .args(["--set", "worker.event_history_bytes=1MiB"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || -> Value { serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap() };
    let mut send = |id: u64, method: &str, params: Value| {
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    };
    send(0, "initialize", json!({}));
    assert_eq!(next()["id"], 0);
    let baseline_kib = status_kib(pid, "VmRSS:");

    send(
        1,
        "worker_dispatch_job",
        json!({
            "job_id": "flood",
            "command": format!("yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ | head -c {FLOOD}"),
            "limits": {"output": "2GiB"},
        }),
    );
    assert_eq!(next()["id"], 1);
    send(2, "worker_subscribe_job", json!({"job_id": "flood"}));
    let reply = next();
    let sub = reply["result"].clone();
    assert!(sub.is_number(), "{reply}");

    let (mut delivered, mut missed, mut lagged_events) = (0u64, 0u64, 0u64);
    let mut expected_seq = 1u64;
    let end = loop {
        let line = next();
        // The slow reader: the worker's stdout fills and the subscription falls behind.
        std::thread::sleep(Duration::from_millis(1));
        assert_eq!(line["params"]["subscription"], sub, "{line}");
        let event = &line["params"]["result"];
        if event["kind"] == "lagged" {
            assert_eq!(event["first_missed_seq"], expected_seq);
            lagged_events += 1;
            missed += event["missed_bytes"]
                .as_u64()
                .expect("missed_bytes is known");
            expected_seq = event["seq"].as_u64().unwrap();
        }
        assert_eq!(event["seq"], expected_seq);
        expected_seq += 1;
        match event["kind"].as_str().unwrap() {
            "stdout" => {
                assert_eq!(event["offset"], delivered + missed, "offsets line up");
                delivered += event["bytes"].as_u64().unwrap();
            }
            "end" => break event["job"].clone(),
            _ => {}
        }
    };
    let peak_kib = status_kib(pid, "VmHWM:");
    eprintln!(
        "flood: baseline RSS {baseline_kib} KiB, peak {peak_kib} KiB; delivered {delivered} B, missed {missed} B in {lagged_events} lagged events"
    );
    assert_eq!(end["status"], "finished", "{end}");
    assert_eq!(end["stdout_bytes"], FLOOD);
    assert_eq!(
        delivered + missed,
        FLOOD,
        "every byte delivered or announced missed"
    );
    assert!(
        lagged_events > 0,
        "a 1 ms-per-line reader kept up with 1 GiB"
    );
    // 1 GiB went through; the worker held at most its budgets: 4 MiB kept output, 1 MiB of
    // history, the 8 MiB outbox and a few subscription lines.
    assert!(
        peak_kib < baseline_kib + 64 * 1024 && peak_kib < 128 * 1024,
        "peak RSS {peak_kib} KiB, baseline {baseline_kib} KiB"
    );

    send(
        3,
        "worker_collect_output",
        json!({"job_id": "flood", "max_bytes": 16}),
    );
    let page = next();
    assert_eq!(page["result"]["stdout"]["kept_bytes"], 4 << 20, "{page}");
    assert_eq!(page["result"]["stdout"]["total_bytes"], FLOOD);
    drop(stdin);
    let _ = child.wait();
}
