//! The kernel's packet counters of this network namespace (`/proc/net/snmp`, `/proc/net/snmp6`):
//! how many of the cgroup_skb programs' runs were UDP datagrams and how many TCP segments.
//! The programs sit on the cgroup v2 root and run on every packet of every socket, TCP included.
//! Approximate: TCP counts segments (a GSO skb is one run, several segments), and traffic of
//! other network namespaces reaches the programs but not these counters.

use std::fs;

/// Packets of one namespace, IPv4 and IPv6 together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Packets {
    /// UDP datagrams sent (each runs the egress program once).
    pub udp_out: u64,
    /// UDP datagrams read by applications plus those dropped on a full socket, both after the
    /// ingress program ran.
    pub udp_in: u64,
    /// TCP segments sent and received.
    pub tcp_out: u64,
    pub tcp_in: u64,
}

impl Packets {
    /// The counters now, `None` if /proc/net/snmp cannot be read.
    pub fn read() -> Option<Packets> {
        let snmp = fs::read_to_string("/proc/net/snmp").ok()?;
        // No IPv6 is no error.
        let snmp6 = fs::read_to_string("/proc/net/snmp6").unwrap_or_default();
        Some(parse(&snmp, &snmp6))
    }

    /// What moved between `before` and `self`.
    pub fn since(&self, before: &Packets) -> Packets {
        Packets {
            udp_out: self.udp_out.saturating_sub(before.udp_out),
            udp_in: self.udp_in.saturating_sub(before.udp_in),
            tcp_out: self.tcp_out.saturating_sub(before.tcp_out),
            tcp_in: self.tcp_in.saturating_sub(before.tcp_in),
        }
    }
}

/// `Udp:` and `Tcp:` come as a line of names then a line of values; snmp6 has one
/// `Udp6OutDatagrams  N` per line. TCP over IPv6 is already in the `Tcp:` line.
fn parse(snmp: &str, snmp6: &str) -> Packets {
    let field = |proto: &str, name: &str| -> u64 {
        let prefix = format!("{proto}:");
        let mut rows = snmp.lines().filter(|l| l.starts_with(&prefix));
        let (Some(names), Some(values)) = (rows.next(), rows.next()) else {
            return 0;
        };
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    };
    let v6 = |name: &str| -> u64 {
        snmp6
            .lines()
            .filter_map(|l| l.split_once(char::is_whitespace))
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0)
    };
    Packets {
        udp_out: field("Udp", "OutDatagrams") + v6("Udp6OutDatagrams"),
        udp_in: field("Udp", "InDatagrams")
            + field("Udp", "RcvbufErrors")
            + v6("Udp6InDatagrams")
            + v6("Udp6RcvbufErrors"),
        tcp_out: field("Tcp", "OutSegs"),
        tcp_in: field("Tcp", "InSegs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_of_both_families() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
            Tcp: RtoAlgorithm InSegs OutSegs RetransSegs\nTcp: 1 100 120 3\n\
            Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
            Udp: 50 2 7 60 5 0\n\
            UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
            UdpLite: 9 9 9 9 9 9\n";
        let snmp6 = "Ip6InReceives                   \t4\nUdp6InDatagrams                 \t10\n\
            Udp6OutDatagrams                \t11\nUdp6RcvbufErrors                \t1\n";
        let p = parse(snmp, snmp6);
        assert_eq!(
            p,
            Packets {
                udp_out: 71,
                udp_in: 66,
                tcp_out: 120,
                tcp_in: 100,
            }
        );
        let later = Packets { udp_out: 171, ..p };
        assert_eq!(later.since(&p).udp_out, 100);
        assert_eq!(parse("", ""), Packets::default());
    }
}
