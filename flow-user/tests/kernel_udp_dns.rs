//! DNS over UDP (dnsmasq answering `dig`) seen by a real `flow bandwidth`: the query's flow is
//! DNS by its payload, one datagram each way, and the answer names a later TCP connection's
//! remote. Host only: the VM that `cargo xtask vm-test` boots has neither dnsmasq and dig nor the
//! `flow` binary (the plain-socket UDP tests, `kernel_udp`, run there on every rung).

mod support;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    thread,
    time::Duration,
};

use serde_json::Value;
use support::{flow, privileged, tool, wait_for, Dnsmasq, Running};

#[test]
fn dns_over_udp_is_dns_and_names_the_remote() {
    const TEST: &str = "dns_over_udp_is_dns_and_names_the_remote";
    if !privileged(TEST) {
        return;
    }
    let (Some(dnsmasq), Some(dig)) = (tool("dnsmasq", TEST), tool("dig", TEST)) else {
        return;
    };
    let dns = Dnsmasq::start(dnsmasq, "flowtest.test", "127.0.0.7");
    let dns_port = dns.port;
    let listener = TcpListener::bind("127.0.0.7:0").unwrap();
    let port = listener.local_addr().unwrap().port();

    let mut running = Running::spawn(flow().args(["bandwidth", "--json", "--window", "3s"]));
    thread::sleep(Duration::from_millis(800));
    assert_eq!(dns.dig(dig, "flowtest.test", false), "127.0.0.7");
    thread::sleep(Duration::from_millis(300));
    let mut client = TcpStream::connect(("127.0.0.7", port)).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(&[7u8; 1_234]).unwrap();
    let mut got = vec![0u8; 1_234];
    server.read_exact(&mut got).unwrap();

    let done = wait_for(Duration::from_secs(30), || {
        running.child.try_wait().ok().flatten()
    });
    assert!(done.is_some_and(|s| s.success()), "{}", running.stderr());
    let rows: Vec<Value> = serde_json::from_str::<Value>(&running.stdout())
        .expect("flow printed JSON")
        .as_array()
        .cloned()
        .unwrap_or_default();
    let dns_remote = format!("127.0.0.1:{dns_port}");
    let query = rows
        .iter()
        .find(|r| {
            r["connection"]["remote"].as_str() == Some(&dns_remote)
                && r["connection"]["transport"] == "udp"
        })
        .unwrap_or_else(|| panic!("no udp row for dig's query to {dns_remote}: {rows:#?}"));
    assert_eq!(query["connection"]["protocol"], "DNS", "{query:#}");
    assert_eq!(
        query["connection"]["protocol_source"], "payload",
        "{query:#}"
    );
    assert_eq!(query["tx_packets"], 1, "{query:#}");
    assert_eq!(query["rx_packets"], 1, "{query:#}");
    let tcp = rows
        .iter()
        .find(|r| r["connection"]["remote"].as_str() == Some(&format!("127.0.0.7:{port}")))
        .unwrap_or_else(|| panic!("no row for the TCP client end: {rows:#?}"));
    assert_eq!(tcp["connection"]["transport"], "tcp");
    assert_eq!(tcp["connection"]["remote_name"], "flowtest.test", "{tcp:#}");
    assert_eq!(tcp["tx_bytes"], 1_234);
}
