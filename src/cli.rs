//! Command-line interface.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "opencode-worker",
    version,
    about = "Sandboxed, disposable job sessions for AI coding agents (JSON-RPC 2.0 over stdio)"
)]
pub struct Cli {
    /// Configuration file (JSON). Default: $OPENCODE_WORKER_CONFIG, else ./opencode-worker.json if present.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Override one configuration key, e.g. `--set worker.max_queued=10` (repeatable; JSON values).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE", value_parser = crate::config::parse_override)]
    pub overrides: Vec<(String, serde_json::Value)>,

    /// Log filter, e.g. `debug` or `opencode_worker=trace` (RUST_LOG wins when set).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Log format on stderr.
    #[arg(long, global = true, value_parser = ["auto", "json", "pretty"])]
    pub log_format: Option<String>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Speak JSON-RPC 2.0 on stdin/stdout (the default).
    Serve,
    /// Serve the same tools over the Model Context Protocol on stdin/stdout, for any MCP
    /// client (OpenCode, Claude Code, Codex, Cursor, ...). See docs/mcp.md.
    Mcp,
    /// Write or check the JSON Schema files of every tool.
    Schema(SchemaArgs),
    /// Run one job in a session, print its output, and exit with its exit code.
    Run(RunArgs),
    /// Report what isolation this host supports, with the fix for each gap; exits 1 when the
    /// `strict` profile cannot run here. Needs no root.
    Doctor,
    /// Command-policy tools.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the decision and the matching rule for a command; exit 0 allowed, 1 refused,
    /// 2 on a usage or configuration error.
    Check {
        /// The command line, after `--` (several words are joined with spaces).
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SchemaArgs {
    /// Write `<tool>.input.json` and `<tool>.output.json` into DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Fail (exit 1) when the files in DIR differ from what the code generates.
    #[arg(long, value_name = "DIR")]
    pub check: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Wall-clock limit: milliseconds, or a duration such as `30s` or `2m`.
    #[arg(long, value_parser = parse_duration_ms)]
    pub timeout: Option<u64>,
    /// Memory limit such as `512MB` or `2GiB`.
    #[arg(long)]
    pub memory: Option<crate::protocol::ByteSize>,
    /// CPU cores.
    #[arg(long)]
    pub cpu: Option<f64>,
    /// Output kept per stream, such as `8MiB`.
    #[arg(long)]
    pub output: Option<crate::protocol::ByteSize>,
    /// Processes at once.
    #[arg(long)]
    pub pids: Option<u64>,
    /// Network access for the job.
    #[arg(long, value_parser = ["none", "open"])]
    pub network: Option<String>,
    /// Copy a local file into the work dir: `--file name=./local/path` (repeatable).
    #[arg(long = "file", value_name = "NAME=PATH")]
    pub files: Vec<String>,
    /// Environment variable for the job: `--env NAME=VALUE` (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Run this string with /bin/sh -c instead of an argv.
    #[arg(short = 'c', long = "command", conflicts_with = "argv")]
    pub command: Option<String>,
    /// Print the whole job result as JSON on stdout instead of the job's output.
    #[arg(long)]
    pub json: bool,
    /// Print the job's output as it is written (with a progress line on stderr when it is a
    /// terminal) instead of when the job ends.
    #[arg(long, conflicts_with = "json")]
    pub follow: bool,
    /// The program and its arguments, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub argv: Vec<String>,
}

fn parse_duration_ms(text: &str) -> Result<u64, String> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    humantime::parse_duration(text)
        .map(|d| d.as_millis() as u64)
        .map_err(|error| format!("`{text}`: {error} (use milliseconds or e.g. 30s, 2m)"))
}
