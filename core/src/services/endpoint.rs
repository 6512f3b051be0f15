//! Reading the endpoint PPIO gives an exposed port (`http://203.0.113.5:30001`,
//! `203.0.113.5:30001`, `[2001:db8::5]:30001`, or a host name): an IP address and port a Service
//! can route to, a host name it cannot, or nothing allocated yet.

use std::net::{IpAddr, SocketAddr};

/// An exposed port's endpoint as PPIO gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// None allocated (the instance is not running, or not yet).
    Unallocated,
    /// An IP address and port.
    Address(SocketAddr),
    /// A host name (with its port, if it has one): a Service routes to addresses only.
    Host(String),
    /// Neither: what PPIO sent, and what is wrong with it.
    Malformed(&'static str),
}

/// Reads `text`: an optional `scheme://`, then `address:port` (IPv6 in brackets), then an optional
/// path, which is ignored.
pub fn parse(text: &str) -> Endpoint {
    let text = text.trim();
    if text.is_empty() {
        return Endpoint::Unallocated;
    }
    let rest = text.split_once("://").map_or(text, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Endpoint::Malformed("it carries user information");
    }
    if let Ok(address) = authority.parse::<SocketAddr>() {
        return if address.port() == 0 {
            Endpoint::Malformed("its port is 0")
        } else {
            Endpoint::Address(address)
        };
    }
    if authority.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() {
        return Endpoint::Malformed("it has no port");
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if port.is_some_and(|port| !port.parse::<u16>().is_ok_and(|port| port > 0)) {
        return Endpoint::Malformed("its port is not a number from 1 to 65535");
    }
    let is_host_name = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if is_host_name {
        Endpoint::Host(ppio::text::truncate(authority, 253))
    } else {
        Endpoint::Malformed("it is neither an IP address and port nor a host name")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> Endpoint {
        Endpoint::Address(text.parse().expect("a socket address"))
    }

    #[test]
    fn addresses_are_read_with_or_without_a_scheme_and_a_path() {
        assert_eq!(
            parse("http://203.0.113.5:30001"),
            address("203.0.113.5:30001")
        );
        assert_eq!(parse("203.0.113.5:30001"), address("203.0.113.5:30001"));
        assert_eq!(parse(" tcp://203.0.113.5:22/ "), address("203.0.113.5:22"));
        assert_eq!(
            parse("https://203.0.113.5:443/v1?x=1"),
            address("203.0.113.5:443")
        );
        assert_eq!(parse("[2001:db8::5]:30001"), address("[2001:db8::5]:30001"));
        assert_eq!(
            parse("http://[2001:db8::5]:8080/"),
            address("[2001:db8::5]:8080")
        );
    }

    #[test]
    fn nothing_allocated_a_host_name_and_garbage_are_told_apart() {
        assert_eq!(parse(""), Endpoint::Unallocated);
        assert_eq!(parse("  "), Endpoint::Unallocated);
        assert_eq!(
            parse("http://gpu-7.ppio.example:30001"),
            Endpoint::Host("gpu-7.ppio.example:30001".into())
        );
        assert_eq!(
            parse("gpu-7.ppio.example"),
            Endpoint::Host("gpu-7.ppio.example".into())
        );
        assert!(matches!(parse("203.0.113.5"), Endpoint::Malformed(_)));
        assert!(matches!(parse("[2001:db8::5]"), Endpoint::Malformed(_)));
        assert!(matches!(parse("203.0.113.5:0"), Endpoint::Malformed(_)));
        assert!(matches!(parse("203.0.113.5:70000"), Endpoint::Malformed(_)));
        assert!(matches!(
            parse("http://user:pw@203.0.113.5:80"),
            Endpoint::Malformed(_)
        ));
        assert!(matches!(
            parse("http://exa mple:80"),
            Endpoint::Malformed(_)
        ));
        assert!(matches!(parse("http://:80"), Endpoint::Malformed(_)));
    }
}
