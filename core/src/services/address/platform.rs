//! Cloud platform and metadata addresses: where a machine in a cloud asks for its credentials,
//! its configuration, its DNS or its time. A Service that routes to one hands a pod's requests to
//! the platform of whatever machine serves them, so these are refused always, whatever
//! `--service-allowed-cidr` allows, and whether or not they are link-local (Azure's is public).
//!
//! One table, one row per address or range (a cloud's whole service network), each with its
//! source. Most are inside blocks refused anyway (link-local, shared, unique-local); they are listed
//! so that no allowed range brings them back and so a refusal names them. Some are public (Azure's,
//! Tencent's, IBM's): they answer only from inside that cloud, for whoever asks from there.

use std::net::IpAddr;
use std::sync::LazyLock;

use ipnet::IpNet;

/// One platform address, or a range of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlatformAddress {
    /// The address (`169.254.169.254`) or range (`161.26.0.0/16`).
    pub range: &'static str,
    /// Whose and what it is.
    pub what: &'static str,
}

const fn at(range: &'static str, what: &'static str) -> PlatformAddress {
    PlatformAddress { range, what }
}

/// The addresses and ranges.
pub const PLATFORM: [PlatformAddress; 30] = [
    // The metadata address of most clouds: AWS EC2 Instance Metadata Service (EC2 User Guide,
    // "Access instance metadata"), Google Compute Engine (metadata.google.internal resolves to it;
    // "About VM metadata"), Azure Instance Metadata Service ("Azure Instance Metadata Service"),
    // Oracle Cloud Infrastructure ("Getting Instance Metadata"), DigitalOcean ("Metadata API"),
    // OpenStack Nova's metadata service ("Metadata service"), IBM Cloud VPC ("About the metadata
    // service"), Hetzner Cloud ("Server metadata"), Linode ("Metadata service"), Vultr ("Metadata").
    at(
        "169.254.169.254",
        "the cloud metadata address (AWS, Google Cloud, Azure, Oracle Cloud, DigitalOcean, OpenStack and others)",
    ),
    // AWS EC2 User Guide, "Access instance metadata": the IPv6 endpoint on Nitro instances.
    at("fd00:ec2::254", "AWS's instance metadata service (IPv6)"),
    // AWS VPC User Guide, "Amazon DNS server" (Route 53 Resolver).
    at("169.254.169.253", "AWS's DNS server (Route 53 Resolver)"),
    at(
        "fd00:ec2::253",
        "AWS's DNS server (Route 53 Resolver, IPv6)",
    ),
    // AWS EC2 User Guide, "Set the time for your EC2 instance" (Amazon Time Sync Service).
    at("169.254.169.123", "AWS's time service (Amazon Time Sync)"),
    at(
        "fd00:ec2::123",
        "AWS's time service (Amazon Time Sync, IPv6)",
    ),
    // Amazon ECS Developer Guide, "Task IAM role": the container credentials endpoint.
    at(
        "169.254.170.2",
        "Amazon ECS's task metadata and credentials endpoint",
    ),
    // Amazon EKS User Guide, "EKS Pod Identity": the agent on every node.
    at(
        "169.254.170.23",
        "Amazon EKS Pod Identity's credentials agent",
    ),
    at(
        "fd00:ec2::23",
        "Amazon EKS Pod Identity's credentials agent (IPv6)",
    ),
    // GKE, "About Workload Identity Federation for GKE": the GKE metadata server on each node.
    at(
        "169.254.169.252",
        "GKE's metadata server (Workload Identity)",
    ),
    // Google Compute Engine, "About VM metadata": the metadata server of IPv6-only instances.
    at("fd20:ce::254", "Google Cloud's metadata server (IPv6)"),
    // Azure, "What is IP address 168.63.129.16?": DHCP, DNS, health probes and the VM agent's
    // WireServer, on a public address that is not link-local.
    at(
        "168.63.129.16",
        "Azure's platform address (WireServer: DNS, DHCP, health probes, the VM agent)",
    ),
    // Oracle Cloud Infrastructure, "Getting Instance Metadata": the IPv6 endpoint.
    at(
        "fd00:c1::a9fe:a9fe",
        "Oracle Cloud's instance metadata service (IPv6)",
    ),
    // Oracle Cloud's older metadata address, listed by SSRF references (inside 192.0.0.0/24).
    at("192.0.0.192", "Oracle Cloud's former metadata address"),
    // Alibaba Cloud ECS, "Instance metadata".
    at(
        "100.100.100.200",
        "Alibaba Cloud's instance metadata service",
    ),
    // Alibaba Cloud VPC, "Default DNS servers" (100.100.2.136 and 100.100.2.138), and its other
    // cloud services (NTP ntp.cloud.aliyuncs.com, internal endpoints) share 100.100.0.0/16.
    at(
        "100.100.0.0/16",
        "Alibaba Cloud's service network (private DNS, NTP, internal endpoints)",
    ),
    // Huawei Cloud VPC, "What Are the Private DNS Servers?" (100.125.1.250, 100.125.129.250 and
    // the other regions' in 100.125.0.0/16), and its OBS, NTP and other internal endpoints there.
    at(
        "100.125.0.0/16",
        "Huawei Cloud's service network (private DNS, NTP, internal endpoints)",
    ),
    // IBM Cloud, "IBM Cloud IP ranges", service network: the private DNS resolvers 161.26.0.10
    // and 161.26.0.11, NTP at 161.26.0.6 and the other infrastructure services; public addresses
    // that IBM routes on its private network.
    at(
        "161.26.0.0/16",
        "IBM Cloud's service network (private DNS, NTP, infrastructure services)",
    ),
    // IBM Cloud, "IBM Cloud IP ranges": the private (cloud service) endpoints' network.
    at("166.8.0.0/14", "IBM Cloud's private service endpoints"),
    // Tencent Cloud CVM, "Instance metadata" (metadata.tencentyun.com).
    at("169.254.0.23", "Tencent Cloud's instance metadata service"),
    // Tencent Cloud CVM, "Private network DNS": public addresses that answer only from inside.
    at("183.60.83.19", "Tencent Cloud's private DNS server"),
    at("183.60.82.98", "Tencent Cloud's private DNS server"),
    // Scaleway Instances, "Instance metadata" (the /conf endpoint).
    at("169.254.42.42", "Scaleway's instance metadata service"),
    // Linode, "Metadata service": the IPv6 endpoint.
    at("fd00:a9fe:a9fe::1", "Linode's metadata service (IPv6)"),
    // OpenStack Neutron, "Metadata service over IPv6".
    at("fe80::a9fe:a9fe", "OpenStack's metadata service (IPv6)"),
    // Kubernetes, "Using NodeLocal DNSCache in Kubernetes Clusters": its default local address.
    at("169.254.20.10", "Kubernetes' NodeLocal DNSCache"),
    // kubeadm's default Service range 10.96.0.0/12: the API server's Service and the cluster DNS.
    // The cluster's own ranges belong in --service-cluster-cidr; these stay refused without it.
    at(
        "10.96.0.1",
        "the Kubernetes API server's Service under kubeadm's defaults",
    ),
    at("10.96.0.10", "the cluster DNS under kubeadm's defaults"),
    // k3s's default Service range 10.43.0.0/16, likewise.
    at(
        "10.43.0.1",
        "the Kubernetes API server's Service under k3s's defaults",
    ),
    at("10.43.0.10", "the cluster DNS under k3s's defaults"),
];

/// Every row, parsed, most specific first: a single address inside a service network is named
/// for itself.
static PARSED: LazyLock<Vec<(IpNet, &'static PlatformAddress)>> = LazyLock::new(|| {
    let mut parsed: Vec<(IpNet, &'static PlatformAddress)> = PLATFORM
        .iter()
        .map(|entry| (range_of(entry), entry))
        .collect();
    parsed.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
    parsed
});

/// The range of `entry`, parsed (a single address as its /32 or /128).
///
/// # Panics
/// When the row is neither an IP address nor a CIDR block: a transcription error, which the tests
/// catch.
pub fn range_of(entry: &PlatformAddress) -> IpNet {
    entry
        .range
        .parse::<IpNet>()
        .or_else(|_| entry.range.parse::<IpAddr>().map(IpNet::from))
        .unwrap_or_else(|e| panic!("platform row {:?}: {e}", entry.range))
}

/// The most specific platform row holding `address`, if any.
pub fn find(address: IpAddr) -> Option<&'static PlatformAddress> {
    PARSED
        .iter()
        .find(|(range, _)| range.contains(&address))
        .map(|(_, entry)| *entry)
}

/// The most specific platform row holding all of `range`, if any.
pub fn holding(range: &IpNet) -> Option<&'static PlatformAddress> {
    PARSED
        .iter()
        .find(|(known, _)| known.contains(range))
        .map(|(_, entry)| *entry)
}
