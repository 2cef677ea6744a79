//! Network egress by allowlist: a job in its own network namespace reaches the outside only
//! through a per-job HTTP proxy that checks every destination against the job's rules.
//!
//! - `pattern`: one allow/deny entry and what it matches.
//! - `addr`: addresses that need an explicit entry (host-local, private, link-local).
//! - `rules`: a job's compiled entries and the verdicts, with the rule and fix named.
//! - `config`: the worker config's `network` section.
//! - `proxy`: the proxy server, its accounting and the job's proxy variables.

pub mod addr;
pub mod config;
pub mod pattern;
pub mod proxy;
pub mod rules;

pub use config::NetworkConfig;
pub use proxy::{JobEgress, JobProxy, proxy_env};
pub use rules::Rules;
