//! A job's compiled allowlist and the verdicts the proxy acts on. Every verdict names the
//! entry that decided it, so a denial can tell the model which config key would change it.

use super::addr;
use super::pattern::{Host, Pattern};
use crate::protocol::Allowlist;
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Debug, Clone)]
struct Entry {
    pattern: Pattern,
    /// Where the entry was written: `network.allow[2]` or `network.allowlists.packages[0]`.
    origin: String,
}

#[derive(Debug, Clone, Default)]
pub struct Rules {
    allow: Vec<Entry>,
    deny: Vec<Entry>,
}

/// Why a connection was refused, in words a model can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The rule that refused, e.g. "network.deny[0] `*.example`" or "no entry of network.allow
    /// matches".
    pub rule: String,
    /// What would allow it.
    pub fix: String,
}

/// A config or request error: the field (`network.allow[3]`) and the reason.
pub type FieldError = (String, String);

impl Rules {
    /// Compiles a job's `{"allow": [...], "deny": [...]}`, expanding `@name` from `named`
    /// (the config's `network.allowlists`).
    pub fn compile(
        list: &Allowlist,
        named: &BTreeMap<String, Vec<String>>,
    ) -> Result<Rules, FieldError> {
        let mut rules = Rules::default();
        for (index, text) in list.allow.iter().enumerate() {
            let field = format!("network.allow[{index}]");
            if let Some(name) = text.trim().strip_prefix('@') {
                let set = named.get(name).ok_or_else(|| {
                    let known: Vec<&str> = named.keys().map(String::as_str).collect();
                    (
                        field.clone(),
                        format!(
                            "names the set `{name}`, which network.allowlists in the worker's config does not define (defined: {})",
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        ),
                    )
                })?;
                for (j, entry) in set.iter().enumerate() {
                    let origin = format!("network.allowlists.{name}[{j}]");
                    let pattern =
                        Pattern::parse(entry).map_err(|reason| (origin.clone(), reason))?;
                    rules.allow.push(Entry { pattern, origin });
                }
            } else {
                let pattern = Pattern::parse(text).map_err(|reason| (field.clone(), reason))?;
                rules.allow.push(Entry {
                    pattern,
                    origin: field,
                });
            }
        }
        for (index, text) in list.deny.iter().enumerate() {
            let field = format!("network.deny[{index}]");
            if text.trim().starts_with('@') {
                return Err((
                    field,
                    "named sets are for allowing; list deny entries directly".into(),
                ));
            }
            let pattern = Pattern::parse(text).map_err(|reason| (field.clone(), reason))?;
            rules.deny.push(Entry {
                pattern,
                origin: field,
            });
        }
        Ok(rules)
    }

    pub fn allow_count(&self) -> usize {
        self.allow.len()
    }

    /// The first check, on the host as the client named it (the `CONNECT` authority or the
    /// URL's host). Deny entries win over allow entries.
    pub fn check_name(&self, host: &Host, port: u16) -> Result<(), Denial> {
        let wanted = format!("{host}:{port}");
        if let Some(entry) = self.deny.iter().find(|e| e.pattern.matches(host, port)) {
            return Err(Denial {
                rule: format!("{} `{}`", entry.origin, entry.pattern),
                fix: format!("remove that entry from the job's network.deny to reach {wanted}"),
            });
        }
        if self.allow.iter().any(|e| e.pattern.matches(host, port)) {
            return Ok(());
        }
        let fix = match host {
            Host::Name(name) => format!(
                "add `{name}` (or `{name}:{port}`) to the job's network.allow, or to a set in the worker config's network.allowlists"
            ),
            Host::Ip(_) => format!(
                "an address is reached only through an address entry: add `{wanted}` (or a CIDR) to the job's network.allow"
            ),
        };
        Err(Denial {
            rule: "no entry of network.allow matches".into(),
            fix,
        })
    }

    /// The second check, on each address the name resolved to (or the literal): host-local,
    /// private and link-local addresses need an address entry of their own, and a deny
    /// address entry refuses.
    pub fn check_addr(
        &self,
        host: &Host,
        ip: IpAddr,
        port: u16,
        own: &[IpAddr],
    ) -> Result<(), Denial> {
        if let Some(entry) = self.deny.iter().find(|e| e.pattern.matches_addr(ip, port)) {
            return Err(Denial {
                rule: format!(
                    "{} `{}` (the address {host} resolved to)",
                    entry.origin, entry.pattern
                ),
                fix: "remove that entry from the job's network.deny".into(),
            });
        }
        let class = addr::restricted_class(ip).or_else(|| {
            own.contains(&super::pattern::canonical(ip))
                .then_some("an address of the worker host")
        });
        let Some(class) = class else {
            return Ok(());
        };
        if self.allow.iter().any(|e| e.pattern.matches_addr(ip, port)) {
            return Ok(());
        }
        let shown = match ip {
            IpAddr::V6(v6) => format!("[{v6}]:{port}"),
            IpAddr::V4(v4) => format!("{v4}:{port}"),
        };
        Err(Denial {
            rule: format!(
                "{host} resolves to {ip}, a {class} address, which needs an address entry of its own"
            ),
            fix: format!(
                "add `{shown}` (or a CIDR holding it) to the job's network.allow if that address is really meant"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BTreeMap<String, Vec<String>> {
        BTreeMap::from([(
            "packages".to_string(),
            vec![
                "registry.example".to_string(),
                "*.cdn.example:443".to_string(),
            ],
        )])
    }

    fn rules(allow: &[&str], deny: &[&str]) -> Rules {
        Rules::compile(
            &Allowlist {
                allow: allow.iter().map(|s| s.to_string()).collect(),
                deny: deny.iter().map(|s| s.to_string()).collect(),
            },
            &config(),
        )
        .unwrap()
    }

    fn host(text: &str) -> Host {
        Host::parse(text).unwrap()
    }

    #[test]
    fn named_sets_expand_and_deny_wins() {
        let r = rules(&["@packages", "git.example"], &["bad.cdn.example"]);
        assert_eq!(r.allow_count(), 3);
        assert!(r.check_name(&host("registry.example"), 443).is_ok());
        assert!(r.check_name(&host("a.cdn.example"), 443).is_ok());
        assert!(r.check_name(&host("a.cdn.example"), 80).is_err());
        let denial = r.check_name(&host("bad.cdn.example"), 443).unwrap_err();
        assert_eq!(denial.rule, "network.deny[0] `bad.cdn.example`");
        let denial = r.check_name(&host("other.example"), 443).unwrap_err();
        assert!(denial.fix.contains("`other.example`"), "{}", denial.fix);
    }

    #[test]
    fn bad_entries_name_their_field() {
        let compile = |allow: &[&str]| {
            Rules::compile(
                &Allowlist {
                    allow: allow.iter().map(|s| s.to_string()).collect(),
                    deny: vec![],
                },
                &config(),
            )
            .unwrap_err()
        };
        assert_eq!(compile(&["ok.example", "bad host"]).0, "network.allow[1]");
        let (field, reason) = compile(&["@nope"]);
        assert_eq!(field, "network.allow[0]");
        assert!(reason.contains("packages"), "{reason}");
    }

    #[test]
    fn names_resolving_to_local_addresses_need_the_address_allowed() {
        let own = vec!["203.0.113.7".parse().unwrap()];
        let r = rules(&["allowed.test"], &[]);
        let named = host("allowed.test");
        let denial = r
            .check_addr(&named, "127.0.0.1".parse().unwrap(), 80, &own)
            .unwrap_err();
        assert!(denial.rule.contains("loopback"), "{}", denial.rule);
        assert!(denial.fix.contains("`127.0.0.1:80`"), "{}", denial.fix);
        assert!(
            r.check_addr(&named, "169.254.169.254".parse().unwrap(), 80, &own)
                .is_err()
        );
        assert!(
            r.check_addr(&named, "203.0.113.7".parse().unwrap(), 80, &own)
                .is_err()
        );
        assert!(
            r.check_addr(&named, "93.184.216.34".parse().unwrap(), 80, &own)
                .is_ok()
        );
        let r = rules(&["allowed.test", "127.0.0.1"], &[]);
        assert!(
            r.check_addr(&named, "127.0.0.1".parse().unwrap(), 80, &own)
                .is_ok()
        );
        let r = rules(&["allowed.test", "127.0.0.1:81"], &[]);
        assert!(
            r.check_addr(&named, "127.0.0.1".parse().unwrap(), 80, &own)
                .is_err()
        );
    }

    #[test]
    fn ip_literals_need_an_address_entry() {
        let r = rules(&["allowed.test"], &[]);
        let denial = r.check_name(&host("127.0.0.1"), 80).unwrap_err();
        assert!(denial.fix.contains("address entry"), "{}", denial.fix);
        let r = rules(&["10.0.0.0/8"], &["10.9.0.0/16"]);
        assert!(r.check_name(&host("10.1.1.1"), 80).is_ok());
        assert!(r.check_name(&host("10.9.1.1"), 80).is_err());
        assert!(
            r.check_addr(&host("mirror.test"), "10.9.1.1".parse().unwrap(), 80, &[])
                .is_err()
        );
    }
}
