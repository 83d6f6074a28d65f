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

proptest! {
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
