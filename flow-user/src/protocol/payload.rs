//! What the first bytes of a message say: the protocol, and for HTTP the request line's method,
//! the Host value and the status code; the server name of a TLS ClientHello or QUIC Initial; the
//! addresses a DNS response gave for the name asked. Nothing else leaves this module: no other
//! header value, no body, no other DNS or TLS content is kept.

use super::{dns, quic, tls};
use crate::model::Protocol;

/// What one message prefix told.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PayloadFacts {
    /// `None`: the bytes do not identify a protocol.
    pub protocol: Option<Protocol>,
    pub http: Option<HttpMessage>,
    /// A `220` greeting that names neither SMTP nor FTP: the port decides between them.
    pub greeting_220: bool,
    /// The server name (SNI) of a TLS ClientHello, or of the ClientHello in a QUIC Initial.
    pub tls_server_name: Option<String>,
    /// A DNS response's A/AAAA answers: address, the name asked (CNAMEs followed back), TTL.
    pub dns_answers: Vec<dns::DnsAnswer>,
}

/// The parts of an HTTP/1.x message `flow` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpMessage {
    Request {
        method: String,
        /// The Host header's value, or the authority of an absolute-form target.
        host: Option<String>,
    },
    Response {
        status_code: u16,
    },
}

/// Classifies a message prefix of a TCP stream (at most a few hundred bytes; may be cut
/// anywhere).
pub fn classify(bytes: &[u8]) -> PayloadFacts {
    if let Some(http) = http_message(bytes) {
        return PayloadFacts {
            protocol: Some(Protocol::Http),
            http: Some(http),
            ..PayloadFacts::default()
        };
    }
    if is_tls_handshake(bytes) {
        return PayloadFacts {
            protocol: Some(Protocol::Https),
            tls_server_name: tls::client_hello_sni(bytes),
            ..PayloadFacts::default()
        };
    }
    let protocol = if bytes.starts_with(b"SSH-") {
        Some(Protocol::Ssh)
    } else if bytes.starts_with(b"220 ") || bytes.starts_with(b"220-") {
        return greeting(bytes);
    } else if starts_with_word(bytes, &[b"EHLO ", b"HELO "]) {
        Some(Protocol::Smtp)
    } else if starts_with_word(bytes, &[b"USER ", b"AUTH TLS"]) {
        Some(Protocol::Ftp)
    } else if is_dns_over_tcp(bytes) || dns::looks_like_dns_over_tcp(bytes) {
        return PayloadFacts {
            protocol: Some(Protocol::Dns),
            dns_answers: dns::answers_over_tcp(bytes),
            ..PayloadFacts::default()
        };
    } else {
        None
    };
    PayloadFacts {
        protocol,
        ..PayloadFacts::default()
    }
}

/// Classifies a UDP datagram's payload (or a prefix of it): a QUIC v1/v2 long-header packet
/// (with the SNI of a client Initial when the whole packet is there), or a DNS message (with a
/// response's answers), on any port. `None` otherwise: the port decides.
pub fn classify_datagram(bytes: &[u8]) -> PayloadFacts {
    if quic::is_quic_long_header(bytes) {
        return PayloadFacts {
            protocol: Some(Protocol::Quic),
            tls_server_name: quic::initial_sni(bytes),
            ..PayloadFacts::default()
        };
    }
    if dns::looks_like_dns(bytes) {
        return PayloadFacts {
            protocol: Some(Protocol::Dns),
            dns_answers: dns::answers(bytes),
            ..PayloadFacts::default()
        };
    }
    PayloadFacts::default()
}

/// Resolves a `220` greeting that named neither protocol by the connection's ports.
pub fn resolve_greeting(facts: &PayloadFacts, by_port: Protocol) -> Option<Protocol> {
    if facts.greeting_220 && matches!(by_port, Protocol::Ftp | Protocol::Smtp) {
        Some(by_port)
    } else {
        facts.protocol
    }
}

fn http_message(bytes: &[u8]) -> Option<HttpMessage> {
    if bytes.starts_with(b"HTTP/1.") {
        let mut headers = [httparse::EMPTY_HEADER; 0];
        let mut response = httparse::Response::new(&mut headers);
        // A prefix may hold more headers than the (empty) array: the status line is parsed first.
        let _ = response.parse(bytes);
        return response
            .code
            .map(|status_code| HttpMessage::Response { status_code });
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let parsed = request.parse(bytes);
    let method = request.method?;
    let version_seen = request.version.is_some();
    if !version_seen && parsed.is_err() {
        return None;
    }
    let host = request
        .headers
        .iter()
        .take_while(|h| !h.name.is_empty())
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(|v| v.trim().to_string())
        .or_else(|| request.path.and_then(authority));
    Some(HttpMessage::Request {
        method: method.to_string(),
        host,
    })
}

/// `http://example.test:8080/x` → `example.test:8080`.
fn authority(target: &str) -> Option<String> {
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    (!authority.is_empty()).then(|| authority.to_string())
}

/// A TLS record of type handshake (0x16) with a TLS/SSL 3.x version.
fn is_tls_handshake(bytes: &[u8]) -> bool {
    matches!(bytes, [0x16, 0x03, minor, ..] if *minor <= 0x04)
}

fn greeting(bytes: &[u8]) -> PayloadFacts {
    let line_end = bytes
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(bytes.len());
    let line = String::from_utf8_lossy(&bytes[..line_end]).to_ascii_uppercase();
    let protocol = if line.contains("SMTP") || line.contains("MAIL") {
        Some(Protocol::Smtp)
    } else if line.contains("FTP") {
        Some(Protocol::Ftp)
    } else {
        None
    };
    PayloadFacts {
        protocol,
        greeting_220: protocol.is_none(),
        ..PayloadFacts::default()
    }
}

fn starts_with_word(bytes: &[u8], words: &[&[u8]]) -> bool {
    words
        .iter()
        .any(|w| bytes.len() >= w.len() && bytes[..w.len()].eq_ignore_ascii_case(w))
}

/// A DNS message behind TCP's two-byte length: a plausible header with one to a few questions.
fn is_dns_over_tcp(bytes: &[u8]) -> bool {
    if bytes.len() < 14 {
        return false;
    }
    let length = u16::from_be_bytes([bytes[0], bytes[1]]) as usize;
    let header = &bytes[2..14];
    let opcode = (header[2] >> 3) & 0x0f;
    let z = header[3] & 0x40;
    let questions = u16::from_be_bytes([header[4], header[5]]);
    let answers = u16::from_be_bytes([header[6], header[7]]);
    length >= 12
        && (bytes.len() >= length + 2 || bytes.len() >= 256 || length + 2 >= bytes.len())
        && opcode <= 2
        && z == 0
        && (1..=4).contains(&questions)
        && answers <= 256
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
