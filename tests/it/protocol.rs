//! The wire contract through the real binary's pipes: handshake, every error code, batches,
//! notifications, malformed input, and concurrency of requests.

use crate::common;
use common::*;
use opencode_worker::protocol::events;
use opencode_worker::protocol::table::{self, Method};
use serde_json::{Value, json};
use std::time::Duration;

#[test]
fn initialize_lists_every_tool_with_schemas() {
    let mut worker = Worker::start();
    let init = worker.call(
        table::Initialize::NAME,
        json!({"client": {"name": "test", "version": "1"}}),
    );
    assert_eq!(init["name"], "opencode-worker");
    assert_eq!(init["protocol"], 1);
    assert!(init["worker_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(init["limits"]["defaults"]["timeout"].as_u64().unwrap() > 0);
    assert!(init["limits"]["maximums"]["memory"].as_u64().unwrap() > 0);
    assert!(
        init["isolation"]["layers"]
            .as_array()
            .is_some_and(|l| !l.is_empty())
    );
    let names: Vec<&str> = init["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "worker_dispatch_job",
            "worker_get_status",
            "worker_collect_output",
            "worker_cancel_job",
            "worker_list_sessions",
            "worker_get_metrics",
            "worker_apply_changes",
            "worker_discard_changes",
            "worker_get_changes"
        ]
    );
    for tool in init["tools"].as_array().unwrap() {
        assert!(tool["description"].as_str().unwrap().len() > 20);
        assert_eq!(tool["input_schema"]["type"], "object");
        assert_eq!(tool["output_schema"]["type"], "object");
        assert!(
            tool["input_schema"]["$schema"]
                .as_str()
                .unwrap()
                .contains("2020-12")
        );
    }
    // The committed schema files are exactly what the binary serves.
    let dispatch = &init["tools"][0]["input_schema"];
    let on_disk: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schema/worker_dispatch_job.input.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(dispatch, &on_disk);
}

#[test]
fn every_protocol_error_code_with_data() {
    let mut worker = Worker::start_with(&["worker.max_line_bytes=4096"]);
    let mut expect = |line: &[u8], code: i64, id: Value| {
        worker.send_raw(line);
        let reply = worker.next_line();
        assert_eq!(
            reply["error"]["code"],
            code,
            "{}: {reply}",
            String::from_utf8_lossy(line)
        );
        assert_eq!(reply["id"], id, "{reply}");
        assert!(reply["error"]["data"].is_object(), "{reply}");
        assert_eq!(reply["jsonrpc"], "2.0");
    };
    expect(b"{not json", -32700, Value::Null);
    expect(&[b'{', b'"', 0xff, 0xfe, b'"', b'}'], -32700, Value::Null);
    expect(br#"{"jsonrpc":"2.0","id":1}"#, -32600, json!(1));
    expect(br#"{"id":2,"method":"initialize"}"#, -32600, json!(2));
    expect(b"[]", -32600, Value::Null);
    expect(
        br#"{"jsonrpc":"2.0","id":"three","method":"no_such_method"}"#,
        -32601,
        json!("three"),
    );
    let long = format!(
        r#"{{"jsonrpc":"2.0","id":4,"method":"initialize","params":{{"pad":"{}"}}}}"#,
        "x".repeat(10_000)
    );
    expect(long.as_bytes(), -32600, Value::Null);
    // The connection keeps working after every one of them.
    assert_eq!(
        worker.call(table::Initialize::NAME, json!({}))["protocol"],
        1
    );
}

#[test]
fn invalid_params_name_the_field_and_the_reason() {
    let mut worker = Worker::start();
    let cases = [
        (
            json!({"command": "true", "limits": {"memory": "lots"}}),
            "limits.memory",
        ),
        (
            json!({"command": "true", "limits": {"timeout": "soon"}}),
            "limits.timeout",
        ),
        (json!({"command": "true", "network": "internet"}), "network"),
        (json!({"command": "true", "surprise": 1}), "params"),
        (json!({"argv": "ls -l"}), "argv"),
        (json!({}), "command"),
        (json!({"command": "a", "argv": ["b"]}), "command"),
        (json!({"command": "true", "job_id": "has space"}), "job_id"),
        (json!({"command": "true", "env": {"A=B": "x"}}), "env.A=B"),
        (json!({"command": "true", "cwd": "../up"}), "cwd"),
    ];
    for (params, field) in cases {
        let error = worker.call_err(table::DispatchJob::NAME, params.clone());
        assert_eq!(error["code"], -32602, "{params}: {error}");
        let got = error["data"]["field"].as_str().unwrap();
        assert!(
            got == field
                || (field == "params" && got.contains("params")
                    || error["data"]["reason"]
                        .as_str()
                        .unwrap()
                        .contains("surprise")),
            "{params}: field {got}, want {field}: {error}"
        );
        assert!(!error["data"]["reason"].as_str().unwrap().is_empty());
    }
    for max_bytes in [0u64, 16 * 1024 * 1024 + 1] {
        let error = worker.call_err(
            table::CollectOutput::NAME,
            json!({"job_id": "x", "max_bytes": max_bytes}),
        );
        assert_eq!(
            (error["code"].as_i64(), error["data"]["field"].as_str()),
            (Some(-32602), Some("max_bytes")),
            "{error}"
        );
    }
    let error = worker.call_err(table::GetStatus::NAME, json!({"id": "x"}));
    assert_eq!(error["code"], -32602);
    let error = worker.call_err(table::GetStatus::NAME, json!(["x"]));
    assert_eq!(error["code"], -32602);
}

#[test]
fn application_error_codes() {
    let mut worker = Worker::start_with(&[
        "governance.maximums.timeout=60000",
        "governance.defaults.timeout=30000",
    ]);
    let error = worker.call_err(table::GetStatus::NAME, json!({"job_id": "never-seen"}));
    assert_eq!(error["code"], -32001);
    assert_eq!(error["data"]["job_id"], "never-seen");
    let error = worker.call_err(table::CollectOutput::NAME, json!({"job_id": "never-seen"}));
    assert_eq!(error["code"], -32001);
    let error = worker.call_err(table::CancelJob::NAME, json!({"job_id": "never-seen"}));
    assert_eq!(error["code"], -32001);

    let error = worker.call_err(
        table::DispatchJob::NAME,
        json!({"command": "true", "limits": {"timeout": 60001}}),
    );
    assert_eq!(error["code"], -32004);
    assert_eq!(error["data"]["field"], "limits.timeout");
    assert_eq!(error["data"]["maximum"], 60000);
    assert_eq!(error["data"]["requested"], 60001);

    worker.dispatch(json!({"job_id": "same", "command": "true", "wait_ms": 10000}));
    let error = worker.call_err(
        table::DispatchJob::NAME,
        json!({"job_id": "same", "command": "true"}),
    );
    assert_eq!(error["code"], -32005);
    assert_eq!(error["data"]["job_id"], "same");

    let error = worker.call_err(
        table::DispatchJob::NAME,
        json!({"command": "true", "files": {"../escape": "x"}}),
    );
    assert_eq!(error["code"], -32006);
    assert_eq!(error["data"]["path"], "../escape");
}

#[test]
fn batch_and_notifications() {
    let mut worker = Worker::start();
    worker.send_raw(
        br#"[{"jsonrpc":"2.0","id":"a","method":"worker_list_sessions"},{"jsonrpc":"2.0","method":"worker_dispatch_job","params":{"job_id":"from-notification","command":"true"}},{"jsonrpc":"2.0","id":"b","method":"nope"},{"jsonrpc":"2.0","id":"c","method":"worker_get_metrics"}]"#,
    );
    let reply = worker.next_line();
    let items = reply.as_array().expect("a batch gets one array line");
    assert_eq!(items.len(), 3, "{reply}");
    let ids: Vec<&Value> = items.iter().map(|item| &item["id"]).collect();
    assert!(ids.contains(&&json!("a")) && ids.contains(&&json!("b")) && ids.contains(&&json!("c")));
    // The notification ran even though nothing answered it.
    let job = worker.wait_ended("from-notification");
    assert_eq!(job["status"], "finished");
    // A batch of notifications only gets no reply at all: the next line answers the next call.
    worker.send_raw(br#"[{"jsonrpc":"2.0","method":"worker_get_metrics"}]"#);
    worker.send_raw(br#"{"jsonrpc":"2.0","method":"worker_get_metrics"}"#);
    let id = worker.request(table::Initialize::NAME, json!({}));
    assert_eq!(worker.next_line()["id"], id);
}

#[test]
fn a_long_wait_never_delays_other_calls() {
    let mut worker = Worker::start();
    let mut spec = json!({"job_id": "slow", "command": "sleep 60", "wait_ms": 120000});
    worker.mark(&mut spec);
    let waiting = worker.request(table::DispatchJob::NAME, spec);
    worker.wait_status("slow", "running");
    // Twenty round trips answered while the dispatch call still waits for its job: a status
    // call held behind the wait would only come back after the job ended, as `finished`.
    for _ in 0..20 {
        let job = worker.call(table::GetStatus::NAME, json!({"job_id": "slow"}));
        assert_eq!(
            job["status"], "running",
            "status calls were held behind wait_ms"
        );
    }
    worker.call(table::CancelJob::NAME, json!({"job_id": "slow"}));
    let done = worker.reply_to(waiting);
    assert_eq!(done["result"]["status"], "cancelled", "{done}");
}

#[test]
fn nothing_but_protocol_on_stdout() {
    let mut worker = Worker::start_with(&["logging.level=\"trace\""]);
    let job =
        worker.dispatch(json!({"command": "echo to-stdout; echo to-stderr >&2", "wait_ms": 10000}));
    assert_eq!(job["stdout"], "to-stdout\n");
    assert_eq!(job["stderr"], "to-stderr\n");
    worker.call(table::Shutdown::NAME, json!({}));
    // Every line the worker wrote parsed as JSON-RPC (the reader thread panics otherwise).
    assert!(worker.wait_exit(Duration::from_secs(5)).unwrap().success());
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// A worker whose stdout nobody reads: its requests in flight (1024) and its outbox (8 MiB)
/// are bounded, so past them it stops reading stdin and its memory stops growing.
const UNREAD_RSS_BOUND_MIB: u64 = 160;

#[test]
fn a_client_that_never_reads_cannot_grow_the_worker() {
    use std::io::Write;
    let base = tempfile::tempdir().unwrap();
    let mut child = spawn_serve(base.path());
    let pid = child.id();
    let before = vm_rss_kib(pid);
    // Kept open and never read.
    let _stdout = child.stdout.take().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let sent = sent.clone();
        std::thread::spawn(move || {
            // `initialize` answers ~55 KB: 100k unread replies would be ~5 GB unbounded.
            let line = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\"}\n";
            for _ in 0..100_000 {
                if stdin.write_all(line).is_err() {
                    return;
                }
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    // The writer stalls once the worker stops reading; wait until no more is taken.
    let mut last = 0;
    let mut peak = before;
    loop {
        std::thread::sleep(Duration::from_secs(2));
        peak = peak.max(vm_rss_kib(pid));
        let now = sent.load(std::sync::atomic::Ordering::Relaxed);
        if now == last || writer.is_finished() {
            break;
        }
        last = now;
    }
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "never-reading client: {sent} requests taken, RSS {} KiB -> peak {peak} KiB",
        before
    );
    assert!(
        sent < 100_000,
        "the worker read every request although nothing was answered"
    );
    assert!(
        peak < UNREAD_RSS_BOUND_MIB * 1024,
        "RSS {peak} KiB over {UNREAD_RSS_BOUND_MIB} MiB"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = writer.join();
}

#[test]
fn a_batch_over_the_limit_is_refused_whole_naming_the_limit() {
    let mut worker = Worker::start();
    let element = r#"{"jsonrpc":"2.0","id":1,"method":"worker_list_sessions"}"#;
    let batch = format!("[{}]", vec![element; 10_000].join(","));
    worker.send_raw(batch.as_bytes());
    let reply = worker.next_line();
    assert_eq!(reply["error"]["code"], -32600, "{reply}");
    assert_eq!(reply["error"]["data"]["field"], "batch", "{reply}");
    assert_eq!(reply["error"]["data"]["limit"], 500, "{reply}");
    // At the limit it is served.
    let batch = format!("[{}]", vec![element; 500].join(","));
    worker.send_raw(batch.as_bytes());
    let reply = worker.next_line();
    assert_eq!(reply.as_array().map(Vec::len), Some(500));
}

#[test]
fn ids_of_any_json_number_are_echoed_as_sent() {
    let mut worker = Worker::start();
    for id in ["-1", "1.5", "18446744073709551616", "1e3", "0", "\"s\""] {
        worker.send_raw(
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"worker_list_sessions"}}"#).as_bytes(),
        );
        // The exact spelling is checked on the raw line by the dispatcher's unit tests.
        let reply = worker.next_line();
        assert!(reply.get("result").is_some(), "{id}: {reply}");
        let want: Value = serde_json::from_str(id).unwrap();
        assert_eq!(reply["id"], want, "{id}: {reply}");
    }
    worker.send_raw(br#"{"jsonrpc":"2.0","id":-7,"method":"nope"}"#);
    assert_eq!(worker.next_line()["id"], -7);
}

#[test]
fn unsubscribe_with_malformed_params_is_invalid_params() {
    let mut worker = Worker::start();
    for params in [
        json!({}),
        json!([true]),
        json!({"subscription": "abc"}),
        json!([1, 2]),
    ] {
        let error = worker.call_err(events::UNSUBSCRIBE_METHOD, params.clone());
        assert_eq!(error["code"], -32602, "{params}: {error}");
        assert_eq!(error["data"]["field"], "subscription", "{params}: {error}");
    }
    // Well formed but unknown: false, as before.
    let reply = worker.call(events::UNSUBSCRIBE_METHOD, json!({"subscription": 12345}));
    assert_eq!(reply, json!(false));
}

/// 40 retained jobs given 15 MiB each would hold 600 MiB if a job kept its inputs.
const INPUTS_RSS_BOUND_MIB: u64 = 64;

#[test]
fn ended_jobs_do_not_keep_their_inputs() {
    let mut worker = Worker::start();
    let pid = worker.child.id();
    let body = "a".repeat(15 << 20);
    let mut peak = 0;
    for i in 0..40 {
        let (files, stdin) = if i % 2 == 0 {
            (json!({"big.txt": body}), json!(null))
        } else {
            (json!({}), json!(body))
        };
        let job = worker.dispatch(json!({
            "command": "true", "files": files, "stdin": stdin, "wait_ms": 30_000,
        }));
        assert_eq!(job["status"], "finished", "{}", job["message"]);
        peak = peak.max(vm_rss_kib(pid));
    }
    let listed = worker.call(table::ListSessions::NAME, json!({}));
    assert_eq!(
        listed["sessions"].as_array().map(Vec::len),
        Some(40),
        "all retained"
    );
    eprintln!("40 jobs of 15 MiB inputs, all retained: peak RSS {peak} KiB");
    assert!(
        peak < INPUTS_RSS_BOUND_MIB * 1024,
        "RSS {peak} KiB over {INPUTS_RSS_BOUND_MIB} MiB"
    );
}
