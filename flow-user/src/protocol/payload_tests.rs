use proptest::prelude::*;

use super::*;

#[test]
fn http_request_gives_method_and_host_only() {
    let facts = classify(
        b"GET /index.html HTTP/1.1\r\nHost: example.test\r\nAuthorization: Bearer s3cr3t\r\n\r\nbody",
    );
    assert_eq!(facts.protocol, Some(Protocol::Http));
    assert_eq!(
        facts.http,
        Some(HttpMessage::Request {
            method: "GET".into(),
            host: Some("example.test".into())
        })
    );
    assert!(!format!("{facts:?}").contains("s3cr3t"));
}

#[test]
fn http_request_cut_before_host_and_absolute_form() {
    let facts = classify(b"HEAD /missing HTTP/1.1\r\nUser-Ag");
    assert_eq!(
        facts.http,
        Some(HttpMessage::Request {
            method: "HEAD".into(),
            host: None
        })
    );
    let facts = classify(b"GET http://proxy.test:3128/x HTTP/1.1\r\n\r\n");
    assert_eq!(
        facts.http,
        Some(HttpMessage::Request {
            method: "GET".into(),
            host: Some("proxy.test:3128".into())
        })
    );
}

#[test]
fn http_response_gives_status() {
    let facts = classify(b"HTTP/1.0 404 File not found\r\nServer: SimpleHTTP/0.6\r\n");
    assert_eq!(facts.http, Some(HttpMessage::Response { status_code: 404 }));
    assert_eq!(facts.protocol, Some(Protocol::Http));
}

#[test]
fn other_protocols() {
    assert_eq!(
        classify(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).protocol,
        Some(Protocol::Https)
    );
    assert_eq!(
        classify(b"SSH-2.0-OpenSSH_9.2\r\n").protocol,
        Some(Protocol::Ssh)
    );
    assert_eq!(
        classify(b"220 mail.test ESMTP Postfix\r\n").protocol,
        Some(Protocol::Smtp)
    );
    assert_eq!(
        classify(b"220 (vsFTPd 3.0.3)\r\n").protocol,
        Some(Protocol::Ftp)
    );
    assert_eq!(
        classify(b"EHLO client.test\r\n").protocol,
        Some(Protocol::Smtp)
    );
    let plain = classify(b"220 welcome\r\n");
    assert_eq!(plain.protocol, None);
    assert_eq!(resolve_greeting(&plain, Protocol::Ftp), Some(Protocol::Ftp));
    assert_eq!(resolve_greeting(&plain, Protocol::Unknown), None);
    // A DNS query for example.test, A, behind its TCP length prefix.
    let query: &[u8] = b"\x00\x1e\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x04test\x00\x00\x01\x00\x01";
    assert_eq!(classify(query).protocol, Some(Protocol::Dns));
    assert_eq!(classify(b"hello world, nothing known").protocol, None);
    assert_eq!(classify(b"").protocol, None);
}

/// A DNS response for `www.example.test`: CNAME `edge.cdn.test`, which has A 192.0.2.80.
const DNS_RESPONSE: &[u8] = b"\x12\x34\x81\x80\x00\x01\x00\x02\x00\x00\x00\x00\
    \x03www\x07example\x04test\x00\x00\x01\x00\x01\
    \xc0\x0c\x00\x05\x00\x01\x00\x00\x01\x2c\x00\x0b\x04edge\x03cdn\xc0\x18\
    \xc0\x2e\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x50";

fn dns_answer() -> Vec<crate::protocol::dns::DnsAnswer> {
    vec![("192.0.2.80".parse().unwrap(), "www.example.test".into(), 60)]
}

#[test]
fn dns_over_udp_and_tcp_gives_the_answers_only() {
    let facts = classify_datagram(DNS_RESPONSE);
    assert_eq!(facts.protocol, Some(Protocol::Dns));
    assert_eq!(facts.dns_answers, dns_answer());
    assert!(
        !format!("{facts:?}").contains("cdn"),
        "the CNAME target is not kept"
    );
    let mut tcp = (DNS_RESPONSE.len() as u16).to_be_bytes().to_vec();
    tcp.extend_from_slice(DNS_RESPONSE);
    let facts = classify(&tcp);
    assert_eq!(facts.protocol, Some(Protocol::Dns));
    assert_eq!(facts.dns_answers, dns_answer());
    // A query over UDP, any port.
    let query: &[u8] =
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x04test\x00\x00\x01\x00\x01";
    let facts = classify_datagram(query);
    assert_eq!(facts.protocol, Some(Protocol::Dns));
    assert!(facts.dns_answers.is_empty());
}

#[test]
fn tls_client_hello_gives_its_server_name() {
    // ClientHello: version, random, no session id, one suite, null compression, SNI only.
    let mut body = vec![3, 3];
    body.extend([9u8; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    let name = b"tls.flowtest.test";
    let mut sni = vec![
        0,
        0,
        0,
        (name.len() + 5) as u8,
        0,
        (name.len() + 3) as u8,
        0,
        0,
    ];
    sni.push(name.len() as u8);
    sni.extend_from_slice(name);
    let mut alpn = vec![0, 0x10, 0, 11, 0, 9, 8];
    alpn.extend_from_slice(b"http/1.1");
    let extensions = [alpn, sni].concat();
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend(extensions);
    let mut record = vec![0x16, 3, 1];
    record.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    record.extend_from_slice(&[1, 0]);
    record.extend_from_slice(&(body.len() as u16).to_be_bytes());
    record.extend(body);
    let facts = classify(&record);
    assert_eq!(facts.protocol, Some(Protocol::Https));
    assert_eq!(facts.tls_server_name.as_deref(), Some("tls.flowtest.test"));
    assert!(
        !format!("{facts:?}").contains("http/1.1"),
        "nothing else of it is kept"
    );
    // A ServerHello or a cut record is still HTTPS, without a name.
    assert_eq!(classify(&record[..30]).tls_server_name, None);
    assert_eq!(classify(&record[..30]).protocol, Some(Protocol::Https));
}

#[test]
fn quic_initial_on_any_port_is_quic_with_its_server_name() {
    let hex: Vec<u8> = include_str!("testdata/rfc9001_a2_client_initial.hex")
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .collect();
    let packet: Vec<u8> = hex
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect();
    let facts = classify_datagram(&packet);
    assert_eq!(facts.protocol, Some(Protocol::Quic));
    assert_eq!(facts.tls_server_name.as_deref(), Some("example.com"));
    // The kernel's default 256-byte prefix: QUIC, but the packet cannot be opened.
    let facts = classify_datagram(&packet[..256]);
    assert_eq!(facts.protocol, Some(Protocol::Quic));
    assert_eq!(facts.tls_server_name, None);
    assert_eq!(Protocol::Quic.to_string(), "QUIC");
    assert_eq!("quic".parse::<Protocol>(), Ok(Protocol::Quic));
}

#[test]
fn other_datagrams_are_unknown() {
    for bytes in [
        &b""[..],
        b"hello",
        &[0u8; 100],
        b"\x40\x01\x02\x03 short header",
    ] {
        assert_eq!(classify_datagram(bytes), PayloadFacts::default());
    }
    // Other UDP protocols' first packets: NTP client, STUN binding request, WireGuard initiation.
    let mut ntp = vec![0x23];
    ntp.extend([0u8; 47]);
    let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    stun.extend([0x5c; 12]);
    let mut wireguard = vec![0x01, 0x00, 0x00, 0x00, 0x8f, 0x3a, 0x01, 0x00];
    wireguard.extend((0..140).map(|i| (i * 37 % 251) as u8));
    for bytes in [ntp, stun, wireguard] {
        assert_eq!(classify_datagram(&bytes).protocol, None, "{bytes:02x?}");
    }
}

proptest! {
    #[test]
    fn arbitrary_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let _ = classify_datagram(&bytes);
    }

    #[test]
    fn arbitrary_prefixes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = classify(&bytes);
    }

    #[test]
    fn arbitrary_text_after_a_method_never_panics(tail in ".{0,300}") {
        let _ = classify(format!("GET {tail}").as_bytes());
        let _ = classify(format!("HTTP/1.1 {tail}").as_bytes());
    }
}
