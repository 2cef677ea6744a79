//! The job event stream through the real binary: order and gap-free seq under concurrent jobs,
//! resume with `after_seq`, late subscribers, lagging, unsubscribe and the errors.

use crate::common;
use crate::stream_util;
use opencode_worker::protocol::events;
use opencode_worker::protocol::table::{self, Method};

use common::Worker;
use serde_json::{Value, json};
use stream_util::{Client, check_stream};

fn lines(prefix: &str, n: usize) -> String {
    (1..=n).map(|i| format!("{prefix} {i}\n")).collect()
}

#[test]
fn concurrent_jobs_stream_in_order_without_gaps() {
    let mut c = Client::new(Worker::start_with(&["worker.max_concurrent_sessions=2"]));
    let mut jobs = Vec::new();
    for j in 0..6 {
        let job_id = format!("c{j}");
        c.dispatch(json!({
            "job_id": job_id,
            "command": "i=1; while [ $i -le 300 ]; do echo \"out $i\"; echo \"err $i\" >&2; i=$((i+1)); done; printf '\\303\\251\\377'",
        }));
        let sub = c.subscribe(&job_id, None);
        jobs.push((job_id, sub));
    }
    let subs: Vec<Value> = jobs.iter().map(|(_, s)| s.clone()).collect();
    let streams = c.until_end(&subs);
    let mut saw_queued = false;
    for ((job_id, _), events) in jobs.iter().zip(&streams) {
        let (out, err) = check_stream(events, 1);
        let mut expected = lines("out", 300).into_bytes();
        expected.extend_from_slice(&[0xc3, 0xa9, 0xff]);
        assert_eq!(out, expected, "{job_id} stdout");
        assert_eq!(err, lines("err", 300).into_bytes(), "{job_id} stderr");
        assert!(events.iter().all(|e| e["job_id"] == job_id.as_str()));
        assert_eq!(events[0]["kind"], "state");
        assert_eq!(events[0]["status"], "queued");
        saw_queued |= events
            .iter()
            .filter(|e| e["kind"] == "state" && e["status"] == "queued")
            .count()
            == 1;
        let phases: Vec<&str> = events
            .iter()
            .filter(|e| e["kind"] == "state" && e["status"] == "running")
            .map(|e| e["phase"].as_str().unwrap())
            .collect();
        assert_eq!(
            phases,
            ["init", "prepare", "execute", "collect", "destroy"],
            "{job_id}"
        );
        let end = &events.last().unwrap()["job"];
        assert_eq!(end["status"], "finished");
        assert_eq!(end["stdout_bytes"], out.len() as u64);
        assert!(
            end.get("stdout").is_none(),
            "bodies come through the stream"
        );
        // The tail that is not UTF-8 is flagged, the text before it is not.
        let last_out = events.iter().rev().find(|e| e["kind"] == "stdout").unwrap();
        assert_eq!(last_out["encoding"], "base64");
        assert!(
            events
                .iter()
                .filter(|e| e["kind"] == "stderr")
                .all(|e| e["encoding"] == "utf8")
        );
    }
    assert!(saw_queued);
}

#[test]
fn resume_after_seq_and_late_subscribers_get_the_same_events() {
    let mut c = Client::new(Worker::start());
    // Running: read some events, unsubscribe, resume from the last seq seen.
    c.dispatch(json!({
        "job_id": "r1",
        "command": "i=1; while [ $i -le 40 ]; do echo \"line $i\"; sleep 0.01; i=$((i+1)); done",
    }));
    let first = c.subscribe("r1", None);
    let got = c.until_count(&first, 5);
    assert_eq!(
        c.call(events::UNSUBSCRIBE_METHOD, json!([first.clone()])),
        json!(true)
    );
    let seen = c.events(&first);
    let last_seq = seen.last().unwrap()["seq"].as_u64().unwrap();
    assert!(last_seq >= got.len() as u64);
    let second = c.subscribe("r1", Some(last_seq));
    let rest = c.until_end(std::slice::from_ref(&second)).remove(0);
    let mut joined = seen.clone();
    joined.extend(rest);
    let (out, _) = check_stream(&joined, 1);
    assert_eq!(out, lines("line", 40).into_bytes());

    // Ended and retained: a late subscriber gets the whole history, then the end.
    let late = c.subscribe("r1", None);
    let history = c.until_end(std::slice::from_ref(&late)).remove(0);
    assert_eq!(history, joined, "a late subscriber sees the same events");

    // From the middle.
    let middle = history.len() as u64 / 2;
    let tail_sub = c.subscribe("r1", Some(middle));
    let tail = c.until_end(std::slice::from_ref(&tail_sub)).remove(0);
    assert_eq!(tail[..], history[middle as usize..]);

    // At or past the end: the end again, so every subscription finishes with one.
    let end_seq = history.last().unwrap()["seq"].as_u64().unwrap();
    let again = c.subscribe("r1", Some(end_seq));
    let once = c.until_end(std::slice::from_ref(&again)).remove(0);
    assert_eq!(once.len(), 1);
    assert_eq!(once[0], *history.last().unwrap());
}

#[test]
fn a_late_subscriber_past_the_history_budget_gets_lagged_then_the_rest() {
    let mut c = Client::new(Worker::start_with(&["worker.event_history_bytes=262144"]));
    let job = c.dispatch(json!({
        "job_id": "big",
        "command": "i=1; while [ $i -le 40000 ]; do echo \"row $i of the output\"; i=$((i+1)); done",
        "wait_ms": 20000,
    }));
    assert_eq!(job["status"], "finished");
    let sub = c.subscribe("big", None);
    let events = c.until_end(std::slice::from_ref(&sub)).remove(0);
    assert_eq!(events[0]["kind"], "lagged", "{}", events[0]);
    assert_eq!(events[0]["first_missed_seq"], 1);
    let missed = events[0]["missed_bytes"].as_u64().unwrap();
    let (out, _) = check_stream(&events, 1);
    let total = job["stdout_bytes"].as_u64().unwrap();
    assert_eq!(
        missed + out.len() as u64,
        total,
        "missed plus delivered is everything"
    );
    let first_out = events.iter().find(|e| e["kind"] == "stdout").unwrap();
    assert_eq!(first_out["offset"].as_u64().unwrap(), missed);
    let held: u64 = events.iter().filter_map(|e| e["bytes"].as_u64()).sum();
    assert!(held <= 262144, "history kept {held} bytes over its budget");
}

#[test]
fn unsubscribe_stops_notifications_before_its_reply() {
    let mut c = Client::new(Worker::start());
    c.dispatch(json!({
        "job_id": "tick",
        "command": "while true; do echo tick; sleep 0.005; done",
    }));
    let sub = c.subscribe("tick", None);
    c.until_count(&sub, 10);
    let reply = c.call(
        events::UNSUBSCRIBE_METHOD,
        json!({"subscription": sub.clone()}),
    );
    assert_eq!(reply, json!(true));
    let at_reply = c.events(&sub).len();
    // Everything the worker writes from here on comes after the unsubscribe reply.
    c.call(table::CancelJob::NAME, json!({"job_id": "tick"}));
    let status = c.call(table::GetStatus::NAME, json!({"job_id": "tick"}));
    assert_eq!(status["status"], "cancelled");
    assert_eq!(
        c.events(&sub).len(),
        at_reply,
        "a notification followed the unsubscribe reply"
    );
    let metrics = c.call(table::GetMetrics::NAME, json!({}));
    assert_eq!(metrics["subscriptions"], 0, "{metrics}");
    // Unsubscribing twice or an unknown id answers false.
    assert_eq!(
        c.call(events::UNSUBSCRIBE_METHOD, json!([sub])),
        json!(false)
    );
    assert_eq!(
        c.call(events::UNSUBSCRIBE_METHOD, json!([12345])),
        json!(false)
    );
}

#[test]
fn subscribe_errors() {
    let mut c = Client::new(Worker::start());
    let unknown = c.call_raw(events::SUBSCRIBE_METHOD, json!({"job_id": "nope"}));
    assert_eq!(unknown["error"]["code"], -32001, "{unknown}");
    c.dispatch(json!({"job_id": "s", "command": "sleep 30"}));
    let past = c.call_raw(
        events::SUBSCRIBE_METHOD,
        json!({"job_id": "s", "after_seq": 999}),
    );
    assert_eq!(past["error"]["code"], -32602, "{past}");
    assert_eq!(past["error"]["data"]["field"], "after_seq");
    let bad = c.call_raw(events::SUBSCRIBE_METHOD, json!({"job_id": "s", "bogus": 1}));
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    c.call(table::CancelJob::NAME, json!({"job_id": "s"}));
    assert!(c.notes.is_empty(), "a refused subscription sent events");
}

#[test]
fn a_cancelled_job_streams_to_its_end() {
    let mut c = Client::new(Worker::start());
    c.dispatch(json!({"job_id": "k", "command": "echo started; sleep 30"}));
    let sub = c.subscribe("k", None);
    // Cancel only once the output is there.
    while !c.events(&sub).iter().any(|e| e["kind"] == "stdout") {
        let seen = c.events(&sub).len();
        c.until_count(&sub, seen + 1);
    }
    c.call(
        table::CancelJob::NAME,
        json!({"job_id": "k", "reason": "enough"}),
    );
    let events = c.until_end(std::slice::from_ref(&sub)).remove(0);
    let (out, _) = check_stream(&events, 1);
    assert_eq!(out, b"started\n");
    let end = &events.last().unwrap()["job"];
    assert_eq!(end["status"], "cancelled");
    assert_eq!(end["message"], "enough");
}
