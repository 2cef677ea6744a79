//! `opencode-worker mcp` driven by a real MCP client: the official Python SDK (PyPI `mcp`, in
//! the venv `.ci/run` makes at target/mcp-venv, or the Python named by OCW_MCP_PYTHON).
//! tests/mcp/client.py holds the checks; each prints `ok - ...`.

use opencode_worker::protocol::table::{self, Method};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_opencode-worker");

fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("OCW_MCP_PYTHON") {
        return python.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/mcp-venv/bin/python");
    assert!(
        venv.exists(),
        "the Python MCP SDK is missing: run .ci/run, or `python3 -m venv target/mcp-venv && \
         target/mcp-venv/bin/pip install mcp==2.3.0`, or set OCW_MCP_PYTHON"
    );
    venv
}

#[test]
fn the_python_sdk_drives_the_mcp_server() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(python())
        .arg(root.join("tests/mcp/client.py"))
        .env("OCW_BIN", BIN)
        .env("OCW_SCHEMA_DIR", root.join("schema"))
        .output()
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}");
    assert!(
        output.status.success(),
        "the Python MCP client failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // Every check ran: a check that silently did not run would pass otherwise.
    assert_eq!(
        stdout.matches("\nok - ").count() + usize::from(stdout.starts_with("ok - ")),
        14,
        "{stdout}"
    );
}

use crate::common;

/// The JSON-RPC surface gives the same text on request, so the plugin shows what MCP shows.
#[test]
fn serve_renders_the_text_on_request() {
    let mut worker = common::Worker::start();
    let mut spec = serde_json::json!({"command": "echo hi", "wait_ms": 30000, "render": true});
    worker.mark(&mut spec);
    let job = worker.call(table::DispatchJob::NAME, spec);
    assert_eq!(job["status"], "finished", "{job}");
    let text = job["rendered"].as_str().expect("result.rendered");
    assert!(
        text.starts_with(&format!(
            "job {} | status: finished | exit code: 0\n",
            job["job_id"].as_str().unwrap()
        )),
        "{text}"
    );
    assert!(
        text.contains("--- stdout: 3 B ---\nhi\n--- end of stdout ---"),
        "{text}"
    );
    let error = worker.call_err(
        table::GetStatus::NAME,
        serde_json::json!({"job_id": "nope", "render": true}),
    );
    let text = error["data"]["rendered"]
        .as_str()
        .expect("error.data.rendered");
    assert!(
        text.starts_with("worker_get_status failed: unknown job (-32001)"),
        "{text}"
    );
    // Without the option nothing is added.
    let plain = worker.call(
        table::GetStatus::NAME,
        serde_json::json!({"job_id": job["job_id"]}),
    );
    assert!(plain.get("rendered").is_none(), "{plain}");
}
