use std::{net::SocketAddr, path::Path};

use proptest::prelude::*;

use super::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/procfs");
// Recorded on x86_64 (little-endian), with queued datagrams (3 × 100 B and 1 × 10 B: their
// rx_queue is their buffers' size, 832 B each here), a connected socket per family and a
// v4-mapped one in udp6.
const UDP: &str = include_str!("../../tests/fixtures/procfs/net/udp");
const UDP6: &str = include_str!("../../tests/fixtures/procfs/net/udp6");
const TORN: &str = "torn line (no newline at its end)";

fn row(local: &str, remote: &str, state: TcpState, rx_queue: u64, inode: u64) -> UdpRow {
    UdpRow {
        local: local.parse::<SocketAddr>().unwrap(),
        remote: remote.parse::<SocketAddr>().unwrap(),
        state,
        tx_queue: 0,
        rx_queue,
        uid: 0,
        inode,
    }
}

fn udp_rows() -> Vec<UdpRow> {
    use TcpState::*;
    vec![
        row("127.0.0.1:6353", "0.0.0.0:0", Close, 2_496, 6_464_344),
        row(
            "127.0.0.1:40001",
            "127.0.0.1:6353",
            Established,
            0,
            6_464_345,
        ),
        row("0.0.0.0:40002", "0.0.0.0:0", Close, 0, 6_464_346),
    ]
}

fn udp6_rows() -> Vec<UdpRow> {
    use TcpState::*;
    vec![
        row("[::1]:6354", "[::]:0", Close, 832, 6_464_347),
        row("[::1]:40003", "[::1]:6354", Established, 0, 6_464_348),
        row(
            "[::ffff:127.0.0.1]:40004",
            "[::ffff:127.0.0.1]:6353",
            Established,
            0,
            6_464_349,
        ),
    ]
}

#[cfg(target_endian = "little")]
#[test]
fn parses_recorded_udp_and_udp6() {
    assert_eq!(parse_udp_table(UDP), (udp_rows(), vec![]));
    assert_eq!(parse_udp_table(UDP6), (udp6_rows(), vec![]));
}

#[cfg(target_endian = "little")]
#[test]
fn reads_both_tables_from_a_proc_root() {
    let tables = read_udp_tables(Path::new(FIXTURES)).unwrap();
    let mut expected = udp_rows();
    expected.extend(udp6_rows());
    assert_eq!(tables.rows, expected);
    assert_eq!(tables.malformed, vec![]);
}

#[cfg(target_endian = "little")]
#[test]
fn a_torn_tail_line_is_malformed_wherever_it_was_cut() {
    let last = UDP.lines().last().unwrap();
    let before = &UDP[..UDP.len() - last.len() - 1];
    for cut in 0..=last.len() {
        let text = format!("{before}{}", &last[..cut]);
        let (rows, malformed) = parse_udp_table(&text);
        assert_eq!(rows, udp_rows()[..2], "cut at {cut}");
        if last[..cut].trim().is_empty() {
            assert_eq!(malformed, vec![], "cut at {cut}");
        } else {
            assert_eq!(malformed.len(), 1, "cut at {cut}");
            assert_eq!(malformed[0].line_number, 4);
            assert_eq!(malformed[0].reason, TORN);
        }
    }
    // Cut inside the inode, the line alone would parse (with a wrong inode): only its missing
    // newline gives it away.
    let in_inode = &last[..last.find(" 6464346").unwrap() + 5];
    assert_eq!(parse_udp_table(&format!("{in_inode}\n")).0[0].inode, 6_464);
    assert_eq!(
        parse_udp_table(in_inode),
        (
            vec![],
            vec![MalformedLine {
                line_number: 1,
                reason: TORN.into(),
            }]
        )
    );
}

#[test]
fn malformed_lines_are_counted_and_the_rest_parse() {
    let good = "0: 0100007F:18D1 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 7 2 \
                0000000000000000 0";
    let text = [
        UDP.lines().next().unwrap(),
        good,
        "1: 0100007F:18D1 00000000:0000",
        "2: 0100007G:18D1 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 7",
        "3: 0100007F:18D1 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 -7",
        "4: 0100007F:18D1 00000000000000000000000000000000:0000 07 0:0 0:0 0 0 0 7",
        "",
        good,
        "",
    ]
    .join("\n");
    let (rows, malformed) = parse_udp_table(&text);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].inode, 7);
    let lines: Vec<usize> = malformed.iter().map(|m| m.line_number).collect();
    assert_eq!(lines, vec![3, 4, 5, 6]);
    assert_eq!(malformed[0].reason, "missing state");
    assert_eq!(malformed[1].reason, "bad local address `0100007G:18D1`");
    assert_eq!(malformed[2].reason, "bad inode `-7`");
    assert_eq!(
        malformed[3].reason,
        "local and remote addresses are of different families"
    );
}

#[test]
fn missing_udp6_is_not_an_error_but_missing_udp_is() {
    let dir = crate::testutil::TempDir::new("udp6-missing");
    std::fs::create_dir(dir.path().join("net")).unwrap();
    assert!(read_udp_tables(dir.path()).is_err());
    std::fs::write(dir.path().join("net/udp"), &UDP[..UDP.len() - 1]).unwrap();
    let tables = read_udp_tables(dir.path()).unwrap();
    assert_eq!(tables.rows.len(), 2);
    assert_eq!(tables.malformed.len(), 1);
    assert!(
        tables.malformed[0]
            .reason
            .ends_with(&format!("net/udp: {TORN}")),
        "{:?}",
        tables.malformed
    );
}

#[test]
fn a_socket_listed_twice_is_kept_once() {
    let dir = crate::testutil::TempDir::new("udp-twice");
    std::fs::create_dir(dir.path().join("net")).unwrap();
    let last = UDP.lines().last().unwrap();
    std::fs::write(dir.path().join("net/udp"), format!("{UDP}{last}\n")).unwrap();
    assert_eq!(read_udp_tables(dir.path()).unwrap().rows.len(), 3);
}

#[test]
fn reads_the_real_proc() {
    let unconnected = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let connected = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    connected
        .connect(unconnected.local_addr().unwrap())
        .unwrap();
    let tables = read_udp_tables(Path::new("/proc")).unwrap();
    assert_eq!(tables.malformed, vec![]);
    let find = |socket: &std::net::UdpSocket| {
        let local = socket.local_addr().unwrap();
        tables.rows.iter().find(|r| r.local == local).unwrap()
    };
    let (server, client) = (find(&unconnected), find(&connected));
    assert_eq!(server.state, TcpState::Close);
    assert_eq!(server.remote, "0.0.0.0:0".parse().unwrap());
    assert_eq!(client.state, TcpState::Established);
    assert_eq!(client.remote, unconnected.local_addr().unwrap());
    assert!(server.inode != 0 && client.inode != 0 && server.inode != client.inode);
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC*(\n\\PC*){0,8}") {
        let (rows, malformed) = parse_udp_table(&text);
        prop_assert!(rows.len() + malformed.len() <= text.lines().count());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_udp_table(&text);
    }

    /// A read cut anywhere: the complete lines before the cut, and the cut line reported.
    #[test]
    fn a_table_cut_anywhere_keeps_its_complete_lines(cut in any::<prop::sample::Index>()) {
        let full = format!("{UDP}{}", UDP6.lines().skip(1).map(|l| format!("{l}\n")).collect::<String>());
        let (all, none) = parse_udp_table(&full);
        prop_assert_eq!(none, vec![]);
        let cut = cut.index(full.len() + 1);
        let (rows, malformed) = parse_udp_table(&full[..cut]);
        let complete = full[..cut].matches('\n').count().saturating_sub(1);
        prop_assert_eq!(&rows[..], &all[..complete]);
        prop_assert!(malformed.iter().all(|m| m.reason == TORN));
        prop_assert!(malformed.len() <= 1);
    }
}
