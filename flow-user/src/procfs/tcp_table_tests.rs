use std::{net::SocketAddr, path::Path};

use proptest::prelude::*;

use super::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/procfs");
// Recorded on x86_64 (little-endian): the address words read back as shown only there.
const TCP: &str = include_str!("../../tests/fixtures/procfs/net/tcp");
const TCP6: &str = include_str!("../../tests/fixtures/procfs/net/tcp6");
const MALFORMED: &str = include_str!("../../tests/fixtures/procfs/tcp_malformed");

fn row(
    local: &str,
    remote: &str,
    state: TcpState,
    tx_rx: (u64, u64),
    uid: u32,
    inode: u64,
) -> TcpRow {
    TcpRow {
        local: local.parse::<SocketAddr>().unwrap(),
        remote: remote.parse::<SocketAddr>().unwrap(),
        state,
        tx_queue: tx_rx.0,
        rx_queue: tx_rx.1,
        uid,
        inode,
    }
}

fn tcp_rows() -> Vec<TcpRow> {
    use TcpState::*;
    vec![
        row("127.0.0.1:8080", "0.0.0.0:0", Listen, (0, 0), 0, 13412),
        row("127.0.0.1:9001", "0.0.0.0:0", Listen, (0, 0), 0, 13489),
        row("0.0.0.0:2024", "0.0.0.0:0", Listen, (0, 0), 0, 640),
        row(
            "127.0.0.1:45360",
            "127.0.0.1:9000",
            Established,
            (0, 0),
            1000,
            13487,
        ),
        row("127.0.0.1:8080", "127.0.0.1:34510", TimeWait, (0, 0), 0, 0),
        row(
            "127.0.0.1:50800",
            "127.0.0.1:9001",
            Established,
            (2_803_712, 0),
            0,
            13490,
        ),
        row(
            "127.0.0.1:9001",
            "127.0.0.1:50800",
            Established,
            (0, 4096),
            0,
            4_294_980_000,
        ),
    ]
}

fn tcp6_rows() -> Vec<TcpRow> {
    use TcpState::*;
    vec![
        row("[::1]:8081", "[::]:0", Listen, (0, 0), 0, 12814),
        row("[::]:9000", "[::]:0", Listen, (0, 0), 0, 13486),
        row("[::1]:9002", "[::]:0", Listen, (0, 0), 0, 13492),
        row("[::1]:8081", "[::1]:45928", TimeWait, (0, 0), 0, 0),
        row("[::1]:9002", "[::1]:43834", Established, (0, 300), 0, 13494),
        row("[::1]:43834", "[::1]:9002", Established, (0, 0), 0, 13493),
        row(
            "[::ffff:127.0.0.1]:9000",
            "[::ffff:127.0.0.1]:45360",
            Established,
            (0, 1000),
            0,
            13488,
        ),
    ]
}

#[cfg(target_endian = "little")]
#[test]
fn parses_recorded_tcp() {
    let (rows, malformed) = parse_tcp_table(TCP);
    assert_eq!(malformed, vec![]);
    assert_eq!(rows, tcp_rows());
}

#[cfg(target_endian = "little")]
#[test]
fn parses_recorded_tcp6_keeping_v4_mapped_as_v6() {
    let (rows, malformed) = parse_tcp_table(TCP6);
    assert_eq!(malformed, vec![]);
    assert_eq!(rows, tcp6_rows());
    assert!(matches!(rows[6].local, SocketAddr::V6(a) if a.ip().to_ipv4_mapped().is_some()));
}

#[cfg(target_endian = "little")]
#[test]
fn malformed_lines_are_reported_and_the_rest_parse() {
    let (rows, malformed) = parse_tcp_table(MALFORMED);
    let all = tcp_rows();
    assert_eq!(rows, vec![all[0].clone(), all[3].clone(), all[6].clone()]);
    let lines: Vec<usize> = malformed.iter().map(|m| m.line_number).collect();
    assert_eq!(lines, vec![3, 5, 6, 7, 8, 10, 11, 12, 13, 14]);
    assert_eq!(malformed[0].to_string(), "line 3: missing state");
    assert_eq!(malformed[1].reason, "bad local address `0100007G:C670`");
    assert_eq!(malformed[2].reason, "bad inode `99999999999999999999999`");
    assert_eq!(malformed[3].reason, "missing queues");
    assert_eq!(
        malformed[7].reason,
        "local and remote addresses are of different families"
    );
    assert_eq!(malformed[8].reason, "bad uid `4294967296`");
    for m in &malformed {
        assert!(!m.to_string().contains('\n'), "{m}");
    }
}

#[cfg(target_endian = "little")]
#[test]
fn reads_both_tables_from_a_proc_root() {
    let tables = read_tcp_tables(Path::new(FIXTURES)).unwrap();
    let mut expected = tcp_rows();
    expected.extend(tcp6_rows());
    assert_eq!(tables.rows, expected);
    assert_eq!(tables.malformed, vec![]);
}

#[test]
fn missing_tcp6_is_not_an_error_but_missing_tcp_is() {
    let dir = crate::testutil::TempDir::new("tcp6-missing");
    std::fs::create_dir(dir.path().join("net")).unwrap();
    assert!(read_tcp_tables(dir.path()).is_err());
    std::fs::write(dir.path().join("net/tcp"), MALFORMED).unwrap();
    let tables = read_tcp_tables(dir.path()).unwrap();
    assert_eq!(tables.rows.len(), 3);
    assert!(tables.malformed[0]
        .reason
        .contains("net/tcp: missing state"));
}

#[test]
fn reads_the_real_proc() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let tables = read_tcp_tables(Path::new("/proc")).unwrap();
    assert_eq!(tables.malformed, vec![]);
    let mine = tables.rows.iter().find(|r| r.local == addr).unwrap();
    assert_eq!(mine.state, TcpState::Listen);
    assert_ne!(mine.inode, 0);
}

#[test]
fn header_blank_and_empty_inputs() {
    assert_eq!(parse_tcp_table(""), (vec![], vec![]));
    assert_eq!(parse_tcp_table("\n\n   \n"), (vec![], vec![]));
    let header = TCP.lines().next().unwrap();
    assert_eq!(parse_tcp_table(header), (vec![], vec![]));
}

#[test]
fn rejects_signs_and_overlong_hex() {
    let good = "0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1";
    assert_eq!(parse_tcp_table(good).0.len(), 1);
    for bad in [
        "0: +100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
        "0: 0100007F:+F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
        "0: 0100007F:11F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1",
        "0: 0100007F:1F90 00000000:0000 1FF 00000000:00000000 00:00000000 00000000 0 0 1",
        "0: 0100007F:1F90 00000000:0000 0A 00000000000000000:0 00:00000000 00000000 0 0 1",
        "0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 -1 0 1",
        "0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 +1",
    ] {
        let (rows, malformed) = parse_tcp_table(bad);
        assert_eq!((rows.len(), malformed.len()), (0, 1), "{bad}");
    }
}

#[test]
fn long_junk_is_echoed_bounded() {
    let junk = format!("0: {} 00000000:0000", "Z".repeat(10_000));
    let (_, malformed) = parse_tcp_table(&junk);
    assert!(malformed[0].reason.len() < 100, "{}", malformed[0].reason);
}

/// Every data line of both recorded tables.
fn recorded_lines() -> Vec<&'static str> {
    TCP.lines().skip(1).chain(TCP6.lines().skip(1)).collect()
}

/// `line` inserted among the recorded lines at `at`: the recorded lines must parse as they do
/// alone, and `line` must yield at most one row or one malformed report, never both.
fn check_recorded_lines_survive(line: &str, at: usize) {
    let recorded = recorded_lines();
    let at = at % (recorded.len() + 1);
    let mut lines = recorded.clone();
    lines.insert(at, line);
    let text = lines.join("\n");
    let (rows, malformed) = parse_tcp_table(&text);

    let (expected, none) = parse_tcp_table(&recorded.join("\n"));
    assert_eq!(none, vec![]);
    let (alone, alone_malformed) = parse_tcp_table(line);
    assert!(alone.len() + alone_malformed.len() <= 1);
    let mut with_line = expected.clone();
    with_line.splice(at..at, alone);
    assert_eq!(rows, with_line);
    assert_eq!(malformed.len(), alone_malformed.len());
    if let Some(m) = malformed.first() {
        assert_eq!(m.line_number, at + 1);
    }
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC*(\n\\PC*){0,8}") {
        let (rows, malformed) = parse_tcp_table(&text);
        prop_assert!(rows.len() + malformed.len() <= text.lines().count());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_tcp_table(&text);
    }

    #[test]
    fn truncated_recorded_lines_do_not_spoil_the_rest(
        which in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
        at in any::<usize>(),
    ) {
        let recorded = recorded_lines();
        let line = *which.get(&recorded);
        let cut = cut.index(line.len() + 1);
        check_recorded_lines_survive(&line[..cut], at);
    }

    #[test]
    fn junk_lines_do_not_spoil_the_rest(junk in "[^\r\n]*", at in any::<usize>()) {
        check_recorded_lines_survive(&junk, at);
    }

    #[test]
    fn mutated_hex_fields_do_not_spoil_the_rest(
        which in any::<prop::sample::Index>(),
        pos in any::<prop::sample::Index>(),
        byte in "[0-9A-Fa-fxZ:+ -]",
        at in any::<usize>(),
    ) {
        let recorded = recorded_lines();
        let line = *which.get(&recorded);
        let pos = pos.index(line.len());
        let mutated = format!("{}{}{}", &line[..pos], byte, &line[pos + 1..]);
        check_recorded_lines_survive(&mutated, at);
    }
}

#[test]
fn a_socket_listed_twice_is_kept_once() {
    let mut rows = tcp_rows();
    let expected = rows.clone();
    rows.push(rows[0].clone());
    dedup_rows(&mut rows);
    assert_eq!(rows, expected);
}
