use std::time::{Duration, Instant};

use prometheus_client::{encoding::text::encode, registry::Registry};

use std::sync::Arc;

use super::Traffic;
use crate::{
    attribution::{Attribution, Container, Runtime},
    model::{ConnectionBandwidth, NetConnection, TcpState},
    observe::ConnectionParts,
};

fn connection(port: u16, process: &str, active: bool) -> NetConnection {
    ConnectionParts {
        local: format!("127.0.0.1:{port}").parse().unwrap(),
        remote: "127.0.0.1:80".parse().unwrap(),
        state: TcpState::Established,
        inode: u64::from(port),
        uid: None,
        pid: Some(7),
        process: Some(process.to_string()),
        cookie: None,
        generation: u64::from(port),
        active,
    }
    .build()
}

fn moved(port: u16, process: &str, rx: u64, tx: u64, active: bool) -> ConnectionBandwidth {
    ConnectionBandwidth {
        connection: connection(port, process, active),
        tx_bytes: tx,
        rx_bytes: rx,
        tx_packets: 1,
        rx_packets: 2,
        tx_bytes_per_second: tx,
        rx_bytes_per_second: rx,
        bytes_per_second: rx + tx,
        packets_per_second: 3,
        sample_window: Duration::from_secs(1),
    }
}

fn text(registry: &Registry) -> String {
    let mut out = String::new();
    encode(&mut out, registry).unwrap();
    out
}

fn value(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn bytes_add_up_per_process_and_protocol_including_closed_connections() {
    let mut registry = Registry::default();
    let mut traffic = Traffic::register(&mut registry, None, 100, Duration::from_secs(60));
    let now = Instant::now();
    traffic.record(
        &[
            moved(1, "curl", 100, 10, true),
            moved(2, "curl", 5, 1, true),
        ],
        now,
    );
    // Connection 2 closed since: its last bytes still count.
    traffic.record(
        &[moved(1, "curl", 50, 0, true), moved(2, "curl", 7, 0, false)],
        now + Duration::from_secs(1),
    );
    let out = text(&registry);
    let rx = r#"process_bytes_total{process="curl",container="",protocol="HTTP",direction="rx"}"#;
    let tx = r#"process_bytes_total{process="curl",container="",protocol="HTTP",direction="tx"}"#;
    assert_eq!(value(&out, rx), Some(162), "{out}");
    assert_eq!(value(&out, tx), Some(11));
    let segments = r#"process_segments_total{process="curl",container="",protocol="HTTP"}"#;
    assert_eq!(value(&out, segments), Some(12));
    assert!(
        !out.contains("connection_bytes"),
        "no per-connection series by default"
    );
}

#[test]
fn a_process_without_connections_expires() {
    let mut registry = Registry::default();
    let mut traffic = Traffic::register(&mut registry, None, 100, Duration::from_secs(5));
    let start = Instant::now();
    traffic.record(&[moved(1, "gone", 1, 1, false)], start);
    traffic.record(
        &[moved(2, "stays", 1, 1, true)],
        start + Duration::from_secs(4),
    );
    assert!(text(&registry).contains("gone"));
    traffic.record(
        &[moved(2, "stays", 1, 1, true)],
        start + Duration::from_secs(6),
    );
    let out = text(&registry);
    assert!(!out.contains("gone") && out.contains("stays"), "{out}");
}

#[test]
fn per_connection_series_are_capped_and_go_after_the_close() {
    let mut registry = Registry::default();
    let mut traffic = Traffic::register(&mut registry, Some(2), 100, Duration::from_secs(60));
    let now = Instant::now();
    let rows = [
        moved(1, "a", 1, 1, true),
        moved(2, "a", 1, 1, false),
        moved(3, "a", 1, 1, true),
    ];
    traffic.record(&rows, now);
    let out = text(&registry);
    assert_eq!(out.matches("connection_bytes_total{").count(), 4, "{out}");
    assert_eq!(value(&out, "connections_without_series"), Some(1));
    // The closed one is gone at the next step, which frees a place for connection 3.
    traffic.record(&[moved(1, "a", 1, 1, true), moved(3, "a", 1, 1, true)], now);
    let out = text(&registry);
    assert!(!out.contains("127.0.0.1:2\""), "{out}");
    assert!(out.contains("127.0.0.1:3\""), "{out}");
    assert_eq!(value(&out, "connections_without_series"), Some(0));
}

fn in_container(port: u16, process: &str, container: &str, rx: u64) -> ConnectionBandwidth {
    let mut row = moved(port, process, rx, 0, true);
    row.connection.attribution = Arc::new(Attribution {
        cgroup: Some(format!("/system.slice/docker-{container}.scope").into()),
        container: Some(Arc::new(Container {
            runtime: Runtime::Docker,
            id: format!("{container:0<64}").into(),
            name: Some(container.into()),
            pod: None,
        })),
        service: None,
    });
    row
}

#[test]
fn containers_beyond_the_cap_are_summed_under_other_and_counted() {
    let mut registry = Registry::default();
    let mut traffic = Traffic::register(&mut registry, None, 2, Duration::from_secs(5));
    let start = Instant::now();
    traffic.record(
        &[
            in_container(1, "nginx", "web", 10),
            in_container(2, "nginx", "api", 20),
            in_container(3, "nginx", "db", 40),
            in_container(4, "nginx", "cache", 80),
            moved(5, "nginx", 1, 0, true),
        ],
        start,
    );
    let out = text(&registry);
    let rx = |container: &str| {
        let series = format!(
            r#"process_bytes_total{{process="nginx",container="{container}",protocol="HTTP",direction="rx"}}"#
        );
        value(&out, &series)
    };
    assert_eq!(rx("web"), Some(10), "{out}");
    assert_eq!(rx("api"), Some(20));
    assert_eq!(rx("other"), Some(120), "db and cache summed");
    assert_eq!(rx(""), Some(1), "a host process");
    assert_eq!(rx("db"), None);
    assert_eq!(value(&out, "containers_over_cap"), Some(2));
    // web and api fall idle and expire: their places go to the next containers seen.
    traffic.record(
        &[in_container(3, "nginx", "db", 1)],
        start + Duration::from_secs(6),
    );
    let out = text(&registry);
    assert!(out.contains(r#"container="db""#), "{out}");
    assert!(!out.contains(r#"container="web""#), "{out}");
    assert_eq!(value(&out, "containers_over_cap"), Some(0));
}
