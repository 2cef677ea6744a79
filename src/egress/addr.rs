//! Addresses a name must not lead to unless the operator allowed the address itself: the
//! worker host's own services, its private networks and the cloud metadata endpoint. This is
//! what stops SSRF through DNS (an allowed name that resolves to 127.0.0.1 or 169.254.169.254).

use super::pattern::canonical;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The class that makes `ip` off-limits by default, or `None` for a public address.
pub fn restricted_class(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net))
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    const CLASSES: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "this-network"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([10, 0, 0, 0], 8, "private"),
        ([172, 16, 0, 0], 12, "private"),
        ([192, 168, 0, 0], 16, "private"),
        ([100, 64, 0, 0], 10, "shared (carrier-grade NAT)"),
        ([169, 254, 0, 0], 16, "link-local (cloud metadata)"),
        ([192, 0, 0, 0], 24, "IETF protocol assignments"),
        ([198, 18, 0, 0], 15, "benchmarking"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved"),
    ];
    CLASSES
        .iter()
        .find(|(net, len, _)| in_v4(ip, *net, *len))
        .map(|(_, _, class)| *class)
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(ip);
    let within = |net: u128, len: u32| bits & u128::MAX.checked_shl(128 - len).unwrap_or(0) == net;
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if within(0xfe80 << 112, 10) {
        Some("link-local")
    } else if within(0xfc00 << 112, 7) {
        Some("unique local (private)")
    } else if within(0xff00 << 112, 8) {
        Some("multicast")
    } else if within(0x0064_ff9b << 96, 96) {
        // NAT64: the IPv4 address inside decides.
        v4_class(Ipv4Addr::from(bits as u32))
    } else if within(0, 96) {
        Some("IPv4-compatible (deprecated)")
    } else if within(0x2002 << 112, 16) {
        // 6to4: the IPv4 address in bits 16..48 decides.
        v4_class(Ipv4Addr::from((bits >> 80) as u32))
    } else {
        None
    }
}

/// The worker host's own interface addresses (a public address of the host reaches its
/// services as well as loopback does).
pub fn host_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we walk read-only and free once.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cursor = head;
        while !cursor.is_null() {
            let entry = &*cursor;
            let addr = entry.ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(addr as *const libc::sockaddr_in);
                        out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                            sin.sin_addr.s_addr,
                        ))));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            cursor = entry.ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_local_and_metadata_addresses_are_restricted() {
        for (ip, class) in [
            ("127.0.0.1", "loopback"),
            ("127.9.9.9", "loopback"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("169.254.169.254", "link-local (cloud metadata)"),
            ("fe80::1", "link-local"),
            ("10.0.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("fd00::1", "unique local (private)"),
            ("0.0.0.0", "this-network"),
            ("::", "unspecified"),
            ("64:ff9b::a9fe:a9fe", "link-local (cloud metadata)"),
            ("::7f00:1", "IPv4-compatible (deprecated)"),
            ("2002:7f00:1::1", "loopback"),
            ("2002:a9fe:a9fe::", "link-local (cloud metadata)"),
        ] {
            assert_eq!(restricted_class(ip.parse().unwrap()), Some(class), "{ip}");
        }
    }

    #[test]
    fn public_addresses_are_not() {
        for ip in [
            "93.184.216.34",
            "172.32.0.1",
            "2606:4700::1",
            "1.1.1.1",
            "2002:5db8:d822::1",
        ] {
            assert_eq!(restricted_class(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[test]
    fn the_host_has_a_loopback_address() {
        assert!(host_addresses().iter().any(IpAddr::is_loopback));
    }
}
