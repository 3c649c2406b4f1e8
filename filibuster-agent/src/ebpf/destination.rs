//! Socket addresses as the kernel programs lay them out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use filibuster_common::{AF_INET, AF_INET6, SockAddr};

/// A destination as the kernel programs key it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Destination(pub SocketAddr);

impl Destination {
    /// The socket address the kernel's layout holds.
    pub fn from_kernel(addr: &SockAddr) -> Self {
        let ip = if addr.family == AF_INET6 {
            let mut bytes = [0u8; 16];
            for (chunk, word) in bytes.chunks_mut(4).zip(addr.addr) {
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        } else {
            IpAddr::V4(Ipv4Addr::from(addr.addr[0].to_ne_bytes()))
        };
        Self(SocketAddr::new(ip, addr.port))
    }

    /// This address in the kernel's layout.
    pub fn to_kernel(self) -> SockAddr {
        let mut words = [0u32; 4];
        let family = match self.0.ip() {
            IpAddr::V4(ip) => {
                words[0] = u32::from_ne_bytes(ip.octets());
                AF_INET
            }
            IpAddr::V6(ip) => {
                for (word, chunk) in words.iter_mut().zip(ip.octets().chunks(4)) {
                    *word = u32::from_ne_bytes(chunk.try_into().expect("4 bytes"));
                }
                AF_INET6
            }
        };
        SockAddr {
            addr: words,
            family,
            port: self.0.port(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_round_trip_through_the_kernel_layout() {
        for addr in ["127.0.0.1:5001", "[::1]:8080", "10.1.2.3:443"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let kernel = Destination(addr).to_kernel();
            assert_eq!(Destination::from_kernel(&kernel).0, addr);
        }
        // Network byte order in memory, as bpf_sock_addr.user_ip4 has it.
        let kernel = Destination("127.0.0.1:1".parse().unwrap()).to_kernel();
        assert_eq!(kernel.addr[0].to_ne_bytes(), [127, 0, 0, 1]);
    }
}
