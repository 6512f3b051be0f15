//! Which addresses a Service may route to: the rule that keeps whoever controls an answer from PPIO
//! from pointing a cluster Service at the cluster itself.
//!
//! An endpoint address is refused when it is unspecified, loopback, link-local, multicast, the
//! IPv4 broadcast address, in "this network" (`0.0.0.0/8`) or the reserved `240.0.0.0/4`, an
//! IPv6 address that embeds an IPv4 one (IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96`,
//! NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`, 6to4 `2002::/16`: a gateway on the way may turn it
//! into the IPv4 address inside, which the IPv4 ranges would have refused), or inside any range
//! the administrator declares as the cluster's own (its pod, Service and node ranges:
//! `--service-cluster-cidr`). Addresses in private ranges
//! (RFC 1918, the shared `100.64.0.0/10`, IPv6 unique local `fc00::/7`) are refused unless a range
//! the administrator allows (`--service-allowed-cidr`) contains them; the cluster's own ranges are
//! refused even then. Whatever the API server would accept, the operator writes no EndpointSlice
//! for a refused address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The ranges the operator judges endpoint addresses by, from its command line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddressPolicy {
    /// The cluster's own ranges (pods, Services, nodes): always refused.
    pub cluster: Vec<IpNet>,
    /// Private ranges that endpoints may nevertheless use (e.g. a VPC reached over a VPN).
    pub allowed: Vec<IpNet>,
}

/// Why an endpoint address was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `0.0.0.0` or `::`.
    Unspecified,
    /// `127.0.0.0/8` or `::1`.
    Loopback,
    /// `169.254.0.0/16` or `fe80::/10`.
    LinkLocal,
    /// `224.0.0.0/4` or `ff00::/8`.
    Multicast,
    /// `255.255.255.255`, `0.0.0.0/8` or `240.0.0.0/4`: not a host on any network.
    Reserved,
    /// `::ffff:0:0/96`, `::/96`, `64:ff9b::/96`, `64:ff9b:1::/48`, `2002::/16`: an IPv6 address
    /// that carries an IPv4 one (mapped, compatible, NAT64, 6to4), which could slip past the IPv4
    /// ranges.
    Ipv4Embedded,
    /// Inside a range the administrator declared as the cluster's own.
    Cluster(IpNet),
    /// Inside a private range that no allowed range contains.
    Private(&'static str),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unspecified => f.write_str("the unspecified address"),
            Refusal::Loopback => f.write_str("a loopback address"),
            Refusal::LinkLocal => f.write_str("a link-local address"),
            Refusal::Multicast => f.write_str("a multicast address"),
            Refusal::Reserved => f.write_str("a reserved address, not a host"),
            Refusal::Ipv4Embedded => f.write_str(
                "an IPv6 address that carries an IPv4 one (mapped, compatible, NAT64 or 6to4)",
            ),
            Refusal::Cluster(range) => write!(
                f,
                "inside the cluster's own range {range} (--service-cluster-cidr)"
            ),
            Refusal::Private(range) => write!(
                f,
                "in the private range {range}, which no --service-allowed-cidr allows"
            ),
        }
    }
}

/// Private ranges, refused unless allowed.
const PRIVATE: [&str; 5] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
];

impl AddressPolicy {
    /// Whether a Service may route to `address`, and if not, why.
    pub fn judge(&self, address: IpAddr) -> Result<(), Refusal> {
        match address {
            IpAddr::V4(v4) => judge_v4(v4)?,
            IpAddr::V6(v6) => judge_v6(v6)?,
        }
        if let Some(range) = self.cluster.iter().find(|r| r.contains(&address)) {
            return Err(Refusal::Cluster(*range));
        }
        let private = PRIVATE.into_iter().find(|range| {
            range
                .parse::<IpNet>()
                .is_ok_and(|range| range.contains(&address))
        });
        match private {
            Some(range) if !self.allowed.iter().any(|r| r.contains(&address)) => {
                Err(Refusal::Private(range))
            }
            _ => Ok(()),
        }
    }
}

fn judge_v4(address: Ipv4Addr) -> Result<(), Refusal> {
    let first = address.octets()[0];
    if address.is_unspecified() {
        Err(Refusal::Unspecified)
    } else if address.is_loopback() {
        Err(Refusal::Loopback)
    } else if address.is_link_local() {
        Err(Refusal::LinkLocal)
    } else if address.is_multicast() {
        Err(Refusal::Multicast)
    } else if address.is_broadcast() || first == 0 || first >= 240 {
        Err(Refusal::Reserved)
    } else {
        Ok(())
    }
}

fn judge_v6(address: Ipv6Addr) -> Result<(), Refusal> {
    let first = address.segments()[0];
    if address.is_unspecified() {
        Err(Refusal::Unspecified)
    } else if address.is_loopback() {
        Err(Refusal::Loopback)
    } else if first & 0xffc0 == 0xfe80 {
        Err(Refusal::LinkLocal)
    } else if address.is_multicast() {
        Err(Refusal::Multicast)
    } else if embeds_ipv4(address) {
        Err(Refusal::Ipv4Embedded)
    } else {
        Ok(())
    }
}

/// Whether `address` is of a form that carries an IPv4 address: IPv4-mapped (`::ffff:0:0/96`),
/// IPv4-compatible (`::/96`, deprecated but still routed by some stacks), NAT64 (`64:ff9b::/96`,
/// `64:ff9b:1::/48`) or 6to4 (`2002::/16`).
fn embeds_ipv4(address: Ipv6Addr) -> bool {
    let s = address.segments();
    address.to_ipv4_mapped().is_some()
        || s[..6] == [0; 6]
        || (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0])
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
        || s[0] == 0x2002
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(cluster: &[&str], allowed: &[&str]) -> AddressPolicy {
        AddressPolicy {
            cluster: cluster
                .iter()
                .map(|r| r.parse().expect("a range"))
                .collect(),
            allowed: allowed
                .iter()
                .map(|r| r.parse().expect("a range"))
                .collect(),
        }
    }

    fn judged(policy: &AddressPolicy, address: &str) -> Result<(), Refusal> {
        policy.judge(address.parse().expect("an address"))
    }

    #[test]
    fn every_kind_of_address_that_is_not_a_remote_host_is_refused() {
        let policy = policy(&[], &[]);
        for (address, why) in [
            ("0.0.0.0", Refusal::Unspecified),
            ("::", Refusal::Unspecified),
            ("127.0.0.1", Refusal::Loopback),
            ("127.255.0.9", Refusal::Loopback),
            ("::1", Refusal::Loopback),
            ("169.254.169.254", Refusal::LinkLocal),
            ("fe80::1", Refusal::LinkLocal),
            ("febf::1", Refusal::LinkLocal),
            ("224.0.0.1", Refusal::Multicast),
            ("239.1.2.3", Refusal::Multicast),
            ("ff02::1", Refusal::Multicast),
            ("255.255.255.255", Refusal::Reserved),
            ("0.1.2.3", Refusal::Reserved),
            ("240.0.0.1", Refusal::Reserved),
            ("::ffff:127.0.0.1", Refusal::Ipv4Embedded),
            ("::ffff:203.0.113.9", Refusal::Ipv4Embedded),
            ("::10.0.0.5", Refusal::Ipv4Embedded),
            ("64:ff9b::a00:5", Refusal::Ipv4Embedded),
            ("64:ff9b:1::a9fe:a9fe", Refusal::Ipv4Embedded),
            ("2002:a00:5::1", Refusal::Ipv4Embedded),
        ] {
            assert_eq!(judged(&policy, address), Err(why), "{address}");
        }
    }

    #[test]
    fn private_ranges_are_refused_unless_allowed() {
        let closed = policy(&[], &[]);
        for (address, range) in [
            ("10.1.2.3", "10.0.0.0/8"),
            ("172.16.0.1", "172.16.0.0/12"),
            ("172.31.255.254", "172.16.0.0/12"),
            ("192.168.1.1", "192.168.0.0/16"),
            ("100.64.0.1", "100.64.0.0/10"),
            ("fd00::1", "fc00::/7"),
        ] {
            assert_eq!(
                judged(&closed, address),
                Err(Refusal::Private(range)),
                "{address}"
            );
        }
        let vpc = policy(&[], &["10.20.0.0/16", "fd12::/16"]);
        assert_eq!(judged(&vpc, "10.20.3.4"), Ok(()));
        assert_eq!(judged(&vpc, "fd12::7"), Ok(()));
        assert_eq!(
            judged(&vpc, "10.21.0.1"),
            Err(Refusal::Private("10.0.0.0/8"))
        );
    }

    #[test]
    fn the_clusters_own_ranges_are_refused_even_when_allowed_or_public() {
        let policy = policy(
            &[
                "10.244.0.0/16",
                "10.96.0.0/12",
                "203.0.113.0/28",
                "fd00:10::/64",
            ],
            &["10.0.0.0/8", "fd00::/8"],
        );
        for (address, range) in [
            ("10.244.1.5", "10.244.0.0/16"),
            ("10.96.0.1", "10.96.0.0/12"),
            ("203.0.113.7", "203.0.113.0/28"),
            ("fd00:10::5", "fd00:10::/64"),
        ] {
            assert_eq!(
                judged(&policy, address),
                Err(Refusal::Cluster(range.parse().expect("a range"))),
                "{address}"
            );
        }
        assert_eq!(
            judged(&policy, "10.1.0.1"),
            Ok(()),
            "allowed, not the cluster's"
        );
        assert_eq!(judged(&policy, "203.0.113.77"), Ok(()), "outside the /28");
    }

    #[test]
    fn public_addresses_of_both_families_are_accepted() {
        let policy = policy(&[], &[]);
        for address in [
            "203.0.113.9",
            "198.51.100.20",
            "8.8.8.8",
            "2001:db8::5",
            "2606:4700::1",
        ] {
            assert_eq!(judged(&policy, address), Ok(()), "{address}");
        }
    }

    #[test]
    fn a_refusal_says_which_range_and_which_flag() {
        let refusal = judged(&policy(&["10.96.0.0/12"], &[]), "10.96.0.10").unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "inside the cluster's own range 10.96.0.0/12 (--service-cluster-cidr)"
        );
        let refusal = judged(&policy(&[], &[]), "192.168.0.4").unwrap_err();
        assert!(
            refusal.to_string().contains("--service-allowed-cidr"),
            "{refusal}"
        );
    }
}
