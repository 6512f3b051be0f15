//! What Service and EndpointSlices the mirror of an instance needs, decided from the mirror's
//! status alone (its exposed ports, their endpoints and the remote status), so that they change
//! exactly when the mirror does and a sync that rewrites no mirror writes no Service either.
//!
//! - The Service has no selector and one port per exposed port that can be routed to: a port
//!   number from 1 to 65535, a protocol PPIO names `tcp`, `http`, `https` (TCP, the last two with
//!   their `appProtocol`) or `udp`, and an endpoint that is an accepted IP address and port, or
//!   none allocated yet (so the Service, its name and its ClusterIP outlive a stop and a start).
//!   An instance without such a port has no Service.
//! - Each address gets an EndpointSlice of its own (the ports of one slice apply to all of its
//!   endpoints), named after the Service, its family and its place, so a moved address replaces
//!   the old one in the same object.
//! - An endpoint is `ready` (and `serving`) only while the instance is `running` and listed.
//! - A host name, a malformed endpoint and an address the [`AddressPolicy`] refuses leave the port
//!   out and are reported, never routed.

use std::net::{IpAddr, SocketAddr};

use super::address::AddressPolicy;
use super::endpoint::{self, Endpoint};
use crate::api::instance::{GpuInstanceStatus, MirrorService, PortStatus};
use crate::api::{Condition, ConditionStatus};

/// The condition on a mirror whose view asks for Services: whether every exposed port is routed.
pub const SERVICE_ENDPOINTS: &str = "ServiceEndpoints";
/// Its reason when every exposed port is routed.
pub const ROUTED: &str = "Routed";
/// Its reason when an endpoint was refused or skipped.
pub const ENDPOINT_REFUSED: &str = "EndpointRefused";
/// Its reason when the Service's name belongs to an object the operator does not manage.
pub const NAME_TAKEN: &str = "ServiceNameTaken";
/// Its reason when the API server refused to write the Service (a quota, an admission policy).
pub const SERVICE_REJECTED: &str = "ServiceRejected";
/// Refusals a condition message lists one by one; the rest are counted.
const MAX_LISTED_REFUSALS: usize = 8;
/// The longest name a Service may have: a DNS-1035 label.
const MAX_SERVICE_NAME: usize = 63;

/// The Service and EndpointSlices of one mirror, and the endpoints left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServicePlan {
    /// The Service, when at least one exposed port can be routed to.
    pub service: Option<DesiredService>,
    /// Endpoints refused or skipped, in the order of the ports.
    pub refused: Vec<RefusedEndpoint>,
}

/// A Service without a selector and its EndpointSlices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredService {
    /// Its name: the mirror's, or one derived from it ([`service_name`]).
    pub name: String,
    /// Its ports.
    pub ports: Vec<ServicePort>,
    /// One EndpointSlice per address.
    pub slices: Vec<DesiredSlice>,
    /// Whether its endpoints are ready: the instance is `running` and listed.
    pub ready: bool,
    /// Why they are or are not, for people (`kubectl describe svc`).
    pub readiness: String,
}

/// One port of the Service, and of the EndpointSlices that serve it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// `<protocol>-<port>`, e.g. `http-8080`: the name that ties a Service port to the slices' ports.
    pub name: String,
    /// The exposed port number: the Service's port.
    pub port: u16,
    /// `TCP` or `UDP`.
    pub protocol: &'static str,
    /// `http` or `https` when PPIO names one.
    pub app_protocol: Option<&'static str>,
}

/// One EndpointSlice: one address, the ports served at it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredSlice {
    /// `<service>-ipv4-<n>` or `<service>-ipv6-<n>`.
    pub name: String,
    /// The address.
    pub address: IpAddr,
    /// The Service's ports served at this address, with the port PPIO maps each to.
    pub ports: Vec<(ServicePort, u16)>,
}

/// An exposed port whose endpoint no Service routes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedEndpoint {
    /// The exposed port, as PPIO gave it (0 when it gave none).
    pub port: i64,
    /// The endpoint as PPIO gave it (shortened).
    pub endpoint: String,
    /// Why, for people.
    pub reason: String,
}

/// What a view's status counts of one mirror's plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceTally {
    /// It has a Service.
    pub service: bool,
    /// Endpoints refused or skipped.
    pub refused: u16,
}

impl ServicePlan {
    /// What the view's status counts of it.
    pub fn tally(&self) -> ServiceTally {
        ServiceTally {
            service: self.service.is_some(),
            refused: u16::try_from(self.refused.len()).unwrap_or(u16::MAX),
        }
    }

    /// What the mirror's status says of its Service.
    pub fn status(&self) -> Option<MirrorService> {
        self.service.as_ref().map(|service| MirrorService {
            name: service.name.clone(),
            endpoint_slices: service.slices.iter().map(|s| s.name.clone()).collect(),
        })
    }

    /// The mirror's `ServiceEndpoints` condition (with no history), or none when the instance
    /// exposes no port.
    pub fn condition(&self) -> Option<Condition> {
        let (status, reason, message) = match (&self.service, self.refused.is_empty()) {
            (None, true) => return None,
            (Some(service), true) => (
                ConditionStatus::True,
                ROUTED,
                format!(
                    "Service {} routes {} to {}. {}",
                    service.name,
                    port_list(&service.ports),
                    address_list(&service.slices),
                    service.readiness
                ),
            ),
            (service, false) => {
                let mut message = String::new();
                for refused in self.refused.iter().take(MAX_LISTED_REFUSALS) {
                    message.push_str(&format!(
                        "Port {}: endpoint {:?} is not routed: {}. ",
                        refused.port, refused.endpoint, refused.reason
                    ));
                }
                if self.refused.len() > MAX_LISTED_REFUSALS {
                    message.push_str(&format!(
                        "And {} more. ",
                        self.refused.len() - MAX_LISTED_REFUSALS
                    ));
                }
                match service {
                    Some(service) => message.push_str(&format!(
                        "Service {} routes the other ports ({}).",
                        service.name,
                        port_list(&service.ports)
                    )),
                    None => message.push_str("No port can be routed: there is no Service."),
                }
                (ConditionStatus::False, ENDPOINT_REFUSED, message)
            }
        };
        Some(Condition {
            type_: SERVICE_ENDPOINTS.to_owned(),
            status,
            reason: reason.to_owned(),
            message,
            last_transition_time: jiff::Timestamp::UNIX_EPOCH,
            observed_generation: None,
        })
    }
}

/// The Service and EndpointSlices the mirror `mirror_name`, whose status is `status`, needs under
/// `policy`.
pub fn plan(mirror_name: &str, status: &GpuInstanceStatus, policy: &AddressPolicy) -> ServicePlan {
    let remote = status
        .status
        .as_ref()
        .and_then(|s| s.status.as_deref())
        .unwrap_or_default();
    let listed = status.absent_since.is_none();
    let ready = remote == crate::mirror::RUNNING && listed;
    let mut plan = ServicePlan::default();
    let mut ports: Vec<ServicePort> = Vec::new();
    let mut addresses: Vec<(IpAddr, Vec<(ServicePort, u16)>)> = Vec::new();
    for exposed in &status.ports {
        let routed = route(exposed, policy).and_then(|(port, address)| {
            if ports
                .iter()
                .any(|p| p.port == port.port && p.protocol == port.protocol)
            {
                Err(format!(
                    "port {}/{} is exposed twice; the first is routed",
                    port.port, port.protocol
                ))
            } else {
                Ok((port, address))
            }
        });
        match routed {
            Ok((port, address)) => {
                if let Some(address) = address {
                    match addresses.iter_mut().find(|(ip, _)| *ip == address.ip()) {
                        Some((_, served)) => served.push((port.clone(), address.port())),
                        None => {
                            addresses.push((address.ip(), vec![(port.clone(), address.port())]))
                        }
                    }
                }
                ports.push(port);
            }
            Err(reason) => plan.refused.push(RefusedEndpoint {
                port: exposed.port.unwrap_or_default(),
                endpoint: ppio::text::truncate(
                    exposed.endpoint.as_deref().unwrap_or_default(),
                    128,
                ),
                reason,
            }),
        }
    }
    if ports.is_empty() {
        return plan;
    }
    let name = service_name(mirror_name);
    let (mut v4, mut v6) = (0, 0);
    let slices = addresses
        .into_iter()
        .map(|(address, ports)| {
            let (family, n) = match address {
                IpAddr::V4(_) => ("ipv4", &mut v4),
                IpAddr::V6(_) => ("ipv6", &mut v6),
            };
            let slice = DesiredSlice {
                name: format!("{name}-{family}-{n}"),
                address,
                ports,
            };
            *n += 1;
            slice
        })
        .collect();
    let readiness = match (ready, remote) {
        (true, _) => "Ready: the remote instance is running.".to_owned(),
        (false, _) if !listed => "Not ready: PPIO no longer lists the instance.".to_owned(),
        (false, "") => "Not ready: PPIO reports no status for the instance.".to_owned(),
        (false, remote) => format!(
            "Not ready: the remote instance is {}, not running.",
            ppio::text::truncate(remote, 63)
        ),
    };
    plan.service = Some(DesiredService {
        name,
        ports,
        slices,
        ready,
        readiness,
    });
    plan
}

/// The Service port of `exposed` and the address it is served at (none allocated yet), or why it
/// cannot be routed.
fn route(
    exposed: &PortStatus,
    policy: &AddressPolicy,
) -> Result<(ServicePort, Option<SocketAddr>), String> {
    let number = exposed
        .port
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| "the exposed port is not a number from 1 to 65535".to_owned())?;
    let named = exposed
        .protocol
        .as_deref()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let (name, protocol, app_protocol) = match named.as_str() {
        "" | "tcp" => ("tcp", "TCP", None),
        "http" => ("http", "TCP", Some("http")),
        "https" => ("https", "TCP", Some("https")),
        "udp" => ("udp", "UDP", None),
        _ => {
            return Err(format!(
                "protocol {:?} is not tcp, http, https or udp",
                ppio::text::truncate(&named, 32)
            ));
        }
    };
    let port = ServicePort {
        name: format!("{name}-{number}"),
        port: number,
        protocol,
        app_protocol,
    };
    match endpoint::parse(exposed.endpoint.as_deref().unwrap_or_default()) {
        Endpoint::Unallocated => Ok((port, None)),
        Endpoint::Address(address) => match policy.judge(address.ip()) {
            Ok(()) => Ok((port, Some(address))),
            Err(refusal) => Err(format!("{} is {refusal}", address.ip())),
        },
        Endpoint::Host(_) => Err(
            "it is a host name; a Service routes to IP addresses only (no ExternalName is made)"
                .to_owned(),
        ),
        Endpoint::Malformed(why) => Err(why.to_owned()),
    }
}

/// The name of the Service of the mirror `mirror_name`: the mirror's own when it is a DNS-1035
/// label (at most 63 characters of `[a-z0-9-]`, a letter first), as it is for a view whose name is
/// one and PPIO's hex IDs. Otherwise one made from it: dots become dashes, a first character that
/// is not a letter gets `i-` before it, the rest is cut to 46 characters and 16 hex digits of a
/// hash of the mirror's name follow, so distinct mirrors never share a Service.
pub fn service_name(mirror_name: &str) -> String {
    if is_dns_1035_label(mirror_name) {
        return mirror_name.to_owned();
    }
    let cleaned: String = mirror_name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let prefixed = if cleaned.starts_with(|c: char| c.is_ascii_lowercase()) {
        cleaned
    } else {
        format!("i-{cleaned}")
    };
    let hash = format!("{:016x}", crate::mirror::fingerprint::fnv1a(mirror_name));
    let room = MAX_SERVICE_NAME - hash.len() - 1;
    let stem = prefixed[..prefixed.len().min(room)].trim_end_matches('-');
    format!("{stem}-{hash}")
}

fn is_dns_1035_label(name: &str) -> bool {
    name.len() <= MAX_SERVICE_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn port_list(ports: &[ServicePort]) -> String {
    let listed: Vec<String> = ports
        .iter()
        .take(MAX_LISTED_REFUSALS)
        .map(|p| format!("{}/{}", p.port, p.protocol))
        .collect();
    let mut text = listed.join(", ");
    if ports.len() > MAX_LISTED_REFUSALS {
        text.push_str(&format!(" and {} more", ports.len() - MAX_LISTED_REFUSALS));
    }
    text
}

fn address_list(slices: &[DesiredSlice]) -> String {
    if slices.is_empty() {
        return "no address yet (PPIO has allocated none)".to_owned();
    }
    let listed: Vec<String> = slices
        .iter()
        .take(MAX_LISTED_REFUSALS)
        .map(|s| s.address.to_string())
        .collect();
    listed.join(", ")
}

/// The note of an `EndpointChanged` Event, when an exposed port listed `previous`ly and `next`
/// has an allocated endpoint in both and they differ: a restart or a migration moved it.
pub fn moved_endpoints(previous: &[PortStatus], next: &[PortStatus]) -> Option<String> {
    let endpoint = |port: &PortStatus| {
        port.endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
    };
    let moves: Vec<String> = next
        .iter()
        .filter_map(|port| {
            let to = endpoint(port)?;
            let before = previous
                .iter()
                .find(|p| p.port == port.port && p.protocol == port.protocol)?;
            let from = endpoint(before)?;
            (from != to).then(|| {
                format!(
                    "port {} moved from {from} to {to}",
                    port.port.unwrap_or_default()
                )
            })
        })
        .collect();
    if moves.is_empty() {
        return None;
    }
    Some(crate::mirror::event_note(&format!(
        "The instance's endpoints moved: {}. Its Service routes to the new ones.",
        moves.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::instance::RemoteStatus;

    fn port(number: i64, protocol: &str, endpoint: &str) -> PortStatus {
        PortStatus {
            port: Some(number),
            protocol: Some(protocol.into()),
            endpoint: Some(endpoint.into()),
        }
    }

    fn status(remote: &str, ports: Vec<PortStatus>) -> GpuInstanceStatus {
        GpuInstanceStatus {
            status: Some(RemoteStatus {
                status: Some(remote.into()),
                ..RemoteStatus::default()
            }),
            ports,
            ..GpuInstanceStatus::default()
        }
    }

    /// Allows the documentation ranges the instances here have their addresses in.
    fn open() -> AddressPolicy {
        AddressPolicy {
            cluster: Vec::new(),
            allowed: [
                "192.0.2.0/24",
                "198.51.100.0/24",
                "203.0.113.0/24",
                "2001:db8::/32",
            ]
            .map(|range| range.parse().expect("a range"))
            .to_vec(),
        }
    }

    fn service(plan: &ServicePlan) -> &DesiredService {
        plan.service.as_ref().expect("a Service")
    }

    #[test]
    fn each_exposed_port_is_a_named_service_port_served_at_its_address() {
        let plan = plan(
            "team-a-aa01",
            &status(
                "running",
                vec![
                    port(8080, "http", "http://203.0.113.5:30001"),
                    port(22, "tcp", "203.0.113.5:30002"),
                    port(53, "udp", "203.0.113.5:30003"),
                    port(443, "https", "https://[2001:db8::5]:30004/"),
                ],
            ),
            &open(),
        );
        assert!(plan.refused.is_empty(), "{:?}", plan.refused);
        let service = service(&plan);
        assert_eq!(service.name, "team-a-aa01");
        let ports: Vec<_> = service
            .ports
            .iter()
            .map(|p| (p.name.as_str(), p.port, p.protocol, p.app_protocol))
            .collect();
        assert_eq!(
            ports,
            [
                ("http-8080", 8080, "TCP", Some("http")),
                ("tcp-22", 22, "TCP", None),
                ("udp-53", 53, "UDP", None),
                ("https-443", 443, "TCP", Some("https")),
            ]
        );
        let slices: Vec<_> = service
            .slices
            .iter()
            .map(|s| {
                let ports: Vec<_> = s
                    .ports
                    .iter()
                    .map(|(p, remote)| (p.name.as_str(), *remote))
                    .collect();
                (s.name.as_str(), s.address.to_string(), ports)
            })
            .collect();
        assert_eq!(
            slices,
            [
                (
                    "team-a-aa01-ipv4-0",
                    "203.0.113.5".to_owned(),
                    vec![("http-8080", 30001), ("tcp-22", 30002), ("udp-53", 30003)]
                ),
                (
                    "team-a-aa01-ipv6-0",
                    "2001:db8::5".to_owned(),
                    vec![("https-443", 30004)]
                ),
            ]
        );
        assert!(service.ready);
        let condition = plan.condition().expect("a condition");
        assert_eq!(
            (condition.status, condition.reason.as_str()),
            (ConditionStatus::True, ROUTED)
        );
        assert_eq!(
            plan.status(),
            Some(MirrorService {
                name: "team-a-aa01".into(),
                endpoint_slices: vec!["team-a-aa01-ipv4-0".into(), "team-a-aa01-ipv6-0".into()],
            })
        );
    }

    #[test]
    fn endpoints_are_ready_only_while_the_instance_runs_and_is_listed() {
        let ports = vec![port(8080, "http", "http://203.0.113.5:30001")];
        for (remote, absent, ready) in [
            ("running", false, true),
            ("exited", false, false),
            ("starting", false, false),
            ("", false, false),
            ("running", true, false),
        ] {
            let mut status = status(remote, ports.clone());
            if absent {
                status.absent_since = Some(jiff::Timestamp::UNIX_EPOCH);
            }
            let plan = plan("m", &status, &open());
            let service = service(&plan);
            assert_eq!(service.ready, ready, "{remote} absent={absent}");
            assert_eq!(
                service.readiness.starts_with("Ready"),
                ready,
                "{}",
                service.readiness
            );
            assert_eq!(service.slices.len(), 1, "the address stays listed");
        }
        let stopped = plan("m", &status("exited", ports), &open());
        assert!(
            service(&stopped).readiness.contains("exited"),
            "{}",
            service(&stopped).readiness
        );
    }

    #[test]
    fn a_port_without_an_endpoint_yet_keeps_the_service_with_no_address() {
        let plan = plan(
            "m",
            &status("exited", vec![port(8080, "http", "")]),
            &open(),
        );
        let service = service(&plan);
        assert_eq!(service.ports.len(), 1);
        assert!(service.slices.is_empty());
        assert!(plan.refused.is_empty());
    }

    #[test]
    fn host_names_refused_addresses_and_garbage_are_left_out_and_reported() {
        let plan = plan(
            "m",
            &status(
                "running",
                vec![
                    port(8080, "http", "http://203.0.113.5:30001"),
                    port(8081, "http", "http://gpu.ppio.example:30002"),
                    port(8082, "http", "http://127.0.0.1:30003"),
                    port(8083, "http", "http://10.0.0.5:30004"),
                    port(8084, "http", "203.0.113.5"),
                    port(8085, "sctp", "203.0.113.5:30005"),
                    port(0, "tcp", "203.0.113.5:30006"),
                    port(8080, "tcp", "203.0.113.5:30007"),
                ],
            ),
            &open(),
        );
        let service = service(&plan);
        assert_eq!(service.ports.len(), 1, "only port 8080 is routed");
        let refused: Vec<_> = plan.refused.iter().map(|r| r.port).collect();
        assert_eq!(refused, [8081, 8082, 8083, 8084, 8085, 0, 8080]);
        let why = |port| {
            plan.refused
                .iter()
                .find(|r| r.port == port)
                .map(|r| r.reason.clone())
                .unwrap_or_default()
        };
        assert!(why(8081).contains("host name"), "{}", why(8081));
        assert!(
            why(8082).contains("in 127.0.0.0/8, Loopback"),
            "{}",
            why(8082)
        );
        assert!(
            why(8083).contains("in 10.0.0.0/8, Private-Use (RFC 1918)"),
            "{}",
            why(8083)
        );
        assert!(why(8084).contains("no port"), "{}", why(8084));
        assert!(why(8085).contains("sctp"), "{}", why(8085));
        assert_eq!(
            plan.tally(),
            ServiceTally {
                service: true,
                refused: 7
            }
        );
        let condition = plan.condition().expect("a condition");
        assert_eq!(
            (condition.status, condition.reason.as_str()),
            (ConditionStatus::False, ENDPOINT_REFUSED)
        );
        assert!(
            condition.message.contains("127.0.0.1"),
            "{}",
            condition.message
        );
        assert_eq!(
            condition.message.matches("is not routed").count(),
            7,
            "{}",
            condition.message
        );
    }

    #[test]
    fn an_instance_whose_every_endpoint_is_refused_has_no_service_but_says_why() {
        let plan = plan(
            "m",
            &status(
                "running",
                vec![port(8080, "http", "http://169.254.169.254:80")],
            ),
            &open(),
        );
        assert_eq!(plan.service, None);
        assert_eq!(plan.status(), None);
        let condition = plan.condition().expect("a condition");
        assert!(
            condition.message.contains("the cloud metadata address"),
            "{}",
            condition.message
        );
        assert!(
            condition.message.contains("no Service"),
            "{}",
            condition.message
        );
    }

    #[test]
    fn an_instance_without_ports_has_no_service_and_no_condition() {
        let plan = plan("m", &status("running", Vec::new()), &open());
        assert_eq!(plan, ServicePlan::default());
        assert_eq!(plan.condition(), None);
    }

    #[test]
    fn service_names_are_dns_1035_labels_distinct_for_distinct_mirrors() {
        assert_eq!(service_name("team-a-aa01"), "team-a-aa01");
        let long = format!("{}-aa01", "v".repeat(70));
        for mirror in [
            "7team-aa01",
            "team.a-aa01",
            long.as_str(),
            "team-a-Aa01-0123456789abcdef",
        ] {
            let name = service_name(mirror);
            assert!(is_dns_1035_label(&name), "{mirror} → {name}");
        }
        assert_ne!(service_name("team.a-aa01"), service_name("team-a-aa01"));
        assert_ne!(service_name("team.a-aa01"), service_name("team-a.aa01"));
        assert!(service_name("7team-aa01").starts_with("i-7team-aa01-"));
    }

    #[test]
    fn a_moved_endpoint_is_told_and_a_first_or_lost_one_is_not() {
        let before = [
            port(8080, "http", "http://203.0.113.5:30001"),
            port(22, "tcp", ""),
        ];
        let moved = [
            port(8080, "http", "http://198.51.100.7:31000"),
            port(22, "tcp", ""),
        ];
        let note = moved_endpoints(&before, &moved).expect("a move");
        assert!(
            note.contains(
                "port 8080 moved from http://203.0.113.5:30001 to http://198.51.100.7:31000"
            ),
            "{note}"
        );
        assert_eq!(moved_endpoints(&before, &before), None);
        let stopped = [port(8080, "http", ""), port(22, "tcp", "")];
        assert_eq!(moved_endpoints(&before, &stopped), None);
        assert_eq!(moved_endpoints(&stopped, &before), None);
    }
}
