//! opencode-worker: disposable, sandboxed job sessions served as JSON-RPC 2.0 over stdio.

pub mod cli;
pub mod config;
pub mod egress;
pub mod error;
pub mod eventlog;
pub mod exec;
pub mod fleet;
pub mod follow;
pub mod isolation;
pub mod logging;
pub mod metrics;
pub mod page;
pub mod plan;
pub mod policy;
pub mod pool;
pub mod prometheus;
pub mod protocol;
pub mod rpc;
pub mod run_cmd;
pub mod sandbox;
pub mod schema_cmd;
pub mod serve;
pub mod session;
pub mod sync;
pub mod worker;
pub mod workspace;
