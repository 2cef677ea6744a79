//! Framing + dispatch on arbitrary bytes, with the worker's real methods behind them: every
//! line gets at most one reply, every reply is one line of JSON, nothing panics, and memory
//! stays bounded (libFuzzer's -rss_limit_mb fails a run that grows).
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use opencode_worker::config::Config;
use opencode_worker::fleet::Fleet;
use opencode_worker::rpc::{Dispatcher, Frame, Limits, LineReader, build_module};
use opencode_worker::worker::Worker;

/// Small enough that libFuzzer's own input sizes reach past it.
const MAX_LINE: usize = 64 * 1024;

struct Harness {
    runtime: tokio::runtime::Runtime,
    dispatcher: Arc<Dispatcher<Fleet>>,
    _base: tempfile::TempDir,
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let base = tempfile::tempdir().expect("temp dir");
    let mut config = Config::default();
    config.session.base_dir = Some(base.path().to_owned());
    // Jobs the fuzzer manages to dispatch end fast and few are kept.
    config.worker.max_wait_ms = 200;
    config.worker.max_queued = 16;
    config.worker.max_concurrent_sessions = 2;
    config.worker.retain_jobs = 32;
    config.worker.max_batch = 64;
    config.governance.maximums.timeout = Some(2000);
    config.governance.defaults.timeout = Some(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dispatcher = runtime.block_on(async {
        let worker = Arc::new(Worker::start(config).expect("worker starts"));
        let fleet = Arc::new(Fleet::new(worker));
        fleet.start();
        Arc::new(Dispatcher::with_limits(
            build_module(fleet),
            Limits {
                in_flight: 256,
                batch: 64,
            },
        ))
    });
    Harness {
        runtime,
        dispatcher,
        _base: base,
    }
});

fuzz_target!(|data: &[u8]| {
    let harness = &*HARNESS;
    harness.runtime.block_on(async {
        let mut reader = LineReader::new(tokio::io::BufReader::new(data), MAX_LINE);
        while let Some(frame) = reader.next().await.expect("reading a slice never fails") {
            if let Frame::Line(line) = &frame {
                assert!(line.len() <= MAX_LINE);
            }
            let handled = harness.dispatcher.handle(frame).await;
            if let Some(line) = handled.line {
                assert!(!line.contains('\n'), "a reply is one line: {line}");
                let reply: serde_json::Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
                let replies = match &reply {
                    serde_json::Value::Array(items) => items.clone(),
                    _ => vec![reply.clone()],
                };
                for reply in replies {
                    assert_eq!(reply["jsonrpc"], "2.0", "{line}");
                    if let Some(error) = reply.get("error") {
                        assert!(error["code"].is_i64(), "{line}");
                        assert!(error["data"].is_object(), "every error names why: {line}");
                    }
                }
            }
        }
        assert_eq!(harness.dispatcher.in_flight(), 0, "every permit given back");
    });
});
