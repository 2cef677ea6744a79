//! One allowlist or denylist entry: a host name (optionally `*.`-prefixed), an IP literal or a
//! CIDR, each with an optional `:port`. Names match names and addresses match addresses: a
//! CIDR never matches a host name that happens to resolve into it.

use std::fmt;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    kind: Kind,
    /// `None` matches every port.
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// A lower-case host name, matched exactly.
    Exact(String),
    /// `*.example`: stored as `.example`; matches names below it, not the name itself.
    Below(String),
    Ip(IpAddr),
    Cidr(IpAddr, u8),
}

/// What a connection asks for, as the client named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Host {
    /// A host as it appears in a request (`Example.test.`, `[::1]`, `10.0.0.1`), normalized.
    pub fn parse(text: &str) -> Result<Host, String> {
        let bare = text
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
            .unwrap_or(text);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Host::Ip(canonical(ip)));
        }
        let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
        check_name(&name)?;
        Ok(Host::Name(name))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// IPv4-mapped IPv6 addresses are their IPv4 address: `::ffff:127.0.0.1` is loopback.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("names no host".into());
    }
    if name.len() > 253 {
        return Err("is longer than 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "`{name}` has an empty label or one longer than 63 characters"
            ));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "`{name}` contains `{bad}`: a host name is letters, digits, `-` and `_` between dots (a wildcard only as a leading `*.`)"
            ));
        }
    }
    Ok(())
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!("port `{text}` is not a number from 1 to 65535")),
    }
}

fn parse_cidr(text: &str) -> Result<Kind, String> {
    let (addr, len) = text.split_once('/').unwrap_or((text, ""));
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IP address (a CIDR is address/length)"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len: u8 = len
        .parse()
        .ok()
        .filter(|len| *len <= max)
        .ok_or_else(|| format!("prefix length `{len}` is not a number from 0 to {max}"))?;
    if masked(ip, len) != ip {
        return Err(format!(
            "`{text}` has bits set after the prefix; write `{}/{len}`",
            masked(ip, len)
        ));
    }
    Ok(Kind::Cidr(ip, len))
}

fn masked(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

impl Pattern {
    /// Parses one entry as written in `network.allow`, `network.deny` or a named set.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("is empty".into());
        }
        if text.contains("://") {
            return Err(format!(
                "`{text}` is a URL: write the host name alone, with an optional `:port`"
            ));
        }
        // `[v6]`, `[v6]:port`, `[v6/len]:port`
        if let Some(rest) = text.strip_prefix('[') {
            let (inside, after) = rest
                .split_once(']')
                .ok_or_else(|| "has `[` without a closing `]`".to_string())?;
            let port = match after {
                "" => None,
                _ => {
                    Some(parse_port(after.strip_prefix(':').ok_or_else(|| {
                        format!("`{after}` after `]` is not `:port`")
                    })?)?)
                }
            };
            let kind = if inside.contains('/') {
                parse_cidr(inside)?
            } else {
                Kind::Ip(
                    inside
                        .parse::<std::net::Ipv6Addr>()
                        .map_err(|_| format!("`{inside}` is not an IPv6 address"))?
                        .into(),
                )
            };
            return Ok(Pattern { kind, port }.canonical());
        }
        // More than one colon without brackets: a bare IPv6 address or CIDR, no port.
        if text.matches(':').count() > 1 {
            let kind = if text.contains('/') {
                parse_cidr(text)?
            } else {
                Kind::Ip(text.parse::<IpAddr>().map_err(|_| {
                    format!("`{text}` is not an IPv6 address (write a port as `[addr]:port`)")
                })?)
            };
            return Ok(Pattern { kind, port: None }.canonical());
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(parse_port(port)?)),
            None => (text, None),
        };
        let kind = if host.contains('/') {
            parse_cidr(host)?
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            Kind::Ip(ip)
        } else if let Some(below) = host.strip_prefix("*.") {
            let below = below
                .strip_suffix('.')
                .unwrap_or(below)
                .to_ascii_lowercase();
            check_name(&below)?;
            Kind::Below(format!(".{below}"))
        } else if host == "*" {
            return Err(
                "`*` alone would allow every host: use `\"network\": \"open\"` for that".into(),
            );
        } else {
            let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
            check_name(&name)?;
            Kind::Exact(name)
        };
        Ok(Pattern { kind, port }.canonical())
    }

    fn canonical(self) -> Pattern {
        let kind = match self.kind {
            Kind::Ip(ip) => Kind::Ip(canonical(ip)),
            other => other,
        };
        Pattern { kind, ..self }
    }

    fn port_matches(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
    }

    /// Whether a connection to `host:port`, as the client named it, matches.
    pub fn matches(&self, host: &Host, port: u16) -> bool {
        self.port_matches(port)
            && match host {
                Host::Name(name) => self.matches_name(name),
                Host::Ip(ip) => self.matches_ip(*ip),
            }
    }

    fn matches_name(&self, name: &str) -> bool {
        match &self.kind {
            Kind::Exact(exact) => exact == name,
            Kind::Below(suffix) => name.len() > suffix.len() && name.ends_with(suffix.as_str()),
            Kind::Ip(_) | Kind::Cidr(..) => false,
        }
    }

    /// Whether an address (a literal, or what a name resolved to) matches an IP or CIDR entry.
    pub fn matches_addr(&self, ip: IpAddr, port: u16) -> bool {
        self.port_matches(port) && self.matches_ip(canonical(ip))
    }

    fn matches_ip(&self, ip: IpAddr) -> bool {
        match &self.kind {
            Kind::Ip(own) => *own == ip,
            Kind::Cidr(net, len) => net.is_ipv4() == ip.is_ipv4() && masked(ip, *len) == *net,
            Kind::Exact(_) | Kind::Below(_) => false,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v6 = matches!(
            self.kind,
            Kind::Ip(IpAddr::V6(_)) | Kind::Cidr(IpAddr::V6(_), _)
        );
        let host = match &self.kind {
            Kind::Exact(name) => name.clone(),
            Kind::Below(suffix) => format!("*{suffix}"),
            Kind::Ip(ip) => ip.to_string(),
            Kind::Cidr(ip, len) => format!("{ip}/{len}"),
        };
        match (self.port, v6) {
            (Some(port), true) => write!(f, "[{host}]:{port}"),
            (Some(port), false) => write!(f, "{host}:{port}"),
            (None, _) => f.write_str(&host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Host {
        Host::parse(text).unwrap()
    }

    #[test]
    fn exact_names_match_case_insensitively_on_any_port_unless_one_is_given() {
        let any = Pattern::parse("Registry.Example").unwrap();
        assert!(any.matches(&name("registry.example"), 443));
        assert!(any.matches(&name("REGISTRY.example."), 8080));
        assert!(!any.matches(&name("x.registry.example"), 443));
        assert!(!any.matches(&name("registry.example.evil"), 443));
        let https = Pattern::parse("registry.example:443").unwrap();
        assert!(https.matches(&name("registry.example"), 443));
        assert!(!https.matches(&name("registry.example"), 80));
    }

    #[test]
    fn a_wildcard_matches_names_below_not_the_name_itself() {
        let p = Pattern::parse("*.mirror.example").unwrap();
        assert!(p.matches(&name("a.mirror.example"), 443));
        assert!(p.matches(&name("a.b.mirror.example"), 443));
        assert!(!p.matches(&name("mirror.example"), 443));
        assert!(!p.matches(&name("evilmirror.example"), 443));
        assert_eq!(p.to_string(), "*.mirror.example");
    }

    #[test]
    fn addresses_match_only_address_entries() {
        let cidr = Pattern::parse("10.1.0.0/16").unwrap();
        assert!(cidr.matches(&name("10.1.2.3"), 80));
        assert!(!cidr.matches(&name("10.2.0.1"), 80));
        assert!(!cidr.matches(&name("ten.example"), 80));
        let ip = Pattern::parse("127.0.0.1:8080").unwrap();
        assert!(ip.matches_addr("127.0.0.1".parse().unwrap(), 8080));
        assert!(ip.matches_addr("::ffff:127.0.0.1".parse().unwrap(), 8080));
        assert!(!ip.matches_addr("127.0.0.1".parse().unwrap(), 8081));
        let v6 = Pattern::parse("[fd00::/8]:443").unwrap();
        assert!(v6.matches(&name("[fd12::1]"), 443));
        assert!(!v6.matches(&name("[fd12::1]"), 80));
        assert!(Pattern::parse("::1").unwrap().matches(&name("[::1]"), 1));
        // A name entry never matches an address, even one that spells like it.
        assert!(
            !Pattern::parse("localhost")
                .unwrap()
                .matches(&name("127.0.0.1"), 80)
        );
    }

    #[test]
    fn bad_entries_say_why() {
        for (text, fragment) in [
            ("", "empty"),
            ("*", "open"),
            ("a.*.example", "contains `*`"),
            ("host:0", "port"),
            ("host:99999", "port"),
            ("host:http", "port"),
            ("10.0.0.1/8", "write `10.0.0.0/8`"),
            ("10.0.0.0/33", "prefix length"),
            ("[::1", "closing"),
            ("a..b", "empty label"),
            ("https://registry.example", "is a URL"),
        ] {
            let error = Pattern::parse(text).unwrap_err();
            assert!(error.contains(fragment), "{text:?}: {error}");
        }
    }
}
