//! How a call's callee is named: the service listening where the caller
//! connected, in the caller's network namespace, else the address.

use std::net::{IpAddr, SocketAddr};

use anyhow::Result;

/// Fails if two services claim one port in one network namespace: calls to
/// it could not be told apart.
pub fn check_unique_ports(services: &[ServiceAddress]) -> Result<()> {
    for (i, service) in services.iter().enumerate() {
        if let Some(other) = services[..i]
            .iter()
            .find(|s| s.port == service.port && s.netns == service.netns)
        {
            anyhow::bail!(
                "[services.{}] and [services.{}] both claim port {} in one network namespace: fix one of their ports",
                other.name,
                service.name,
                service.port
            );
        }
    }
    Ok(())
}

/// Whether a connect to `ip` stays in the caller's own network namespace
/// whatever its interfaces: loopback (all of 127.0.0.0/8, `::1`) and the
/// unspecified address (`0.0.0.0`, `::`, which Linux routes to the local
/// host; Flask prints it at start, so people call their peers there), in
/// IPv4-mapped form too.
pub(super) fn is_local(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    ip.is_loopback() || ip.is_unspecified()
}

/// The service a caller in namespace `caller_netns` reaches at
/// `destination`: a local address (`is_local`) reaches the caller's own
/// namespace; any other address the namespace that has it, the caller's
/// own first (isolated namespaces may reuse addresses). Calls elsewhere
/// are named by address.
fn callee_name(
    services: &[ServiceAddress],
    destination: SocketAddr,
    caller_netns: u64,
) -> Option<&str> {
    let ip = destination.ip().to_canonical();
    services
        .iter()
        .filter(|s| s.port == destination.port())
        .filter(|s| {
            if is_local(ip) {
                s.netns == caller_netns
            } else {
                s.addresses.contains(&ip)
            }
        })
        .min_by_key(|s| s.netns != caller_netns)
        .map(|s| s.name.as_str())
}

/// How a call to `destination` from namespace `caller_netns` names its
/// callee: the service's name, else the address.
pub(super) fn callee(
    services: &[ServiceAddress],
    destination: SocketAddr,
    caller_netns: u64,
) -> String {
    callee_name(services, destination, caller_netns)
        .map_or_else(|| destination.to_string(), str::to_string)
}

/// Where a service listens: how the callee of a connect is named.
#[derive(Clone, Debug)]
pub struct ServiceAddress {
    pub name: String,
    pub port: u16,
    /// Cookie of its network namespace.
    pub netns: u64,
    /// Its namespace's interface addresses.
    pub addresses: Vec<IpAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callees_are_named_by_namespace_and_address() {
        let service = |name: &str, port, netns, addresses: &[&str]| ServiceAddress {
            name: name.into(),
            port,
            netns,
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        };
        let services = [
            service("host-app", 5000, 1, &["127.0.0.1", "10.9.0.1"]),
            service("foo", 8080, 2, &["127.0.0.1", "10.9.0.2"]),
            service("bar", 8080, 3, &["127.0.0.1", "10.9.0.3"]),
        ];
        let name = |destination: &str, caller_netns| {
            callee_name(&services, destination.parse().unwrap(), caller_netns)
        };
        // Loopback stays in the caller's namespace.
        assert_eq!(name("127.0.0.1:5000", 1), Some("host-app"));
        // So do the rest of 127/8, the unspecified addresses and the
        // IPv4-mapped forms of all of them.
        for local in [
            "127.0.0.2:5000",
            "0.0.0.0:5000",
            "[::]:5000",
            "[::1]:5000",
            "[::ffff:127.0.0.1]:5000",
            "[::ffff:0.0.0.0]:5000",
        ] {
            assert_eq!(name(local, 1), Some("host-app"), "{local}");
            assert_eq!(name(local, 2), None, "{local}");
        }
        // The caller's own interface address, mapped or not.
        assert_eq!(name("[::ffff:10.9.0.1]:5000", 1), Some("host-app"));
        assert_eq!(name("127.0.0.1:8080", 3), Some("bar"));
        assert_eq!(name("127.0.0.1:5000", 2), None);
        // Other addresses belong to the namespace that has them.
        assert_eq!(name("10.9.0.3:8080", 2), Some("bar"));
        assert_eq!(name("10.9.0.1:5000", 3), Some("host-app"));
        assert_eq!(name("10.9.0.3:5000", 1), None);
        assert_eq!(name("192.0.2.7:8080", 1), None);
        // Namespaces that reuse an address: the caller's own comes first.
        let reused = [
            service("foo", 8080, 2, &["10.9.0.9"]),
            service("bar", 8080, 3, &["10.9.0.9"]),
        ];
        let destination = "10.9.0.9:8080".parse().unwrap();
        assert_eq!(callee_name(&reused, destination, 3), Some("bar"));
        assert_eq!(callee_name(&reused, destination, 2), Some("foo"));

        assert!(check_unique_ports(&services).is_ok());
        let clash = [services[1].clone(), service("baz", 8080, 2, &[])];
        let err = check_unique_ports(&clash).unwrap_err().to_string();
        assert!(
            err.contains("[services.foo] and [services.baz] both claim port 8080"),
            "{err}"
        );
    }
}
