//! Protocol classification: the seed's `detectProtocol` by port, and classification of the
//! first bytes a connection carries ([`payload`]), which wins over the port.

pub mod payload;

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
}
