//! Server names past the payload prefix, read by the real kernel program from real loopback
//! sockets: a TLS ClientHello is copied whole (up to 2 KiB) whatever `--payload-bytes` says — a
//! synthetic one with its server_name after 1.6 KiB of other extensions, and `openssl s_client`'s
//! (ML-KEM key share from OpenSSL 3.5) — and QUIC Initial datagrams are copied whole, decrypted
//! in userspace, their server name the UDP flow's (aioquic's own Initial, and a Chrome-shaped one
//! whose name sits in the second datagram). With payload capture off, no names.

mod support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use flow_user::{
    ebpf::LoadOptions,
    model::{ProtocolSource, Transport},
    ConnectionBandwidth, ModeChoice, Monitor, MonitorOptions, Protocol,
};
use support::{addrs, tool, HelloShape, QuicClient, TlsServer, QUIC_V1, QUIC_V2};

fn monitor(payload_bytes: u32) -> Option<Monitor> {
    if !support::may_load() {
        return None;
    }
    let options = MonitorOptions {
        mode: ModeChoice::Ebpf,
        load: LoadOptions {
            payload_bytes,
            ..support::options()
        },
        ..MonitorOptions::default()
    };
    Some(Monitor::open(&options).expect("the kernel program must load here"))
}

/// The one row with these ends (there must be exactly one).
fn row(
    rows: &[ConnectionBandwidth],
    local: SocketAddr,
    remote: SocketAddr,
) -> &ConnectionBandwidth {
    let matching: Vec<_> = rows
        .iter()
        .filter(|b| b.connection.local == local && b.connection.remote == remote)
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "expected one row for {local} -> {remote}, got {matching:#?}"
    );
    matching[0]
}

fn extension(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// A TLS ClientHello record, Chrome-like: a GREASE extension, a 1,216-byte key share and a
/// padding extension — `before` bytes of extensions in all — then server_name, then ALPN.
fn client_hello(name: &str, before: usize) -> Vec<u8> {
    let mut extensions = Vec::new();
    extension(&mut extensions, 0x0a0a, &[]);
    let mut key_share = vec![0x04, 0xc4, 0x11, 0xec, 0x04, 0xc0];
    key_share.extend(vec![0x5a; 1_216]);
    extension(&mut extensions, 0x0033, &key_share);
    let padding = before - extensions.len() - 4;
    extension(&mut extensions, 0x0015, &vec![0; padding]);
    assert_eq!(extensions.len(), before);
    let mut server_name = vec![0u8];
    server_name.extend_from_slice(&(name.len() as u16).to_be_bytes());
    server_name.extend_from_slice(name.as_bytes());
    let mut list = (server_name.len() as u16).to_be_bytes().to_vec();
    list.extend(server_name);
    extension(&mut extensions, 0x0000, &list);
    extension(&mut extensions, 0x0010, b"\x00\x03\x02h2");
    let mut body = vec![0x03, 0x03];
    body.extend([0x42; 32]); // random
    body.push(32);
    body.extend([0x17; 32]); // session id
    body.extend_from_slice(&[0x00, 0x06, 0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0x01, 0x00]);
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend(extensions);
    let mut handshake = vec![0x01];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// A real TCP client sends `hello` in one write to a plain listener, which reads it whole; the
/// rows of both ends once the monitor saw it.
fn send_hello(monitor: &mut Monitor, hello: &[u8]) -> (ConnectionBandwidth, ConnectionBandwidth) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    monitor.step().unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(hello).unwrap();
    let mut got = vec![0u8; hello.len()];
    server.read_exact(&mut got).unwrap();
    thread::sleep(Duration::from_millis(200));
    let rows = monitor.step().unwrap();
    let (local, remote) = addrs(&client);
    (
        row(&rows, local, remote).clone(),
        row(&rows, remote, local).clone(),
    )
}

#[test]
fn a_client_hello_named_past_1500_bytes_of_extensions() {
    let Some(mut monitor) = monitor(256) else {
        return;
    };
    let hello = client_hello("far.flowtest.test", 1_600);
    assert!(
        hello.len() > 1_700 && hello.len() <= 2_048,
        "{}",
        hello.len()
    );
    let (client, server) = send_hello(&mut monitor, &hello);
    for (end, row) in [("client", &client), ("server", &server)] {
        assert_eq!(
            row.connection.tls_server_name.as_deref(),
            Some("far.flowtest.test"),
            "{end} end: {row:#?}"
        );
        assert_eq!(row.connection.protocol, Protocol::Https, "{end} end");
        assert_eq!(row.connection.protocol_source, ProtocolSource::Payload);
    }
    eprintln!("synthetic ClientHello record: {} bytes", hello.len());

    // The copy is bounded at 2 KiB: a name that starts past it is not read, the protocol is.
    let hello = client_hello("beyond.flowtest.test", 2_100);
    let (client, _) = send_hello(&mut monitor, &hello);
    assert_eq!(client.connection.tls_server_name, None, "{client:#?}");
    assert_eq!(client.connection.protocol, Protocol::Https);
}

/// `openssl version` as (major, minor).
fn openssl_version(openssl: &str) -> (u32, u32) {
    let out = Command::new(openssl).arg("version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut numbers = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split('.')
        .map(|n| n.parse().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0))
}

/// The ClientHello handshake message's length, from `s_client -msg` (`>>> … [length 05c6],
/// ClientHello`).
fn client_hello_length(msg: &str) -> Option<usize> {
    msg.lines()
        .find(|line| line.starts_with(">>>") && line.contains("ClientHello"))
        .and_then(|line| line.split("[length ").nth(1))
        .and_then(|rest| usize::from_str_radix(rest.get(..4)?, 16).ok())
}

/// `openssl s_client -servername` against a real TLS server, with `--payload-bytes 16`: far too
/// few for the name, so only the whole-ClientHello copy can give it. From OpenSSL 3.5 the hello
/// carries an ML-KEM key share and is over 1 KiB.
#[test]
fn openssl_client_hello_named_with_a_16_byte_prefix() {
    const TEST: &str = "openssl_client_hello_named_with_a_16_byte_prefix";
    let Some(openssl) = tool("openssl", TEST) else {
        return;
    };
    let Some(mut monitor) = monitor(16) else {
        return;
    };
    let server = TlsServer::start(openssl, "pq.flowtest.test");
    let port = server.port;
    // The probe is dropped at once: s_server serves one connection at a time.
    let up = support::wait_for(Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .is_some();
    assert!(up, "s_server did not listen on {port}");
    // A row shows a connection that moved bytes since the previous step.
    monitor.step().unwrap();
    let mut client = Command::new(openssl)
        .args(["s_client", "-msg", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "pq.flowtest.test"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut found = None;
    while found.is_none() && start.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(200));
        found =
            monitor.step().unwrap().into_iter().find(|r| {
                r.connection.remote.port() == port && r.connection.tls_server_name.is_some()
            });
    }
    let _ = client.kill();
    let mut msg = String::new();
    client
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut msg)
        .unwrap();
    let _ = client.wait();
    drop(server);
    let found = found.expect("the s_client connection was named");
    assert_eq!(
        found.connection.tls_server_name.as_deref(),
        Some("pq.flowtest.test")
    );
    assert_eq!(found.connection.protocol, Protocol::Https);
    let length = client_hello_length(&msg).expect("s_client -msg shows its ClientHello");
    let version = openssl_version(openssl);
    eprintln!("OpenSSL {version:?}: ClientHello handshake message of {length} bytes");
    if version >= (3, 5) {
        assert!(length > 1_024, "an ML-KEM key share makes it > 1 KiB");
    }
}

/// Sends one aioquic first flight to a UDP socket on a non-443 port; the rows of both ends.
fn quic_flight(
    monitor: &mut Monitor,
    name: &str,
    version: u32,
    shape: HelloShape,
) -> (ConnectionBandwidth, ConnectionBandwidth, Vec<usize>) {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let at = server.local_addr().unwrap();
    assert_ne!(at.port(), 443);
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    monitor.step().unwrap();
    let client = QuicClient::send(at.port(), name, version, shape);
    let mut buffer = vec![0u8; 4_096];
    for size in &client.sizes {
        assert_eq!(server.recv_from(&mut buffer).unwrap().0, *size);
    }
    let rows = monitor.step().unwrap();
    let sizes = client.sizes.clone();
    (
        row(&rows, client.local, at).clone(),
        row(&rows, at, client.local).clone(),
        sizes,
    )
}

#[test]
fn quic_initials_give_the_udp_flow_its_server_name() {
    let Some(mut monitor) = monitor(256) else {
        return;
    };
    for (version, shape, datagrams) in [
        (QUIC_V1, HelloShape::Plain, 1),
        (QUIC_V2, HelloShape::Plain, 1),
        (QUIC_V1, HelloShape::PostQuantum, 2),
        (QUIC_V2, HelloShape::PostQuantum, 2),
    ] {
        let what = format!("QUIC {version:#x}, {shape:?} ClientHello");
        let (client, server, sizes) = quic_flight(&mut monitor, "h3.flowtest.test", version, shape);
        assert_eq!(sizes.len(), datagrams, "{what}: datagrams {sizes:?}");
        for (end, row) in [("client", &client), ("server", &server)] {
            assert_eq!(row.connection.transport, Transport::Udp, "{what}, {end}");
            assert_eq!(row.connection.protocol, Protocol::Quic, "{what}, {end}");
            assert_eq!(
                row.connection.tls_server_name.as_deref(),
                Some("h3.flowtest.test"),
                "{what}, {end} end: {row:#?}"
            );
        }
        let total: usize = sizes.iter().sum();
        assert_eq!(client.tx_bytes, total as u64, "{what}");
        assert_eq!(server.rx_bytes, total as u64, "{what}");
        eprintln!("{what}: Initial datagrams of {sizes:?} bytes named");
    }
}

#[test]
fn without_payload_capture_no_names() {
    let Some(mut monitor) = monitor(0) else {
        return;
    };
    let hello = client_hello("off.flowtest.test", 1_600);
    let (client, server) = send_hello(&mut monitor, &hello);
    for row in [&client, &server] {
        assert_eq!(row.connection.tls_server_name, None, "{row:#?}");
        assert_eq!(row.connection.protocol_source, ProtocolSource::Port);
    }
    let (client, server, _) = quic_flight(
        &mut monitor,
        "off.flowtest.test",
        QUIC_V1,
        HelloShape::PostQuantum,
    );
    for row in [&client, &server] {
        assert_eq!(row.connection.tls_server_name, None, "{row:#?}");
        assert_eq!(row.connection.protocol, Protocol::Unknown, "{row:#?}");
    }
}
