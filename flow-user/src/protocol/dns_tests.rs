use proptest::prelude::*;

use super::*;

fn name(n: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in n.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn header(flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    let mut out = vec![0x12, 0x34];
    for v in [flags, qd, an, ns, ar] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

fn record(owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
    let mut out = owner.to_vec();
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
    out
}

fn query(qname: &str, qtype: u16) -> Vec<u8> {
    let mut msg = header(0x0100, 1, 0, 0, 0);
    msg.extend(name(qname));
    msg.extend_from_slice(&qtype.to_be_bytes());
    msg.extend_from_slice(&1u16.to_be_bytes());
    msg
}

/// A response as resolvers write it: the question at 12, later names as pointers to it.
/// `www.example.com CNAME x.cdn.net; x.cdn.net A 1.2.3.4; x.cdn.net A 1.2.3.5`.
fn cname_response() -> Vec<u8> {
    let mut msg = header(0x8180, 1, 3, 0, 0);
    msg.extend(name("www.Example.com"));
    msg.extend_from_slice(&[0, 1, 0, 1]);
    // CNAME at offset 33; its target x.cdn.net written out at offset 45.
    let target_at = msg.len() + 12;
    msg.extend(record(&[0xc0, 12], TYPE_CNAME, 300, &name("x.cdn.net")));
    let target = [0xc0 | (target_at >> 8) as u8, target_at as u8];
    msg.extend(record(&target, TYPE_A, 60, &[1, 2, 3, 4]));
    msg.extend(record(&target, TYPE_A, 600, &[1, 2, 3, 5]));
    msg
}

#[test]
fn a_query_is_dns_over_udp_and_tcp() {
    let q = query("example.test", TYPE_A);
    assert!(looks_like_dns(&q));
    let mut tcp = (q.len() as u16).to_be_bytes().to_vec();
    tcp.extend(&q);
    assert!(looks_like_dns_over_tcp(&tcp));
    assert!(
        !looks_like_dns(&tcp),
        "the length prefix is not a DNS header"
    );
    assert!(answers(&q).is_empty(), "a query answers nothing");
}

#[test]
fn cname_chain_maps_addresses_to_the_asked_name() {
    let msg = cname_response();
    assert!(looks_like_dns(&msg));
    let got = answers(&msg);
    assert_eq!(
        got,
        vec![
            ("1.2.3.4".parse().unwrap(), "www.example.com".into(), 60),
            // The CNAME's TTL bounds the mapping.
            ("1.2.3.5".parse().unwrap(), "www.example.com".into(), 300),
        ]
    );
    let mut tcp = (msg.len() as u16).to_be_bytes().to_vec();
    tcp.extend(&msg);
    assert!(looks_like_dns_over_tcp(&tcp));
    assert_eq!(answers_over_tcp(&tcp), got);
}

#[test]
fn longer_chains_aaaa_and_case() {
    let mut msg = header(0x8180, 1, 4, 0, 1);
    msg.extend(name("a.test"));
    msg.extend_from_slice(&[0, 28, 0, 1]);
    msg.extend(record(&name("A.TEST"), TYPE_CNAME, 100, &name("b.test")));
    msg.extend(record(&name("b.test"), TYPE_CNAME, 50, &name("C.test")));
    let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    msg.extend(record(&name("c.test"), TYPE_AAAA, 70, &v6.octets()));
    // An address for a name the chain does not reach is not the asked name's.
    msg.extend(record(&name("other.test"), TYPE_A, 70, &[9, 9, 9, 9]));
    // EDNS OPT in the additional section (class = UDP size).
    let mut opt = vec![0];
    opt.extend_from_slice(&TYPE_OPT.to_be_bytes());
    opt.extend_from_slice(&[0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    msg.extend(opt);
    assert!(looks_like_dns(&msg));
    assert_eq!(answers(&msg), vec![(IpAddr::V6(v6), "a.test".into(), 50)]);
}

#[test]
fn cname_loops_end() {
    let mut msg = header(0x8180, 1, 3, 0, 0);
    msg.extend(name("a.test"));
    msg.extend_from_slice(&[0, 1, 0, 1]);
    msg.extend(record(&name("a.test"), TYPE_CNAME, 100, &name("b.test")));
    msg.extend(record(&name("b.test"), TYPE_CNAME, 100, &name("a.test")));
    msg.extend(record(&name("b.test"), TYPE_A, 100, &[10, 0, 0, 1]));
    assert_eq!(
        answers(&msg),
        vec![("10.0.0.1".parse().unwrap(), "a.test".into(), 100)]
    );
}

#[test]
fn compression_pointer_loops_and_forward_pointers_are_rejected() {
    // Question name is a pointer to itself.
    let mut msg = header(0x0100, 1, 0, 0, 0);
    msg.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert!(!looks_like_dns(&msg));
    // Two answers pointing at each other.
    let mut msg = header(0x8180, 1, 2, 0, 0);
    msg.extend(name("a.test"));
    msg.extend_from_slice(&[0, 1, 0, 1]);
    let first = msg.len();
    msg.extend(record(
        &[0xc0, (first + 16) as u8],
        TYPE_A,
        1,
        &[1, 1, 1, 1],
    ));
    msg.extend(record(&[0xc0, first as u8], TYPE_A, 1, &[1, 1, 1, 1]));
    assert!(!looks_like_dns(&msg));
    assert!(answers(&msg).is_empty());
    // A label run that ends in a pointer back into itself.
    let mut msg = header(0x8180, 1, 1, 0, 0);
    msg.extend(name("a.test"));
    msg.extend_from_slice(&[0, 1, 0, 1]);
    let at = msg.len();
    msg.extend_from_slice(&[1, b'x', 0xc0, at as u8]);
    msg.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 1, 1, 1]);
    assert!(!looks_like_dns(&msg));
    assert!(answers(&msg).is_empty());
}

#[test]
fn a_cut_response_keeps_the_answers_before_the_cut() {
    let msg = cname_response();
    let cut = &msg[..msg.len() - 3];
    assert!(looks_like_dns(cut));
    assert_eq!(
        answers(cut),
        vec![("1.2.3.4".parse().unwrap(), "www.example.com".into(), 60)]
    );
    // Cut inside the question: too little to call it DNS.
    assert!(!looks_like_dns(&msg[..20]));
    assert!(answers(&msg[..20]).is_empty());
}

#[test]
fn errors_and_non_dns_give_nothing() {
    let mut nx = cname_response();
    nx[3] = 0x83; // NXDOMAIN
    assert!(answers(&nx).is_empty());
    for junk in [
        &b""[..],
        b"hello world, nothing known here",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &[0u8; 64],
        &[0xffu8; 64],
    ] {
        assert!(!looks_like_dns(junk), "{junk:?}");
        assert!(!looks_like_dns_over_tcp(junk), "{junk:?}");
        assert!(answers(junk).is_empty());
    }
    // A query that claims answers, or a bad A length, is not a plausible query / answer.
    let mut q = query("example.test", TYPE_A);
    q[7] = 1;
    assert!(!looks_like_dns(&q));
    let mut bad = header(0x8180, 1, 1, 0, 0);
    bad.extend(name("a.test"));
    bad.extend_from_slice(&[0, 1, 0, 1]);
    bad.extend(record(&name("a.test"), TYPE_A, 1, &[1, 2, 3]));
    assert!(answers(&bad).is_empty());
    // Control bytes in a label.
    let mut ctl = header(0x0100, 1, 0, 0, 0);
    ctl.extend_from_slice(&[3, b'a', 0x07, b'b', 0, 0, 1, 0, 1]);
    assert!(!looks_like_dns(&ctl));
}

#[test]
fn tcp_length_must_hold_the_counted_records() {
    let msg = cname_response();
    let mut tcp = 20u16.to_be_bytes().to_vec();
    tcp.extend(&msg);
    assert!(!looks_like_dns_over_tcp(&tcp));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        let _ = looks_like_dns(&bytes);
        let _ = looks_like_dns_over_tcp(&bytes);
        let _ = answers(&bytes);
        let _ = answers_over_tcp(&bytes);
    }

    #[test]
    fn mutated_responses_never_panic(
        at in 0usize..80, value in any::<u8>(), cut in 0usize..80,
    ) {
        let mut msg = cname_response();
        let len = msg.len();
        msg[at % len] = value;
        msg.truncate(len - cut % len);
        let _ = looks_like_dns(&msg);
        let got = answers(&msg);
        prop_assert!(got.len() <= 2);
    }
}
