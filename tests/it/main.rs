//! Every integration test in one binary: `common` and the other helpers compile once, and one
//! link serves all. Each module is one area; run one with `cargo test --test it fleet::`.
//!
//! The helpers stay where they were (tests/common, tests/stream_util) so a test file still
//! outside this binary keeps compiling with its own `mod common;`. To move one in:
//! `git mv tests/x.rs tests/it/x.rs`, change its `mod common;` to `use crate::common;` (and
//! `mod stream_util;` likewise), and add `mod x;` below.

#[path = "../common/mod.rs"]
mod common;
#[path = "../stream_util/mod.rs"]
mod stream_util;

mod cli;
mod egress;
mod escape_governance;
mod escape_sandbox;
mod fleet;
mod lifecycle;
mod mcp;
mod policy_corpus;
mod policy_dispatch;
mod protocol;
mod remote_ssh;
mod shutdown;
mod ssh_fixture;
mod stream_cli;
mod stream_events;
mod stream_flood;
mod stream_metrics;
mod warm;
mod warm_parity;
mod workspace;
