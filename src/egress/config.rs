//! The worker config's `network` section.

use super::pattern::{Host, Pattern};
use super::rules::Rules;
use crate::protocol::NetworkRequest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Named sets of patterns a job uses as `{"allow": ["@name"]}`. The worker ships none.
    pub allowlists: BTreeMap<String, Vec<String>>,
    /// Network for jobs that do not say: `none` when absent.
    pub default: Option<NetworkRequest>,
    /// Names pinned to addresses, used by the egress proxy before DNS (like curl's
    /// `--resolve`): internal mirrors, and tests that name loopback servers.
    pub resolve: BTreeMap<String, IpAddr>,
    /// Connections one job may hold open through the proxy at once.
    pub max_connections: usize,
    /// The port the proxy listens on inside each job's own network namespace.
    pub proxy_port: u16,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            allowlists: BTreeMap::new(),
            default: None,
            resolve: BTreeMap::new(),
            max_connections: 64,
            proxy_port: 3128,
        }
    }
}

impl NetworkConfig {
    /// Checks every entry once at startup, so a job never meets a broken named set.
    pub fn validate(&self) -> Result<(), String> {
        for (name, set) in &self.allowlists {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!(
                    "network.allowlists: the set name `{name}` must be letters, digits, `-` and `_`"
                ));
            }
            for (index, entry) in set.iter().enumerate() {
                Pattern::parse(entry).map_err(|reason| {
                    format!("network.allowlists.{name}[{index}] `{entry}` {reason}")
                })?;
            }
        }
        for name in self.resolve.keys() {
            match Host::parse(name) {
                Ok(Host::Name(_)) => {}
                _ => return Err(format!("network.resolve: `{name}` is not a host name")),
            }
        }
        if self.max_connections == 0 {
            return Err("network.max_connections must be at least 1".into());
        }
        if self.proxy_port == 0 {
            return Err("network.proxy_port must be from 1 to 65535".into());
        }
        if let Some(NetworkRequest::Allowlist(list)) = &self.default {
            Rules::compile(list, &self.allowlists)
                .map_err(|(field, reason)| format!("network.default: {field} {reason}"))?;
        }
        Ok(())
    }

    /// The pinned address of `name`, if any (names are compared normalized).
    pub fn pinned(&self, name: &str) -> Option<IpAddr> {
        self.resolve.iter().find_map(|(key, ip)| {
            (key.strip_suffix('.')
                .unwrap_or(key)
                .eq_ignore_ascii_case(name))
            .then_some(*ip)
        })
    }
}
