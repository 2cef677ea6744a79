//! The protocol over an in-process pipe: the same framing, dispatcher, handlers and outbox as
//! `serve`, with no process and no stdio in between. Tests drive protocol and routing cases
//! through it as tables; a caller in this process gets the typed client
//! (`Connection::request::<M>`) on the methods of the table.

use super::{Dispatcher, LineReader, OUTBOX_BYTES, build_module, outbox};
use crate::fleet::Fleet;
use crate::fleet::client::Connection;
use std::sync::Arc;
use tokio::io::{AsyncWriteExt, BufReader};

/// Room for one message in flight each way before a writer waits for its reader.
const PIPE_BYTES: usize = 1 << 20;

/// Serves `fleet` on one end of an in-process pipe and returns a client on the other. The
/// server side ends when the client is dropped (its end of the pipe closes).
pub fn connect(fleet: Arc<Fleet>) -> Arc<Connection> {
    let max_line = fleet.local.pool.config().worker.max_line_bytes.bytes() as usize;
    let (client, server) = tokio::io::duplex(PIPE_BYTES);
    let (server_read, mut server_write) = tokio::io::split(server);
    let (client_read, client_write) = tokio::io::split(client);
    let dispatcher = Arc::new(Dispatcher::new(build_module(fleet)));
    let (replies, mut lines) = outbox(OUTBOX_BYTES);
    tokio::spawn(async move {
        while let Some(line) = lines.recv().await {
            let written = async {
                server_write.write_all(line.text.as_bytes()).await?;
                server_write.write_all(b"\n").await
            };
            if written.await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let mut reader = LineReader::new(BufReader::new(server_read), max_line);
        loop {
            let admitted = dispatcher.admit().await;
            let Ok(Some(frame)) = reader.next().await else {
                return;
            };
            let dispatcher = dispatcher.clone();
            let replies = replies.clone();
            tokio::spawn(async move { dispatcher.serve(frame, &replies, admitted).await });
        }
    });
    Connection::start(client_read, client_write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;
    use crate::fleet::client::CallError;
    use crate::protocol::table::{self, Method};
    use crate::protocol::*;
    use serde_json::{Value, json};

    struct Session {
        fleet: Arc<Fleet>,
        connection: Arc<Connection>,
        _base: tempfile::TempDir,
    }

    impl Session {
        fn start(workers: Value) -> Session {
            let base = tempfile::tempdir().unwrap();
            let mut config = crate::config::Config::default();
            config.session.base_dir = Some(base.path().to_owned());
            config.workers = serde_json::from_value(workers).unwrap();
            let worker = Arc::new(crate::worker::Worker::start(config).unwrap());
            let fleet = Arc::new(Fleet::new(worker));
            fleet.start();
            let connection = connect(fleet.clone());
            Session {
                fleet,
                connection,
                _base: base,
            }
        }

        async fn stop(self) {
            self.connection.close("test over");
            assert!(self.fleet.stop(std::time::Duration::from_secs(5)).await);
        }
    }

    /// (method, params) -> (code, data.field), for the requests a client gets wrong.
    const REFUSED: &[(&str, &str, i32, Option<&str>)] = &[
        (
            table::GetStatus::NAME,
            r#"{"job_id": "nope"}"#,
            code::UNKNOWN_JOB,
            None,
        ),
        (
            table::CancelJob::NAME,
            r#"{"job_id": "nope"}"#,
            code::UNKNOWN_JOB,
            None,
        ),
        (
            table::GetStatus::NAME,
            r#"{"job_id": 7}"#,
            code::INVALID_PARAMS,
            Some("job_id"),
        ),
        (
            table::DispatchJob::NAME,
            r#"{"command": "true", "argv": ["true"]}"#,
            code::INVALID_PARAMS,
            Some("command"),
        ),
        (
            table::DispatchJob::NAME,
            r#"{"command": "true", "cwd": "../up"}"#,
            code::INVALID_PARAMS,
            Some("cwd"),
        ),
        (
            table::DispatchJob::NAME,
            r#"{"command": "true", "worker": "elsewhere"}"#,
            code::INVALID_PARAMS,
            Some("worker"),
        ),
        (
            table::DispatchJob::NAME,
            r#"{"command": "true", "labels": ["gpu"]}"#,
            code::INVALID_PARAMS,
            Some("labels"),
        ),
        (
            table::DispatchJob::NAME,
            r#"{"argv": ["true"], "files": {"/abs": "x"}}"#,
            code::INVALID_FILES,
            Some("files./abs"),
        ),
        (
            table::CollectOutput::NAME,
            r#"{"job_id": "x", "max_bytes": 0}"#,
            code::INVALID_PARAMS,
            Some("max_bytes"),
        ),
        (
            table::ListSessions::NAME,
            r#"{"status": "bogus"}"#,
            code::INVALID_PARAMS,
            Some("status"),
        ),
        (
            table::GetMetrics::NAME,
            r#"{"format": "xml"}"#,
            code::INVALID_PARAMS,
            Some("format"),
        ),
        (
            table::Shutdown::NAME,
            r#"{"now": true}"#,
            code::INVALID_PARAMS,
            None,
        ),
        (
            "worker_no_such_method",
            r#"{}"#,
            code::METHOD_NOT_FOUND,
            None,
        ),
    ];

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_refusal_has_its_code_and_field() {
        let session = Session::start(json!([]));
        for (method, params, want_code, want_field) in REFUSED {
            let params: Value = serde_json::from_str(params).unwrap();
            let answer = session.connection.call(method, params.clone()).await;
            let Err(CallError::Rpc { code, data, .. }) = answer else {
                panic!("{method} {params}: {answer:?}");
            };
            assert_eq!(code, *want_code, "{method} {params}: {data:?}");
            if let Some(field) = want_field {
                let data = data.unwrap_or_default();
                assert_eq!(data["field"], *field, "{method} {params}: {data}");
            }
        }
        session.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_typed_client_speaks_every_read_only_method() {
        let session = Session::start(json!([]));
        let c = &session.connection;
        let hello = c
            .request::<table::Initialize>(&InitializeParams::default())
            .await
            .unwrap();
        let tools: Vec<&str> = hello.tools.iter().map(|t| t.name.as_str()).collect();
        let from_table: Vec<&str> = tools::tool_names().collect();
        assert_eq!(tools, from_table);
        assert!(tools.contains(&table::DispatchJob::NAME));
        let listed = c
            .request::<table::ListSessions>(&ListParams::default())
            .await
            .unwrap();
        assert!(listed.sessions.is_empty());
        let metrics = c
            .request::<table::GetMetrics>(&MetricsParams::default())
            .await
            .unwrap();
        assert!(metrics.fleet.is_none(), "a lone worker reports no fleet");
        assert_eq!(metrics.jobs.rejected, 0);
        session.stop().await;
    }

    /// The router in front of a lone worker changes nothing a client sees: refusals count as
    /// rejected jobs, and a job's view names no worker.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_worker_is_a_fleet_of_one_local_member() {
        let session =
            Session::start(json!([{"kind": "local", "name": "solo", "labels": ["here"]}]));
        let c = &session.connection;
        let refused = c
            .call(
                table::DispatchJob::NAME,
                json!({"command": "true", "worker": "other"}),
            )
            .await;
        assert!(matches!(
            refused,
            Err(CallError::Rpc {
                code: code::INVALID_PARAMS,
                ..
            })
        ));
        let status = c
            .request::<table::GetStatus>(&JobRef {
                job_id: "none".into(),
            })
            .await;
        assert!(matches!(
            status,
            Err(CallError::Rpc {
                code: code::UNKNOWN_JOB,
                ..
            })
        ));
        let metrics = c
            .request::<table::GetMetrics>(&MetricsParams::default())
            .await
            .unwrap();
        assert!(metrics.fleet.is_none());
        session.stop().await;
    }
}
