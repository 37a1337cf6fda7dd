//! Internal destinations: the addresses a forward proxy must not connect to on a
//! client's behalf unless the policy says so (server-side request forgery).
//!
//! Every address a name resolves to is checked with [`internal_range`] before the proxy
//! connects to it; the connection then goes to exactly that address (no second lookup,
//! so DNS rebinding cannot swap it). Loopback, private ranges, link-local (with the cloud
//! metadata address 169.254.169.254), CGNAT, unspecified, multicast, reserved, and IPv6
//! forms that carry an IPv4 address (mapped, compatible, NAT64, 6to4) judged by the
//! address they carry ([`canonical_ip`], the one canonicalisation that classification
//! uses too), are refused unless the policy's `internal_sites` lists the
//! network or the site's name.
//!
//! Pure: no I/O. The dialer (`action::dial`) applies it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::classify::Host;
use crate::classify::host::{canonical_ip, embedded_v4};

/// Why an address is internal: a short name for pages and traces, or `None` for a
/// public address.
pub fn internal_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_range(v4),
        IpAddr::V6(v6) => v6_range(v6),
    }
}

fn v4_range(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(match o {
        [0, ..] => "unspecified (0.0.0.0/8)",
        [10, ..] => "private (10.0.0.0/8)",
        [100, b, ..] if (64..128).contains(&b) => "shared CGNAT (100.64.0.0/10)",
        [127, ..] => "loopback (127.0.0.0/8)",
        [169, 254, 169, 254] => "cloud metadata (169.254.169.254)",
        [169, 254, ..] => "link-local (169.254.0.0/16)",
        [172, b, ..] if (16..32).contains(&b) => "private (172.16.0.0/12)",
        [192, 0, 0, _] => "IETF protocol assignments (192.0.0.0/24)",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "documentation",
        [192, 88, 99, _] => "6to4 relay anycast (192.88.99.0/24)",
        [192, 168, ..] => "private (192.168.0.0/16)",
        [198, b, ..] if b == 18 || b == 19 => "benchmarking (198.18.0.0/15)",
        [a, ..] if (224..240).contains(&a) => "multicast (224.0.0.0/4)",
        [a, ..] if a >= 240 => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

fn v6_range(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    // Forms that carry an IPv4 address are judged by it: a mapped 127.0.0.1 is loopback.
    if let Some(v4) = embedded_v4(ip) {
        // A public one passes: behind DNS64, every IPv4-only site has a NAT64 address.
        return v4_range(v4);
    }
    Some(match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => "unspecified (::)",
        [0, 0, 0, 0, 0, 0, 0, 1] => "loopback (::1)",
        [0x100, 0, 0, 0, ..] => "discard (100::/64)",
        [0x2001, 0, ..] => "Teredo (2001::/32)",
        [0x2001, 0xdb8, ..] => "documentation (2001:db8::/32)",
        [0x64, 0xff9b, 1, ..] => "local NAT64 (64:ff9b:1::/48)",
        [a, ..] if a & 0xfe00 == 0xfc00 => "unique local (fc00::/7)",
        [a, ..] if a & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        [a, ..] if a & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        [a, ..] if a & 0xff00 == 0xff00 => "multicast (ff00::/8)",
        _ => return None,
    })
}

/// `internal_sites` of the policy: internal networks, and names (with their
/// subdomains) whose internal addresses may be reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InternalSites {
    pub networks: Vec<IpNet>,
    /// Normalised names, without a leading dot.
    pub names: Vec<Box<str>>,
}

impl InternalSites {
    /// Whether the proxy may connect to `ip` for `host`. A public address always may.
    pub fn permits(&self, host: &Host, ip: IpAddr) -> Result<(), &'static str> {
        let Some(range) = internal_range(ip) else {
            return Ok(());
        };
        // A listed IPv4 network covers the IPv6 forms that carry its addresses, by the
        // same canonicalisation that classification matches lists with.
        let ip = canonical_ip(ip);
        if self.networks.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        let h = host.as_str();
        let named = self.names.iter().any(|n| {
            h == &**n
                || (h.len() > n.len()
                    && h.ends_with(&**n)
                    && h.as_bytes()[h.len() - n.len() - 1] == b'.')
        });
        if named && host.is_domain() {
            return Ok(());
        }
        Err(range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_ranges_are_named_and_public_addresses_pass() {
        for (a, want) in [
            ("127.0.0.1", Some("loopback")),
            ("127.255.255.254", Some("loopback")),
            ("0.0.0.0", Some("unspecified")),
            ("10.1.2.3", Some("private")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("192.168.1.1", Some("private")),
            ("100.64.0.1", Some("CGNAT")),
            ("100.127.255.255", Some("CGNAT")),
            ("169.254.169.254", Some("cloud metadata")),
            ("169.254.1.1", Some("link-local")),
            ("224.0.0.1", Some("multicast")),
            ("255.255.255.255", Some("reserved")),
            ("198.18.0.1", Some("benchmarking")),
            ("::", Some("unspecified")),
            ("::1", Some("loopback")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:169.254.169.254", Some("cloud metadata")),
            ("::ffff:0:10.0.0.1", Some("private")),
            ("::127.0.0.1", Some("loopback")),
            ("64:ff9b::10.0.0.1", Some("private")),
            ("64:ff9b::8.8.8.8", None),
            ("::ffff:8.8.8.8", None),
            ("2002:7f00:1::", Some("loopback")),
            ("fe80::1", Some("link-local")),
            ("fd00::1", Some("unique local")),
            ("ff02::1", Some("multicast")),
            ("2001::1", Some("Teredo")),
            // Public.
            ("8.8.8.8", None),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("169.253.0.1", None),
            ("2a01:cb00::1", None),
            ("2001:4860::8888", None),
        ] {
            let got = internal_range(ip(a));
            match want {
                Some(w) => assert!(got.is_some_and(|g| g.contains(w)), "{a}: {got:?}"),
                None => assert_eq!(got, None, "{a}"),
            }
        }
    }

    #[test]
    fn listed_networks_and_names_open_internal_addresses() {
        let sites = InternalSites {
            networks: vec![
                "10.12.0.0/16".parse().unwrap(),
                "127.0.0.0/8".parse().unwrap(),
            ],
            names: vec!["intranet.mairie.example".into()],
        };
        let h = |s: &str| Host::parse(s).unwrap();
        let any = h("example.com");
        assert_eq!(sites.permits(&any, ip("8.8.8.8")), Ok(()));
        assert_eq!(sites.permits(&any, ip("10.12.3.4")), Ok(()));
        assert!(sites.permits(&any, ip("10.13.3.4")).is_err());
        // A mapped form of a listed network is the same address.
        assert_eq!(sites.permits(&any, ip("::ffff:127.0.0.1")), Ok(()));
        assert!(sites.permits(&any, ip("169.254.169.254")).is_err());
        let intra = h("rh.intranet.mairie.example");
        assert_eq!(sites.permits(&intra, ip("192.168.1.5")), Ok(()));
        assert_eq!(
            sites.permits(&h("intranet.mairie.example"), ip("192.168.1.5")),
            Ok(())
        );
        // Only the name and its subdomains, not a name that ends the same way.
        assert!(
            sites
                .permits(&h("evilintranet.mairie.example"), ip("192.168.1.5"))
                .is_err()
        );
        assert!(sites.permits(&h("192.168.1.5"), ip("192.168.1.5")).is_err());
    }
}
