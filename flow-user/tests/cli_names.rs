//! Who is at the other end: the SNI of a TLS ClientHello (`openssl s_client -servername`), of a
//! QUIC Initial (aioquic, Chrome-shaped: the name in its second datagram) and the name a DNS
//! answer gave the remote address (dnsmasq answering `dig +tcp`), all read from what the kernel
//! program captures; `--no-payload` shows none.

mod support;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream, UdpSocket},
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use serde_json::Value;
use support::{
    flow, privileged, tool, wait_for, Dnsmasq, HelloShape, QuicClient, Running, TlsServer, QUIC_V1,
};

fn rows(running: &mut Running) -> Vec<Value> {
    let done = wait_for(Duration::from_secs(30), || {
        running.child.try_wait().ok().flatten()
    });
    assert!(done.is_some_and(|s| s.success()), "{}", running.stderr());
    serde_json::from_str::<Value>(&running.stdout())
        .expect("flow printed JSON")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn tls_server_name_from_the_client_hello() {
    const TEST: &str = "tls_server_name_from_the_client_hello";
    if !privileged(TEST) {
        return;
    }
    let Some(openssl) = tool("openssl", TEST) else {
        return;
    };
    let server = TlsServer::start(openssl, "sni.flowtest.test");
    let port = server.port;
    assert!(wait_for(Duration::from_secs(10), || TcpStream::connect((
        "127.0.0.1",
        port
    ))
    .ok())
    .is_some());

    let watch = |extra: &[&str]| {
        let port = port.to_string();
        let mut args = vec!["bandwidth", "--json", "--window", "3s", "--port", &port];
        args.extend(extra);
        Running::spawn(flow().args(&args))
    };
    for no_payload in [false, true] {
        let mut running = watch(if no_payload { &["--no-payload"] } else { &[] });
        thread::sleep(Duration::from_millis(800));
        let mut client = Command::new(openssl)
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args(["-servername", "sni.flowtest.test"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        thread::sleep(Duration::from_millis(800));
        let _ = client.stdin.take().map(|mut s| s.write_all(b"hello\n"));
        thread::sleep(Duration::from_millis(300));
        let _ = client.kill();
        let _ = client.wait();
        let rows = rows(&mut running);
        let client_end = rows
            .iter()
            .find(|r| r["connection"]["remote"].as_str() == Some(&format!("127.0.0.1:{port}")))
            .unwrap_or_else(|| panic!("no row for the client end: {rows:#?}"));
        let sni = &client_end["connection"]["tls_server_name"];
        if no_payload {
            assert_eq!(sni, &Value::Null, "--no-payload keeps no names");
        } else {
            assert_eq!(sni, "sni.flowtest.test", "{client_end:#}");
            assert_eq!(client_end["connection"]["protocol"], "HTTPS");
        }
    }
}

#[test]
fn quic_server_name_from_the_initials() {
    const TEST: &str = "quic_server_name_from_the_initials";
    if !privileged(TEST) {
        return;
    }
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let port = server.local_addr().unwrap().port();
    for no_payload in [false, true] {
        let port_arg = port.to_string();
        let mut args = vec!["bandwidth", "--json", "--window", "3s", "--port", &port_arg];
        if no_payload {
            args.push("--no-payload");
        }
        let mut running = Running::spawn(flow().args(&args));
        thread::sleep(Duration::from_millis(800));
        let client = QuicClient::send(port, "h3.flowtest.test", QUIC_V1, HelloShape::PostQuantum);
        let mut buffer = [0u8; 4_096];
        for _ in &client.sizes {
            server.recv_from(&mut buffer).unwrap();
        }
        let rows = rows(&mut running);
        drop(client);
        let target = format!("127.0.0.1:{port}");
        let client_end = rows
            .iter()
            .find(|r| r["connection"]["remote"].as_str() == Some(&target))
            .unwrap_or_else(|| panic!("no row for the QUIC client: {rows:#?}"));
        assert_eq!(
            client_end["connection"]["transport"], "udp",
            "{client_end:#}"
        );
        let sni = &client_end["connection"]["tls_server_name"];
        if no_payload {
            assert_eq!(sni, &Value::Null, "--no-payload keeps no names");
        } else {
            assert_eq!(sni, "h3.flowtest.test", "{client_end:#}");
            assert_eq!(client_end["connection"]["protocol"], "QUIC");
        }
    }
}

#[test]
fn remote_name_from_a_dns_answer() {
    const TEST: &str = "remote_name_from_a_dns_answer";
    if !privileged(TEST) {
        return;
    }
    let (Some(dnsmasq), Some(dig)) = (tool("dnsmasq", TEST), tool("dig", TEST)) else {
        return;
    };
    let dns = Dnsmasq::start(dnsmasq, "flowtest.test", "127.0.0.7");
    // A service on the address the name resolves to.
    let listener = TcpListener::bind("127.0.0.7:0").unwrap();
    let port = listener.local_addr().unwrap().port();

    let mut running = Running::spawn(flow().args([
        "bandwidth",
        "--json",
        "--window",
        "3s",
        "--port",
        &port.to_string(),
    ]));
    thread::sleep(Duration::from_millis(800));
    assert_eq!(dns.dig(dig, "flowtest.test", true), "127.0.0.7");
    thread::sleep(Duration::from_millis(300));
    let mut client = TcpStream::connect(("127.0.0.7", port)).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(&[7u8; 1_234]).unwrap();
    let mut got = vec![0u8; 1_234];
    server.read_exact(&mut got).unwrap();
    let rows = rows(&mut running);
    let client_end = rows
        .iter()
        .find(|r| r["connection"]["remote"].as_str() == Some(&format!("127.0.0.7:{port}")))
        .unwrap_or_else(|| panic!("no row for the client end: {rows:#?}"));
    assert_eq!(
        client_end["connection"]["remote_name"], "flowtest.test",
        "{client_end:#}"
    );
    assert_eq!(client_end["tx_bytes"], 1_234);
}
