//! The IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890, updated by RFC 8190), as
//! data: one row per registry entry, with its block, name, RFC and "Globally Reachable" value; and
//! the few blocks that other registries and RFCs place outside global unicast (multicast, the
//! deprecated IPv6 forms, IPv6 outside `2000::/3`). The rule that judges addresses by them is the
//! parent module's.
//!
//! Transcribed from <https://www.iana.org/assignments/iana-ipv4-special-registry/> and
//! <https://www.iana.org/assignments/iana-ipv6-special-registry/> as published in July 2026 (the
//! newest entry: `100:0:0:1::/64`, Dummy IPv6 Prefix, allocated 2025-04). A block IANA adds later
//! is unknown here until it is transcribed. The test
//! `every_registry_block_is_refused_and_only_the_allowable_ones_can_be_allowed` walks every row.

use std::net::IpAddr;
use std::sync::LazyLock;

use ipnet::IpNet;

/// A registry entry's "Globally Reachable" value, or what stands for it outside the registries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reachable {
    /// `True`.
    True,
    /// `False` (for `127.0.0.0/8`, `2001::/23` and `fc00::/7` with a footnote that changes nothing
    /// here: exceptions granted to some protocols, more specific allocations, and ULAs being
    /// "not globally routed").
    False,
    /// `N/A`: the registry leaves it to the mechanism (Teredo, 6to4).
    NotApplicable,
    /// Empty: a deprecated entry, whose columns the registry leaves blank.
    Deprecated,
    /// Not a special-purpose entry: a block other registries or RFCs place outside global unicast.
    NotGlobalUnicast,
}

/// One row: a block and what the registry says of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The address block.
    pub block: &'static str,
    /// Its name in the registry.
    pub name: &'static str,
    /// The RFCs the registry cites.
    pub rfc: &'static str,
    /// Its "Globally Reachable" value.
    pub globally_reachable: Reachable,
}

const fn row(
    block: &'static str,
    name: &'static str,
    rfc: &'static str,
    globally_reachable: Reachable,
) -> Entry {
    Entry {
        block,
        name,
        rfc,
        globally_reachable,
    }
}

use Reachable::{Deprecated, False, NotApplicable, NotGlobalUnicast, True};

/// The IPv4 Special-Purpose Address Registry, row by row in its order (its one row
/// "192.0.0.170/32, 192.0.0.171/32" as two).
pub const IPV4: [Entry; 26] = [
    row(
        "0.0.0.0/8",
        "\"This network\"",
        "RFC 791, section 3.2",
        False,
    ),
    row(
        "0.0.0.0/32",
        "\"This host on this network\"",
        "RFC 1122, section 3.2.1.3",
        False,
    ),
    row("10.0.0.0/8", "Private-Use", "RFC 1918", False),
    row("100.64.0.0/10", "Shared Address Space", "RFC 6598", False),
    row(
        "127.0.0.0/8",
        "Loopback",
        "RFC 1122, section 3.2.1.3",
        False,
    ),
    row("169.254.0.0/16", "Link Local", "RFC 3927", False),
    row("172.16.0.0/12", "Private-Use", "RFC 1918", False),
    row(
        "192.0.0.0/24",
        "IETF Protocol Assignments",
        "RFC 6890, section 2.1",
        False,
    ),
    row(
        "192.0.0.0/29",
        "IPv4 Service Continuity Prefix",
        "RFC 7335",
        False,
    ),
    row("192.0.0.8/32", "IPv4 dummy address", "RFC 7600", False),
    row(
        "192.0.0.9/32",
        "Port Control Protocol Anycast",
        "RFC 7723",
        True,
    ),
    row(
        "192.0.0.10/32",
        "Traversal Using Relays around NAT Anycast",
        "RFC 8155",
        True,
    ),
    row(
        "192.0.0.170/32",
        "NAT64/DNS64 Discovery",
        "RFC 8880, RFC 7050 section 2.2",
        False,
    ),
    row(
        "192.0.0.171/32",
        "NAT64/DNS64 Discovery",
        "RFC 8880, RFC 7050 section 2.2",
        False,
    ),
    row(
        "192.0.2.0/24",
        "Documentation (TEST-NET-1)",
        "RFC 5737",
        False,
    ),
    row("192.31.196.0/24", "AS112-v4", "RFC 7535", True),
    row("192.52.193.0/24", "AMT", "RFC 7450", True),
    row(
        "192.88.99.0/24",
        "Deprecated (6to4 Relay Anycast)",
        "RFC 7526",
        Deprecated,
    ),
    row(
        "192.88.99.2/32",
        "6a44-relay anycast address",
        "RFC 6751",
        False,
    ),
    row("192.168.0.0/16", "Private-Use", "RFC 1918", False),
    row(
        "192.175.48.0/24",
        "Direct Delegation AS112 Service",
        "RFC 7534",
        True,
    ),
    row("198.18.0.0/15", "Benchmarking", "RFC 2544", False),
    row(
        "198.51.100.0/24",
        "Documentation (TEST-NET-2)",
        "RFC 5737",
        False,
    ),
    row(
        "203.0.113.0/24",
        "Documentation (TEST-NET-3)",
        "RFC 5737",
        False,
    ),
    row("240.0.0.0/4", "Reserved", "RFC 1112, section 4", False),
    row(
        "255.255.255.255/32",
        "Limited Broadcast",
        "RFC 8190, RFC 919 section 7",
        False,
    ),
];

/// The IPv6 Special-Purpose Address Registry, row by row in its order.
pub const IPV6: [Entry; 25] = [
    row("::1/128", "Loopback Address", "RFC 4291", False),
    row("::/128", "Unspecified Address", "RFC 4291", False),
    row("::ffff:0:0/96", "IPv4-mapped Address", "RFC 4291", False),
    row("64:ff9b::/96", "IPv4-IPv6 Translat.", "RFC 6052", True),
    row("64:ff9b:1::/48", "IPv4-IPv6 Translat.", "RFC 8215", False),
    row("100::/64", "Discard-Only Address Block", "RFC 6666", False),
    row("100:0:0:1::/64", "Dummy IPv6 Prefix", "RFC 9780", False),
    row("2001::/23", "IETF Protocol Assignments", "RFC 2928", False),
    row("2001::/32", "TEREDO", "RFC 4380, RFC 8190", NotApplicable),
    row(
        "2001:1::1/128",
        "Port Control Protocol Anycast",
        "RFC 7723",
        True,
    ),
    row(
        "2001:1::2/128",
        "Traversal Using Relays around NAT Anycast",
        "RFC 8155",
        True,
    ),
    row(
        "2001:1::3/128",
        "DNS-SD Service Registration Protocol Anycast",
        "RFC 9665",
        True,
    ),
    row(
        "2001:2::/48",
        "Benchmarking",
        "RFC 5180, RFC Errata 1752",
        False,
    ),
    row("2001:3::/32", "AMT", "RFC 7450", True),
    row("2001:4:112::/48", "AS112-v6", "RFC 7535", True),
    row(
        "2001:10::/28",
        "Deprecated (previously ORCHID)",
        "RFC 4843",
        Deprecated,
    ),
    row("2001:20::/28", "ORCHIDv2", "RFC 7343", True),
    row(
        "2001:30::/28",
        "Drone Remote ID Protocol Entity Tags (DETs) Prefix",
        "RFC 9374",
        True,
    ),
    row("2001:db8::/32", "Documentation", "RFC 3849", False),
    row("2002::/16", "6to4", "RFC 3056", NotApplicable),
    row(
        "2620:4f:8000::/48",
        "Direct Delegation AS112 Service",
        "RFC 7534",
        True,
    ),
    row("3fff::/20", "Documentation", "RFC 9637", False),
    row(
        "5f00::/16",
        "Segment Routing (SRv6) SIDs",
        "RFC 9602",
        False,
    ),
    row("fc00::/7", "Unique-Local", "RFC 4193, RFC 8190", False),
    row("fe80::/10", "Link-Local Unicast", "RFC 4291", False),
];

/// Blocks outside the special-purpose registries that are no host on the public internet either.
pub const OTHER: [Entry; 8] = [
    // IPv4 Multicast Address Space registry.
    row("224.0.0.0/4", "Multicast", "RFC 5771", NotGlobalUnicast),
    // IPv6 Multicast Address Space registry.
    row("ff00::/8", "Multicast", "RFC 4291", NotGlobalUnicast),
    // Deprecated by RFC 4291 section 2.5.5.1, and still turned into IPv4 by some stacks.
    row(
        "::/96",
        "Deprecated IPv4-Compatible IPv6 Address",
        "RFC 4291 section 2.5.5.1",
        NotGlobalUnicast,
    ),
    // Stateless IP/ICMP Translation: a translator turns it into the IPv4 address inside.
    row(
        "::ffff:0:0:0/96",
        "IPv4-translated Address",
        "RFC 2765 section 2.1",
        NotGlobalUnicast,
    ),
    // Deprecated, but some stacks still treat it as local to the site.
    row(
        "fec0::/10",
        "Deprecated Site-Local",
        "RFC 3879",
        NotGlobalUnicast,
    ),
    // IPv6 Address Space registry: only 2000::/3 is global unicast; IANA reserves the rest (the
    // blocks above and the registries' entries there are more specific, and named instead).
    row(
        "::/3",
        "Outside Global Unicast 2000::/3",
        "RFC 4291",
        NotGlobalUnicast,
    ),
    row(
        "4000::/2",
        "Outside Global Unicast 2000::/3",
        "RFC 4291",
        NotGlobalUnicast,
    ),
    row(
        "8000::/1",
        "Outside Global Unicast 2000::/3",
        "RFC 4291",
        NotGlobalUnicast,
    ),
];

/// Every row above, parsed, most specific first.
static PARSED: LazyLock<Vec<(IpNet, &'static Entry)>> = LazyLock::new(|| {
    let mut parsed: Vec<(IpNet, &'static Entry)> = IPV4
        .iter()
        .chain(IPV6.iter())
        .chain(OTHER.iter())
        .map(|entry| (block_of(entry), entry))
        .collect();
    parsed.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
    parsed
});

/// The block of `entry`, parsed.
///
/// # Panics
/// When the row is not a CIDR block: a transcription error, which the tests catch.
pub fn block_of(entry: &Entry) -> IpNet {
    entry
        .block
        .parse()
        .unwrap_or_else(|e| panic!("registry row {:?}: {e}", entry.block))
}

/// The most specific entry whose block holds `address`, if any.
pub fn most_specific(address: IpAddr) -> Option<&'static Entry> {
    PARSED
        .iter()
        .find(|(net, _)| net.contains(&address))
        .map(|(_, entry)| *entry)
}

/// The most specific entry whose block holds all of `range`, if any.
pub fn most_specific_holding(range: &IpNet) -> Option<&'static Entry> {
    PARSED
        .iter()
        .find(|(net, _)| net.contains(range))
        .map(|(_, entry)| *entry)
}

/// The entries whose blocks overlap `range`.
pub fn overlapping(range: &IpNet) -> impl Iterator<Item = &'static Entry> + '_ {
    PARSED
        .iter()
        .filter(move |(net, _)| net.contains(range) || range.contains(net))
        .map(|(_, entry)| *entry)
}
