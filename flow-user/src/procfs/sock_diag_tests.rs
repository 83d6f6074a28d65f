use std::{
    fs,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    os::unix::{fs::MetadataExt, io::AsRawFd},
    thread,
    time::{Duration, Instant},
};

use proptest::prelude::*;

use super::*;

fn inode_of(stream: &TcpStream) -> u64 {
    fs::metadata(format!("/proc/self/fd/{}", stream.as_raw_fd()))
        .unwrap()
        .ino()
}

/// The dump's row for the socket bound at `local` and connected to `remote`, once `ready` holds
/// (ACKs of the last bytes may still be in flight when the reader returns).
fn row_for(
    local: SocketAddr,
    remote: SocketAddr,
    ready: impl Fn(&TcpInfoRow) -> bool,
) -> TcpInfoRow {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let rows = dump_tcp_info().unwrap();
        let row = rows
            .into_iter()
            .find(|r| r.local == local && r.remote == remote);
        match row {
            Some(row) if ready(&row) || Instant::now() > deadline => return row,
            None if Instant::now() > deadline => panic!("no sock_diag row for {local} -> {remote}"),
            _ => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// A loopback connection on `ip` moving 123,457 bytes client → server and 5,000 back.
fn check_counts_a_loopback_connection(ip: &str) {
    const UP: usize = 123_457;
    const DOWN: usize = 5_000;
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();

    let writer = thread::spawn(move || {
        client.write_all(&vec![b'u'; UP]).unwrap();
        client
    });
    let mut got = vec![0u8; UP];
    server.read_exact(&mut got).unwrap();
    let mut client = writer.join().unwrap();
    server.write_all(&vec![b'd'; DOWN]).unwrap();
    let mut got = vec![0u8; DOWN];
    client.read_exact(&mut got).unwrap();

    let (c_local, s_local) = (client.local_addr().unwrap(), server.local_addr().unwrap());
    let sender = row_for(c_local, s_local, |r| r.counters().tx_bytes == UP as u64);
    assert_eq!(sender.state, TcpState::Established);
    assert_eq!(sender.bytes_received, DOWN as u64);
    assert_eq!(sender.counters().tx_bytes, UP as u64);
    assert_eq!(sender.counters().rx_bytes, DOWN as u64);
    // The connecting end's bytes_acked counts its SYN; the accepting end's does not.
    assert_eq!(sender.bytes_acked, UP as u64 + 1);
    // `bytes_sent` counts retransmitted bytes again (a loaded machine retransmits even on
    // loopback): less them, every byte went out once.
    assert_eq!(sender.bytes_sent - sender.bytes_retrans, UP as u64);
    assert!(sender.segs_in > 0 && sender.segs_out > 0);
    assert_eq!(sender.counters().tx_packets, sender.segs_out);
    assert_eq!(sender.counters().rx_packets, sender.segs_in);
    assert_eq!(sender.inode, inode_of(&client));
    assert_eq!(sender.uid, unsafe { libc::getuid() });
    assert_ne!(sender.cookie, 0);

    let receiver = row_for(s_local, c_local, |r| r.bytes_acked >= DOWN as u64);
    assert_eq!(receiver.bytes_received, UP as u64);
    assert_eq!(receiver.bytes_acked, DOWN as u64);
    assert_eq!(receiver.counters().tx_bytes, DOWN as u64);
    assert_eq!(receiver.counters().rx_bytes, UP as u64);
    assert!(receiver.segs_in > 0 && receiver.segs_out > 0);
    assert_eq!(receiver.inode, inode_of(&server));
    assert_ne!(receiver.cookie, sender.cookie);
}

#[test]
fn counts_a_loopback_connection_v4() {
    check_counts_a_loopback_connection("127.0.0.1");
}

#[test]
fn counts_a_loopback_connection_v6() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    }
    check_counts_a_loopback_connection("::1");
}

/// A synthetic `inet_diag_msg` for 10.0.0.1:80 → 10.0.0.2:40000 with `info` as INET_DIAG_INFO.
fn response(info: Option<&[u8]>) -> Vec<u8> {
    let mut msg = vec![0u8; RESPONSE_LEN];
    msg[0] = AF_INET;
    msg[1] = 1; // ESTABLISHED
    msg[4..6].copy_from_slice(&80u16.to_be_bytes());
    msg[6..8].copy_from_slice(&40000u16.to_be_bytes());
    msg[8..12].copy_from_slice(&[10, 0, 0, 1]);
    msg[24..28].copy_from_slice(&[10, 0, 0, 2]);
    msg[44..48].copy_from_slice(&0x1122_3344u32.to_ne_bytes()); // cookie, low word
    msg[48..52].copy_from_slice(&0x5566_7788u32.to_ne_bytes()); // cookie, high word
    msg[64..68].copy_from_slice(&1000u32.to_ne_bytes()); // uid
    msg[68..72].copy_from_slice(&4242u32.to_ne_bytes()); // inode
    if let Some(info) = info {
        msg.extend_from_slice(&((4 + info.len()) as u16).to_ne_bytes());
        msg.extend_from_slice(&INET_DIAG_INFO.to_ne_bytes());
        msg.extend_from_slice(info);
        msg.resize(msg.len().next_multiple_of(4), 0);
    }
    msg
}

fn tcp_info_bytes(len: usize) -> Vec<u8> {
    let mut info = vec![0u8; 232];
    info[120..128].copy_from_slice(&1001u64.to_ne_bytes());
    info[128..136].copy_from_slice(&2002u64.to_ne_bytes());
    info[136..140].copy_from_slice(&7u32.to_ne_bytes());
    info[140..144].copy_from_slice(&4u32.to_ne_bytes());
    info[200..208].copy_from_slice(&1500u64.to_ne_bytes());
    info[208..216].copy_from_slice(&300u64.to_ne_bytes());
    info.truncate(len);
    info
}

#[test]
fn parses_a_synthetic_response() {
    let row = parse_response(&response(Some(&tcp_info_bytes(232)))).unwrap();
    assert_eq!(
        row,
        TcpInfoRow {
            local: "10.0.0.1:80".parse().unwrap(),
            remote: "10.0.0.2:40000".parse().unwrap(),
            inode: 4242,
            uid: 1000,
            cookie: 0x5566_7788_1122_3344,
            state: TcpState::Established,
            bytes_acked: 1001,
            bytes_received: 2002,
            bytes_sent: 1500,
            bytes_retrans: 300,
            segs_in: 4,
            segs_out: 7,
        }
    );
    assert_eq!(
        row.counters(),
        Counters {
            tx_bytes: 1200,
            rx_bytes: 2002,
            tx_packets: 7,
            rx_packets: 4,
        }
    );
}

#[test]
fn short_or_missing_tcp_info_reads_as_zero() {
    // A 4.1 kernel: bytes_acked and bytes_received, no segment counts, no bytes_sent.
    let row = parse_response(&response(Some(&tcp_info_bytes(136)))).unwrap();
    assert_eq!((row.bytes_acked, row.bytes_received), (1001, 2002));
    assert_eq!((row.segs_in, row.segs_out, row.bytes_sent), (0, 0, 0));
    // Without bytes_sent, tx falls back to bytes_acked less the SYN.
    assert_eq!(row.counters().tx_bytes, 1000);
    // 4.2 to 4.18: segment counts, no bytes_sent/bytes_retrans.
    let row = parse_response(&response(Some(&tcp_info_bytes(200)))).unwrap();
    assert_eq!(
        (row.segs_in, row.segs_out, row.bytes_sent, row.bytes_retrans),
        (4, 7, 0, 0)
    );
    let row = parse_response(&response(Some(&tcp_info_bytes(124)))).unwrap();
    assert_eq!((row.bytes_acked, row.bytes_received), (0, 0));
    let row = parse_response(&response(None)).unwrap();
    assert_eq!(row.counters(), Counters::default());
}

#[test]
fn rejects_short_or_foreign_messages() {
    let full = response(None);
    assert_eq!(parse_response(&full[..RESPONSE_LEN - 1]), None);
    let mut unix = full.clone();
    unix[0] = libc::AF_UNIX as u8;
    assert_eq!(parse_response(&unix), None);
}

#[test]
fn request_is_a_dump_of_tcp_with_info() {
    let bytes = request(&TCP_INFO, AF_INET6, 7);
    assert_eq!(bytes.len(), 16 + 56);
    assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 72);
    assert_eq!(
        u16::from_ne_bytes(bytes[4..6].try_into().unwrap()),
        SOCK_DIAG_BY_FAMILY
    );
    assert_eq!(
        u16::from_ne_bytes(bytes[6..8].try_into().unwrap()),
        NLM_F_REQUEST | NLM_F_DUMP
    );
    assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 7);
    assert_eq!(
        &bytes[16..19],
        &[AF_INET6, IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1)]
    );
    let states = u32::from_ne_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!(states & (1 << 6), 0, "TIME_WAIT has no tcp_info");
    assert_ne!(states & (1 << 1), 0);
}

/// `payload` behind a netlink header.
fn netlink(message_type: u16, sequence: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0u8; 16];
    bytes[0..4].copy_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
    bytes[4..6].copy_from_slice(&message_type.to_ne_bytes());
    bytes[8..12].copy_from_slice(&sequence.to_ne_bytes());
    bytes.extend_from_slice(payload);
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    bytes
}

#[test]
fn reads_datagrams_until_done_or_error() {
    let mut rows = Vec::new();
    let mut datagram = netlink(
        SOCK_DIAG_BY_FAMILY,
        1,
        &response(Some(&tcp_info_bytes(232))),
    );
    datagram.extend(netlink(SOCK_DIAG_BY_FAMILY, 9, &response(None))); // another request's
    datagram.extend(netlink(SOCK_DIAG_BY_FAMILY, 1, &[0u8; 10])); // too short: skipped
    assert!(!read_datagram(&datagram, 1, parse_response, &mut rows).unwrap());
    assert_eq!(rows.len(), 1);
    assert!(read_datagram(
        &netlink(NLMSG_DONE, 1, &0i32.to_ne_bytes()),
        1,
        parse_response,
        &mut rows
    )
    .unwrap());
    let denied = netlink(NLMSG_ERROR, 1, &(-libc::EPERM).to_ne_bytes());
    let err = read_datagram(&denied, 1, parse_response, &mut rows).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    assert!(read_datagram(&[1, 2, 3], 1, parse_response, &mut rows).is_err());
}

proptest! {
    #[test]
    fn arbitrary_messages_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_response(&bytes);
        let mut rows = Vec::new();
        let _ = read_datagram(&bytes, 1, parse_response, &mut rows);
        let _ = read_datagram(&netlink(SOCK_DIAG_BY_FAMILY, 1, &bytes), 1, parse_response, &mut rows);
    }

    #[test]
    fn truncated_responses_never_panic(cut in 0usize..400) {
        let full = response(Some(&tcp_info_bytes(232)));
        let cut = cut.min(full.len());
        let _ = parse_response(&full[..cut]);
    }
}
