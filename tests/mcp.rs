//! `opencode-worker mcp` driven by a real MCP client: the official Python SDK (PyPI `mcp`, in
//! the venv `.ci/run` makes at target/mcp-venv, or the Python named by OCW_MCP_PYTHON).
//! tests/mcp/client.py holds the checks; each prints `ok - ...`.

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
        12,
        "{stdout}"
    );
}
