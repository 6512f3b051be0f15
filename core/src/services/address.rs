//! Which addresses a Service may route to: the public internet only, so that whoever controls an
//! answer from PPIO (or a record someone else on the account wrote) cannot point a cluster Service
//! at the cluster itself, at a cloud's metadata or platform service, or at anything else that is
//! not a host on the public internet.
//!
//! The rule, for an endpoint address:
//! - A cloud platform or metadata address ([`platform::PLATFORM`], one table of the major clouds'
//!   metadata, credentials, DNS and time addresses and service networks, link-local or not) is
//!   refused, always.
//! - An address inside a range the administrator declares as the cluster's own
//!   (`--service-cluster-cidr`: its pod, Service and node ranges) is refused, always.
//! - An address inside a block of the IANA Special-Purpose Address Registries
//!   ([`registry::IPV4`], [`registry::IPV6`]) or outside global unicast ([`registry::OTHER`]:
//!   multicast, the deprecated IPv6 forms, IPv6 outside `2000::/3`) is refused, the most specific
//!   such block named as why. Only the private (`10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`,
//!   `fc00::/7`), shared (`100.64.0.0/10`) and documentation (`192.0.2.0/24`, `198.51.100.0/24`,
//!   `203.0.113.0/24`, `2001:db8::/32`, `3fff::/20`) blocks ([`ALLOWABLE`]) come back when a range
//!   the administrator allows (`--service-allowed-cidr`) holds the address.
//! - Registry blocks marked globally reachable are refused too: each is an anycast service
//!   (Port Control Protocol, TURN, DNS-SD, AMT relays, AS112 DNS sinks), answered by whichever
//!   server is nearest to the sender, possibly one in the cluster's own network, or a space of
//!   identifiers that are not locators (ORCHIDv2, drone tags); none is one remote instance, and
//!   none can be allowed.
//! - The well-known IPv6 forms that carry an IPv4 address are refused, whatever they carry and
//!   whatever is allowed ([`EMBEDS_IPV4`]: IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64's
//!   well-known and local-use prefixes, 6to4, Teredo; and ISATAP interface identifiers `::0:5efe:w.x.y.z` and
//!   `::200:5efe:w.x.y.z` under any prefix): a translator, tunnel or relay on the way may turn it
//!   into the IPv4 address inside, which the IPv4 rule never judged. An instance reachable over
//!   IPv4 is routed to by its IPv4 address. The ISATAP identifiers are refused under any prefix
//!   because nothing but ISATAP makes them, and a node with an ISATAP interface sends to the IPv4
//!   address inside. A NAT64 network-specific prefix (RFC 6052) or a 6rd prefix is an ordinary
//!   global prefix that nothing tells apart: a cluster whose translator uses one declares it in
//!   `--service-cluster-cidr`.
//! - Anything else is a global unicast address and is routed.
//!
//! Whatever the API server would accept, the operator writes no EndpointSlice for a refused
//! address. [`check_allowed_range`] and [`AddressPolicy::check`] keep `--service-allowed-cidr` to
//! what it can do; [`AddressPolicy::warnings`] says what the command line leaves open.

pub mod platform;
pub mod registry;

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

pub use platform::PlatformAddress;
pub use registry::{Entry, Reachable};

/// The registry blocks a range of `--service-allowed-cidr` may bring back: private, shared and
/// documentation space, which a VPC behind a VPN, a carrier-grade NAT or a test may use. Every
/// other refused block stays refused.
pub const ALLOWABLE: [&str; 10] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
    "100.64.0.0/10",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "2001:db8::/32",
    "3fff::/20",
];

/// The blocks of IPv6 forms that carry an IPv4 address.
pub const EMBEDS_IPV4: [&str; 7] = [
    "::ffff:0:0/96",
    "::/96",
    "::ffff:0:0:0/96",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "2002::/16",
    "2001::/32",
];

/// The ranges the operator judges endpoint addresses by, from its command line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddressPolicy {
    /// The cluster's own ranges (pods, Services, nodes): always refused.
    pub cluster: Vec<IpNet>,
    /// Ranges whose private, shared or documentation addresses endpoints may nevertheless use
    /// (e.g. a VPC reached over a VPN). They bring back nothing else.
    pub allowed: Vec<IpNet>,
}

/// Why an endpoint address was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressRefusal {
    /// A cloud platform or metadata address.
    Platform(&'static PlatformAddress),
    /// Inside a range the administrator declared as the cluster's own.
    Cluster(IpNet),
    /// Inside a special-purpose block (or another block outside global unicast): the most
    /// specific, and whether an allowed range could have brought it back.
    Special {
        /// The block's registry entry.
        entry: &'static Entry,
        /// It is one of [`ALLOWABLE`], and no allowed range holds the address.
        allowable: bool,
    },
    /// An ISATAP interface identifier, which carries an IPv4 address.
    Isatap,
}

impl fmt::Display for AddressRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressRefusal::Platform(platform) => write!(
                f,
                "{}: a cloud platform address, refused whatever --service-allowed-cidr allows",
                platform.what
            ),
            AddressRefusal::Cluster(range) => write!(
                f,
                "inside the cluster's own range {range} (--service-cluster-cidr)"
            ),
            AddressRefusal::Special { entry, allowable } => {
                write!(
                    f,
                    "in {}, {} ({}), {}",
                    entry.block,
                    entry.name,
                    entry.rfc,
                    what_it_is(entry)
                )?;
                if *allowable {
                    f.write_str(", and no --service-allowed-cidr allows it")?;
                }
                Ok(())
            }
            AddressRefusal::Isatap => f.write_str(
                "an ISATAP address (RFC 5214): its interface identifier carries an IPv4 address",
            ),
        }
    }
}

/// Why a block is no instance's address, for people.
fn what_it_is(entry: &Entry) -> &'static str {
    if EMBEDS_IPV4.contains(&entry.block) {
        return "an IPv6 form that carries an IPv4 address";
    }
    match entry.globally_reachable {
        Reachable::False => "not globally reachable",
        Reachable::NotApplicable => "not marked globally reachable",
        Reachable::Deprecated => "deprecated",
        Reachable::True => "globally reachable, but a protocol's own block, not an instance's",
        Reachable::NotGlobalUnicast => "not a global unicast address",
    }
}

impl AddressPolicy {
    /// Whether a Service may route to `address`, and if not, why.
    pub fn judge(&self, address: IpAddr) -> Result<(), AddressRefusal> {
        if let Some(platform) = platform::find(address) {
            return Err(AddressRefusal::Platform(platform));
        }
        if let Some(range) = self.cluster.iter().find(|r| r.contains(&address)) {
            return Err(AddressRefusal::Cluster(*range));
        }
        if let Some(entry) = registry::most_specific(address) {
            let allowable = ALLOWABLE.contains(&entry.block);
            if !(allowable && self.allowed.iter().any(|r| r.contains(&address))) {
                return Err(AddressRefusal::Special { entry, allowable });
            }
        }
        match address {
            IpAddr::V6(v6) if is_isatap(v6) => Err(AddressRefusal::Isatap),
            _ => Ok(()),
        }
    }

    /// Checks the allowed ranges against the cluster's, at start-up (each allowed range alone is
    /// [`check_allowed_range`]'s): one wholly inside a cluster range brings nothing back, so it
    /// is a mistake in the command line, refused rather than silently meaning nothing.
    pub fn check(&self) -> Result<(), AllowedRangeError> {
        for range in &self.allowed {
            if let Some(cluster) = self.cluster.iter().find(|c| c.contains(&range.trunc())) {
                return Err(AllowedRangeError::InsideCluster {
                    range: *range,
                    cluster: *cluster,
                });
            }
        }
        Ok(())
    }

    /// What the operator warns of at start-up. Allowed private ranges without declared cluster
    /// ranges let Services route to the cluster's own pods, Services and nodes where they lie
    /// inside the allowed ranges (the Service ranges of AKS, EKS, OpenShift, MicroK8s and most
    /// others are private); only kubeadm's and k3s's API and DNS Service addresses are refused
    /// without them. Refusing to start would break installations that ran before.
    pub fn warnings(&self) -> Vec<String> {
        if self.allowed.is_empty() || !self.cluster.is_empty() {
            return Vec::new();
        }
        vec![format!(
            "--service-allowed-cidr allows {} but no --service-cluster-cidr is given: Services may \
             route to the cluster's own pod, Service and node addresses inside the allowed ranges \
             (e.g. the default Service ranges of AKS 10.0.0.0/16, EKS 10.100.0.0/16 and \
             172.20.0.0/16, OpenShift 172.30.0.0/16, MicroK8s 10.152.183.0/24); declare the \
             cluster's ranges with --service-cluster-cidr (chart: instanceServices.clusterCIDRs)",
            self.allowed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )]
    }
}

/// Whether `address` has an ISATAP interface identifier (RFC 5214 section 6.1: `0000:5efe` or
/// `0200:5efe` followed by an IPv4 address; the group bit is refused with it too). The prefix can
/// be any: ISATAP hands out global ones.
fn is_isatap(address: Ipv6Addr) -> bool {
    let s = address.segments();
    s[4] & 0xfcff == 0 && s[5] == 0x5efe
}

/// Why an `--service-allowed-cidr` range cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllowedRangeError {
    /// It lies in a block that no allowed range brings back.
    #[error(
        "{range} lies in {}, {} ({}), which is never routed to; only ranges inside {} may be allowed",
        entry.block, entry.name, entry.rfc, allowable_list()
    )]
    NeverAllowable {
        /// The range.
        range: IpNet,
        /// The block it lies in.
        entry: &'static Entry,
    },
    /// It holds only global unicast addresses, which are routed without it.
    #[error(
        "{range} holds only public addresses, which Services route to without it; only ranges inside {} may be allowed",
        allowable_list()
    )]
    Public {
        /// The range.
        range: IpNet,
    },
    /// It lies wholly inside a cloud platform range, which stays refused.
    #[error(
        "{range} lies inside {} ({}), which is refused whatever --service-allowed-cidr allows",
        platform.range, platform.what
    )]
    InsidePlatform {
        /// The range.
        range: IpNet,
        /// The platform row holding it.
        platform: &'static PlatformAddress,
    },
    /// It lies wholly inside a range declared as the cluster's own, which stays refused.
    #[error(
        "{range} lies inside the cluster's own range {cluster} (--service-cluster-cidr), which is \
         refused whatever --service-allowed-cidr allows"
    )]
    InsideCluster {
        /// The range.
        range: IpNet,
        /// The cluster range holding it.
        cluster: IpNet,
    },
    /// It reaches beyond the one allowable block it overlaps, or spans several.
    #[error(
        "{range} is not inside one range that may be allowed ({}): list those parts of it you mean",
        allowable_list()
    )]
    NotWithinOne {
        /// The range.
        range: IpNet,
    },
}

fn allowable_list() -> String {
    ALLOWABLE.join(", ")
}

/// Checks a range of `--service-allowed-cidr` at start-up: it must lie wholly inside one of the
/// [`ALLOWABLE`] blocks, so that it means what it brings back. A range inside a block that is never
/// routed to (`127.0.0.0/8`), one of public addresses only, and one that reaches beyond an
/// allowable block (`0.0.0.0/0`, `10.0.0.0/7`) are refused, each saying why; so is one wholly
/// inside a cloud platform range (`100.100.100.200/32`), whose addresses stay refused. The error
/// quotes the range as given (`100.64.0.0/9`, not its network `100.0.0.0/9`).
pub fn check_allowed_range(given: &IpNet) -> Result<(), AllowedRangeError> {
    let range = given.trunc();
    let given = *given;
    if let Some(platform) = platform::holding(&range) {
        return Err(AllowedRangeError::InsidePlatform {
            range: given,
            platform,
        });
    }
    if registry::most_specific_holding(&range).is_some_and(|e| ALLOWABLE.contains(&e.block)) {
        return Ok(());
    }
    let mut overlapping = registry::overlapping(&range).peekable();
    if overlapping.peek().is_none() {
        return Err(AllowedRangeError::Public { range: given });
    }
    if overlapping.any(|e| ALLOWABLE.contains(&e.block)) {
        return Err(AllowedRangeError::NotWithinOne { range: given });
    }
    match registry::most_specific_holding(&range) {
        Some(entry) => Err(AllowedRangeError::NeverAllowable {
            range: given,
            entry,
        }),
        None => Err(AllowedRangeError::NotWithinOne { range: given }),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn nets(ranges: &[&str]) -> Vec<IpNet> {
        ranges.iter().map(|r| r.parse().expect("a range")).collect()
    }

    fn policy(cluster: &[&str], allowed: &[&str]) -> AddressPolicy {
        AddressPolicy {
            cluster: nets(cluster),
            allowed: nets(allowed),
        }
    }

    fn judged(policy: &AddressPolicy, address: &str) -> Result<(), AddressRefusal> {
        policy.judge(address.parse().expect("an address"))
    }

    /// The first, a middle and the last address of `block`.
    fn first_middle_last(block: IpNet) -> [IpAddr; 3] {
        match block {
            IpNet::V4(net) => {
                let (first, last) = (u32::from(net.network()), u32::from(net.broadcast()));
                [first, first + (last - first) / 2, last].map(|a| IpAddr::V4(Ipv4Addr::from(a)))
            }
            IpNet::V6(net) => {
                let (first, last) = (u128::from(net.network()), u128::from(net.broadcast()));
                [first, first + (last - first) / 2, last].map(|a| IpAddr::V6(Ipv6Addr::from(a)))
            }
        }
    }

    fn every_row() -> impl Iterator<Item = &'static Entry> {
        registry::IPV4
            .iter()
            .chain(registry::IPV6.iter())
            .chain(registry::OTHER.iter())
    }

    /// Allows everything, as no validated command line can: the rule alone must hold.
    fn allowing_everything() -> AddressPolicy {
        policy(&[], &["0.0.0.0/0", "::/0"])
    }

    #[test]
    fn every_registry_block_is_refused_and_only_the_allowable_ones_can_be_allowed() {
        let closed = AddressPolicy::default();
        for entry in every_row() {
            let block = registry::block_of(entry);
            let allowable = ALLOWABLE.contains(&entry.block);
            let allowing_it = policy(&[], &[entry.block]);
            for address in first_middle_last(block) {
                let refusal = closed
                    .judge(address)
                    .expect_err(&format!("{address} in {}", entry.block));
                // The most specific block names it: this one, or one inside it.
                match &refusal {
                    AddressRefusal::Special { entry: named, .. } => assert!(
                        block.contains(&registry::block_of(named)),
                        "{address}: {} named instead of {}",
                        named.block,
                        entry.block
                    ),
                    AddressRefusal::Platform(_) => {}
                    other => panic!("{address} in {}: {other:?}", entry.block),
                }
                if matches!(refusal, AddressRefusal::Platform(_)) {
                    continue;
                }
                if allowable {
                    assert_eq!(
                        allowing_it.judge(address),
                        Ok(()),
                        "{address}: allowing {} brings it back",
                        entry.block
                    );
                } else {
                    assert_eq!(
                        allowing_it.judge(address),
                        Err(refusal.clone()),
                        "{address}: allowing {} changes nothing",
                        entry.block
                    );
                    assert_eq!(
                        allowing_everything().judge(address),
                        Err(refusal),
                        "{address}: no allowed range brings it back"
                    );
                }
            }
        }
    }

    #[test]
    fn the_registry_rows_are_blocks_and_the_rules_lists_name_rows() {
        for entry in every_row() {
            let block = registry::block_of(entry);
            assert_eq!(
                block.trunc(),
                block,
                "{}: a row's block is written as its network address",
                entry.block
            );
        }
        let blocks: Vec<&str> = every_row().map(|e| e.block).collect();
        for listed in ALLOWABLE.iter().chain(EMBEDS_IPV4.iter()) {
            assert!(blocks.contains(listed), "{listed} is a row");
        }
        // What the registries mark globally reachable: refused here all the same (see the module).
        let reachable: Vec<&str> = every_row()
            .filter(|e| e.globally_reachable == Reachable::True)
            .map(|e| e.block)
            .collect();
        assert_eq!(
            reachable,
            [
                "192.0.0.9/32",
                "192.0.0.10/32",
                "192.31.196.0/24",
                "192.52.193.0/24",
                "192.175.48.0/24",
                "64:ff9b::/96",
                "2001:1::1/128",
                "2001:1::2/128",
                "2001:1::3/128",
                "2001:3::/32",
                "2001:4:112::/48",
                "2001:20::/28",
                "2001:30::/28",
                "2620:4f:8000::/48",
            ]
        );
    }

    #[test]
    fn every_platform_address_is_refused_whatever_is_allowed() {
        for entry in &platform::PLATFORM {
            let range = platform::range_of(entry);
            let own = range.to_string();
            for address in first_middle_last(range) {
                for policy in [
                    AddressPolicy::default(),
                    policy(&[], &[&own]),
                    allowing_everything(),
                ] {
                    // The most specific row names it: this one, or a single address inside it.
                    match policy.judge(address) {
                        Err(AddressRefusal::Platform(named)) => assert!(
                            named == entry || range.contains(&platform::range_of(named)),
                            "{address}: {} named instead of {}",
                            named.range,
                            entry.range
                        ),
                        other => panic!("{address} under {policy:?}: {other:?}"),
                    }
                }
            }
        }
        // Inside allowed shared and private ranges, and a public one.
        let vpc = policy(&[], &["100.64.0.0/10", "fd00::/8", "10.0.0.0/8"]);
        for address in [
            "100.100.100.200",
            "100.100.100.201",
            "100.100.2.136",
            "100.125.1.250",
            "100.125.129.250",
            "fd00:ec2::254",
            "10.96.0.10",
            "168.63.129.16",
        ] {
            assert!(
                matches!(judged(&vpc, address), Err(AddressRefusal::Platform(_))),
                "{address}"
            );
        }
        // Public service networks, refused with nothing allowed.
        for address in ["161.26.0.10", "161.26.0.11", "161.26.0.6", "166.9.1.2"] {
            assert!(
                matches!(
                    judged(&AddressPolicy::default(), address),
                    Err(AddressRefusal::Platform(_))
                ),
                "{address}"
            );
        }
        // Their neighbours, in the allowed shared range or public.
        for neighbour in [
            "100.99.255.255",
            "100.101.0.0",
            "100.124.255.255",
            "100.126.0.0",
            "168.63.129.17",
        ] {
            assert_eq!(judged(&vpc, neighbour), Ok(()), "{neighbour}");
        }
        for neighbour in [
            "161.25.255.255",
            "161.27.0.0",
            "166.7.255.255",
            "166.12.0.0",
        ] {
            assert_eq!(
                judged(&AddressPolicy::default(), neighbour),
                Ok(()),
                "{neighbour}"
            );
        }
        // A single address inside a service network is named for itself.
        assert!(
            judged(&vpc, "100.100.100.200")
                .unwrap_err()
                .to_string()
                .starts_with("Alibaba Cloud's instance metadata service")
        );
        assert!(
            judged(&vpc, "100.100.100.201")
                .unwrap_err()
                .to_string()
                .starts_with("Alibaba Cloud's service network")
        );
    }

    #[test]
    fn ipv6_forms_that_carry_an_ipv4_address_are_refused_whatever_they_carry() {
        for (address, block) in [
            ("::ffff:8.8.8.8", "::ffff:0:0/96"),
            ("::8.8.8.8", "::/96"),
            ("::ffff:0:808:808", "::ffff:0:0:0/96"),
            ("64:ff9b::808:808", "64:ff9b::/96"),
            ("64:ff9b:1::808:808", "64:ff9b:1::/48"),
            ("2002:808:808::1", "2002::/16"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001::/32"),
            ("::ffff:10.0.0.1", "::ffff:0:0/96"),
            ("::ffff:169.254.169.253", "::ffff:0:0/96"),
        ] {
            for policy in [AddressPolicy::default(), allowing_everything()] {
                match judged(&policy, address) {
                    Err(AddressRefusal::Special { entry, allowable }) => {
                        assert_eq!((entry.block, allowable), (block, false), "{address}");
                        assert!(
                            AddressRefusal::Special { entry, allowable }
                                .to_string()
                                .contains("carries an IPv4 address"),
                            "{address}"
                        );
                    }
                    other => panic!("{address}: {other:?}"),
                }
            }
        }
        // ISATAP, under a global prefix and under an allowed private one.
        let vpc = policy(&[], &["fd12::/16"]);
        for address in [
            "2606:4700::5efe:808:808",
            "2606:4700::200:5efe:a9fe:a9fe",
            "fd12::5efe:a00:1",
            "fd12::200:5efe:7f00:1",
        ] {
            assert_eq!(
                judged(&vpc, address),
                Err(AddressRefusal::Isatap),
                "{address}"
            );
        }
        assert_eq!(judged(&vpc, "fd12::5eff:a00:1"), Ok(()));
    }

    #[test]
    fn private_shared_and_documentation_ranges_are_refused_unless_allowed() {
        let closed = AddressPolicy::default();
        for (address, block) in [
            ("10.1.2.3", "10.0.0.0/8"),
            ("172.16.0.1", "172.16.0.0/12"),
            ("172.31.255.254", "172.16.0.0/12"),
            ("192.168.1.1", "192.168.0.0/16"),
            ("100.64.0.1", "100.64.0.0/10"),
            ("fd00::1", "fc00::/7"),
            ("192.0.2.10", "192.0.2.0/24"),
            ("198.51.100.20", "198.51.100.0/24"),
            ("203.0.113.9", "203.0.113.0/24"),
            ("2001:db8::5", "2001:db8::/32"),
            ("3fff:fff::1", "3fff::/20"),
        ] {
            match judged(&closed, address) {
                Err(AddressRefusal::Special { entry, allowable }) => {
                    assert_eq!((entry.block, allowable), (block, true), "{address}");
                }
                other => panic!("{address}: {other:?}"),
            }
        }
        let vpc = policy(&[], &["10.20.0.0/16", "fd12::/16", "192.0.2.10/32"]);
        assert_eq!(judged(&vpc, "10.20.3.4"), Ok(()));
        assert_eq!(judged(&vpc, "fd12::7"), Ok(()));
        assert_eq!(judged(&vpc, "192.0.2.10"), Ok(()));
        for refused in ["10.21.0.1", "192.0.2.11", "fd13::7", "203.0.113.9"] {
            assert!(judged(&vpc, refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn the_clusters_own_ranges_are_refused_even_when_allowed_or_public() {
        let policy = policy(
            &[
                "10.244.0.0/16",
                "10.96.0.0/12",
                "203.0.113.0/28",
                "fd00:10::/64",
                "8.8.8.0/24",
            ],
            &["10.0.0.0/8", "fd00::/8", "203.0.113.0/24"],
        );
        for (address, range) in [
            ("10.244.1.5", "10.244.0.0/16"),
            ("10.96.0.2", "10.96.0.0/12"),
            ("203.0.113.7", "203.0.113.0/28"),
            ("fd00:10::5", "fd00:10::/64"),
            ("8.8.8.8", "8.8.8.0/24"),
        ] {
            assert_eq!(
                judged(&policy, address),
                Err(AddressRefusal::Cluster(range.parse().expect("a range"))),
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
    fn global_unicast_addresses_of_both_families_are_accepted() {
        let policy = AddressPolicy::default();
        for address in [
            "8.8.8.8",
            "1.1.1.1",
            "9.9.9.9",
            "20.112.52.29",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001:82b::200e",
            // Next to special-purpose blocks, on their public side.
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.255",
            "192.0.3.0",
            "192.88.98.255",
            "192.167.255.255",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2001:200::1",
            "2003::1",
            "3fff:1000::1",
            "2620:4f:7fff:ffff::1",
        ] {
            assert_eq!(judged(&policy, address), Ok(()), "{address}");
        }
    }

    #[test]
    fn a_refusal_names_the_registry_entry_and_what_could_change_it() {
        let closed = AddressPolicy::default();
        let why = |address| judged(&closed, address).unwrap_err().to_string();
        assert_eq!(
            why("198.18.0.1"),
            "in 198.18.0.0/15, Benchmarking (RFC 2544), not globally reachable"
        );
        assert_eq!(
            why("192.168.0.4"),
            "in 192.168.0.0/16, Private-Use (RFC 1918), not globally reachable, and no \
             --service-allowed-cidr allows it"
        );
        assert_eq!(
            why("2001:1::1"),
            "in 2001:1::1/128, Port Control Protocol Anycast (RFC 7723), globally reachable, but \
             a protocol's own block, not an instance's"
        );
        assert_eq!(
            why("2001::1"),
            "in 2001::/32, TEREDO (RFC 4380, RFC 8190), an IPv6 form that carries an IPv4 address"
        );
        assert_eq!(
            why("fec0::1"),
            "in fec0::/10, Deprecated Site-Local (RFC 3879), not a global unicast address"
        );
        assert!(why("168.63.129.16").starts_with("Azure's platform address"));
        assert_eq!(
            judged(&policy(&["10.96.0.0/12"], &[]), "10.96.0.2")
                .unwrap_err()
                .to_string(),
            "inside the cluster's own range 10.96.0.0/12 (--service-cluster-cidr)"
        );
    }

    #[test]
    fn an_allowed_range_must_lie_inside_one_allowable_block() {
        for ok in [
            "10.20.0.0/16",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.7.0/24",
            "100.64.0.0/10",
            "fd00::/8",
            "fc00::/7",
            "192.0.2.10/32",
            "198.51.100.0/24",
            "2001:db8:1::/48",
            "3fff::/20",
        ] {
            assert_eq!(
                check_allowed_range(&ok.parse().expect("a range")),
                Ok(()),
                "{ok}"
            );
        }
        for (refused, never) in [
            ("127.0.0.0/8", "127.0.0.0/8"),
            ("127.0.0.1/32", "127.0.0.0/8"),
            ("169.254.0.0/16", "169.254.0.0/16"),
            ("192.0.0.0/24", "192.0.0.0/24"),
            ("198.18.0.0/16", "198.18.0.0/15"),
            ("224.0.0.0/4", "224.0.0.0/4"),
            ("fe80::/10", "fe80::/10"),
            ("::ffff:10.0.0.0/104", "::ffff:0:0/96"),
            ("64:ff9b::/96", "64:ff9b::/96"),
        ] {
            match check_allowed_range(&refused.parse().expect("a range")) {
                Err(AllowedRangeError::NeverAllowable { entry, .. }) => {
                    assert_eq!(entry.block, never, "{refused}")
                }
                other => panic!("{refused}: {other:?}"),
            }
        }
        for straddling in [
            "0.0.0.0/0",
            "::/0",
            "10.0.0.0/7",
            "172.16.0.0/11",
            "fc00::/6",
        ] {
            assert!(
                matches!(
                    check_allowed_range(&straddling.parse().expect("a range")),
                    Err(AllowedRangeError::NotWithinOne { .. })
                ),
                "{straddling}"
            );
        }
        for public in ["8.8.8.0/24", "2606:4700::/32"] {
            assert!(
                matches!(
                    check_allowed_range(&public.parse().expect("a range")),
                    Err(AllowedRangeError::Public { .. })
                ),
                "{public}"
            );
        }
        let error = check_allowed_range(&"127.0.0.0/8".parse().expect("a range"))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("127.0.0.0/8 lies in 127.0.0.0/8, Loopback"),
            "{error}"
        );
        assert!(error.contains("10.0.0.0/8, 172.16.0.0/12"), "{error}");
    }

    /// One sample address per row, written out here independently of the tables, with the block
    /// a refusal must name: a row deleted (or its block changed) makes the sample's refusal name
    /// another block, or none; a row added without a sample fails the coverage check.
    const GOLDEN: [(&str, &str); 59] = [
        // IPv4 Special-Purpose Address Registry.
        ("0.1.2.3", "0.0.0.0/8"),
        ("0.0.0.0", "0.0.0.0/32"),
        ("10.1.2.3", "10.0.0.0/8"),
        ("100.64.0.1", "100.64.0.0/10"),
        ("127.0.0.1", "127.0.0.0/8"),
        ("169.254.1.1", "169.254.0.0/16"),
        ("172.16.0.1", "172.16.0.0/12"),
        ("192.0.0.100", "192.0.0.0/24"),
        ("192.0.0.1", "192.0.0.0/29"),
        ("192.0.0.8", "192.0.0.8/32"),
        ("192.0.0.9", "192.0.0.9/32"),
        ("192.0.0.10", "192.0.0.10/32"),
        ("192.0.0.170", "192.0.0.170/32"),
        ("192.0.0.171", "192.0.0.171/32"),
        ("192.0.2.1", "192.0.2.0/24"),
        ("192.31.196.1", "192.31.196.0/24"),
        ("192.52.193.1", "192.52.193.0/24"),
        ("192.88.99.1", "192.88.99.0/24"),
        ("192.88.99.2", "192.88.99.2/32"),
        ("192.168.1.1", "192.168.0.0/16"),
        ("192.175.48.1", "192.175.48.0/24"),
        ("198.19.0.1", "198.18.0.0/15"),
        ("198.51.100.1", "198.51.100.0/24"),
        ("203.0.113.1", "203.0.113.0/24"),
        ("240.0.0.1", "240.0.0.0/4"),
        ("255.255.255.255", "255.255.255.255/32"),
        // IPv6 Special-Purpose Address Registry.
        ("::1", "::1/128"),
        ("::", "::/128"),
        ("::ffff:1.2.3.4", "::ffff:0:0/96"),
        ("64:ff9b::102:304", "64:ff9b::/96"),
        ("64:ff9b:1::1", "64:ff9b:1::/48"),
        ("100::1", "100::/64"),
        ("100:0:0:1::1", "100:0:0:1::/64"),
        ("2001:100::1", "2001::/23"),
        ("2001::1", "2001::/32"),
        ("2001:1::1", "2001:1::1/128"),
        ("2001:1::2", "2001:1::2/128"),
        ("2001:1::3", "2001:1::3/128"),
        ("2001:2::1", "2001:2::/48"),
        ("2001:3::1", "2001:3::/32"),
        ("2001:4:112::1", "2001:4:112::/48"),
        ("2001:10::1", "2001:10::/28"),
        ("2001:20::1", "2001:20::/28"),
        ("2001:30::1", "2001:30::/28"),
        ("2001:db8::1", "2001:db8::/32"),
        ("2002:102:304::1", "2002::/16"),
        ("2620:4f:8000::1", "2620:4f:8000::/48"),
        ("3fff::1", "3fff::/20"),
        ("5f00::1", "5f00::/16"),
        ("fd12::1", "fc00::/7"),
        ("fe80::1", "fe80::/10"),
        // Outside global unicast.
        ("224.0.0.1", "224.0.0.0/4"),
        ("ff02::1", "ff00::/8"),
        ("::1.2.3.4", "::/96"),
        ("::ffff:0:102:304", "::ffff:0:0:0/96"),
        ("fec0::1", "fec0::/10"),
        ("1000::1", "::/3"),
        ("4000::1", "4000::/2"),
        ("8000::1", "8000::/1"),
    ];

    #[test]
    fn a_sample_of_every_registry_row_is_refused_naming_its_block() {
        let closed = AddressPolicy::default();
        for (address, block) in GOLDEN {
            match judged(&closed, address) {
                Err(refusal @ AddressRefusal::Special { entry, .. }) => {
                    assert_eq!(entry.block, block, "{address}");
                    assert!(
                        refusal.to_string().starts_with(&format!("in {block}, ")),
                        "{address}: {refusal}"
                    );
                }
                other => panic!("{address}: {other:?}, not refused in {block}"),
            }
        }
        let sampled: Vec<&str> = GOLDEN.iter().map(|(_, block)| *block).collect();
        for entry in every_row() {
            assert!(
                sampled.contains(&entry.block),
                "{} has no sample",
                entry.block
            );
        }
        assert_eq!(
            (
                registry::IPV4.len(),
                registry::IPV6.len(),
                registry::OTHER.len()
            ),
            (26, 25, 8)
        );
    }

    #[test]
    fn an_allowed_range_that_brings_nothing_back_is_refused_at_start_up() {
        // Wholly inside a platform range: its addresses stay refused.
        for (range, platform) in [
            ("100.100.100.200/32", "100.100.100.200"),
            ("100.100.2.0/24", "100.100.0.0/16"),
            ("100.125.0.0/16", "100.125.0.0/16"),
            ("10.96.0.10/32", "10.96.0.10"),
        ] {
            match check_allowed_range(&range.parse().expect("a range")) {
                Err(AllowedRangeError::InsidePlatform {
                    platform: named, ..
                }) => {
                    assert_eq!(named.range, platform, "{range}")
                }
                other => panic!("{range}: {other:?}"),
            }
        }
        // Overlapping one, it still brings the rest back.
        for ok in ["100.64.0.0/10", "100.100.0.0/15", "10.96.0.0/12"] {
            assert_eq!(
                check_allowed_range(&ok.parse().expect("a range")),
                Ok(()),
                "{ok}"
            );
        }
        // Wholly inside a declared cluster range.
        let inside = policy(&["10.96.0.0/12", "fd00:10::/64"], &["10.100.0.0/16"]);
        assert_eq!(
            inside.check(),
            Err(AllowedRangeError::InsideCluster {
                range: "10.100.0.0/16".parse().expect("a range"),
                cluster: "10.96.0.0/12".parse().expect("a range"),
            })
        );
        assert!(
            inside
                .check()
                .unwrap_err()
                .to_string()
                .starts_with("10.100.0.0/16 lies inside the cluster's own range 10.96.0.0/12")
        );
        let v6 = policy(&["fd00:10::/64"], &["fd00:10::5/128"]);
        assert!(matches!(
            v6.check(),
            Err(AllowedRangeError::InsideCluster { .. })
        ));
        for fine in [
            policy(&["10.96.0.0/12"], &["10.0.0.0/8"]),
            policy(&["10.96.0.0/12"], &["10.20.0.0/16"]),
            policy(&[], &["10.20.0.0/16"]),
        ] {
            assert_eq!(fine.check(), Ok(()), "{fine:?}");
        }
    }

    #[test]
    fn a_start_up_error_quotes_the_range_as_given() {
        for (given, quoted) in [
            ("100.64.0.0/9", "100.64.0.0/9 is not inside one range"),
            ("10.0.0.1/7", "10.0.0.1/7 is not inside one range"),
            ("127.0.0.1/8", "127.0.0.1/8 lies in 127.0.0.0/8"),
            ("8.8.8.8/24", "8.8.8.8/24 holds only public addresses"),
            (
                "100.100.100.200/32",
                "100.100.100.200/32 lies inside 100.100.100.200 (",
            ),
        ] {
            let error = check_allowed_range(&given.parse().expect("a range"))
                .unwrap_err()
                .to_string();
            assert!(error.starts_with(quoted), "{error}");
        }
    }

    #[test]
    fn allowed_ranges_without_cluster_ranges_are_warned_of() {
        let warnings = policy(&[], &["10.0.0.0/8", "fd00::/8"]).warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with(
                "--service-allowed-cidr allows 10.0.0.0/8, fd00::/8 but no --service-cluster-cidr"
            ),
            "{warnings:?}"
        );
        // What the warning is about: the default Service ranges of managed clusters route.
        let unwarned = policy(&[], &["10.0.0.0/8", "172.16.0.0/12"]);
        for address in [
            "10.0.0.10",
            "10.100.0.10",
            "172.20.0.10",
            "172.30.0.1",
            "10.152.183.10",
        ] {
            assert_eq!(judged(&unwarned, address), Ok(()), "{address}");
        }
        for quiet in [
            policy(&["10.96.0.0/12"], &["10.0.0.0/8"]),
            policy(&[], &[]),
            policy(&["10.96.0.0/12"], &[]),
        ] {
            assert_eq!(quiet.warnings(), Vec::<String>::new(), "{quiet:?}");
        }
    }
}
