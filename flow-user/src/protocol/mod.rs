//! Protocol classification: the seed's `detectProtocol` by port, and classification of the
//! first bytes a connection carries ([`payload`]), which wins over the port. The parsers behind
//! it that keep names only: [`dns`] (answers), [`tls`] (ClientHello SNI), [`quic`] (Initial SNI).

pub mod dns;
pub mod payload;
pub mod quic;
pub mod tls;

use crate::model::{NetConnection, Protocol};

/// The protocol a well-known port implies, checking the remote end first, then the local one.
/// Pure: looks only at the two port numbers.
pub fn detect_protocol(connection: &NetConnection) -> Protocol {
    protocol_by_ports(connection.remote.port(), connection.local.port())
}

/// Port heuristic over both ends (the first that is well known wins).
pub fn protocol_by_ports(first: u16, second: u16) -> Protocol {
    [first, second]
        .into_iter()
        .map(protocol_by_port)
        .find(|p| *p != Protocol::Unknown)
        .unwrap_or(Protocol::Unknown)
}

/// The port heuristic for a UDP flow: 53 is DNS, 443 QUIC (HTTP/3); the TCP services' ports
/// say nothing about UDP.
pub fn protocol_by_udp_ports(first: u16, second: u16) -> Protocol {
    [first, second]
        .into_iter()
        .map(|port| match port {
            53 => Protocol::Dns,
            443 => Protocol::Quic,
            _ => Protocol::Unknown,
        })
        .find(|p| *p != Protocol::Unknown)
        .unwrap_or(Protocol::Unknown)
}

fn protocol_by_port(port: u16) -> Protocol {
    match port {
        80 | 8080 => Protocol::Http,
        443 => Protocol::Https,
        22 => Protocol::Ssh,
        21 => Protocol::Ftp,
        25 | 587 => Protocol::Smtp,
        53 => Protocol::Dns,
        _ => Protocol::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_end_decides() {
        assert_eq!(protocol_by_ports(443, 51000), Protocol::Https);
        assert_eq!(protocol_by_ports(51000, 22), Protocol::Ssh);
        assert_eq!(protocol_by_ports(8080, 51000), Protocol::Http);
        assert_eq!(protocol_by_ports(587, 1), Protocol::Smtp);
        assert_eq!(protocol_by_ports(53, 1), Protocol::Dns);
        assert_eq!(protocol_by_ports(21, 1), Protocol::Ftp);
        assert_eq!(protocol_by_ports(1, 2), Protocol::Unknown);
    }

    #[test]
    fn udp_ports() {
        assert_eq!(protocol_by_udp_ports(443, 51000), Protocol::Quic);
        assert_eq!(protocol_by_udp_ports(51000, 53), Protocol::Dns);
        assert_eq!(protocol_by_udp_ports(80, 22), Protocol::Unknown);
    }
}
