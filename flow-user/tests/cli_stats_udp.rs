//! `flow stats` covers UDP sockets (issue 15): on 127.0.0.1 and ::1, an unconnected socket with
//! datagrams left unread in its queue and a socket connected to it are each one row of the real
//! `flow stats --json` (procfs mode, and eBPF mode where it loads), with `"transport": "udp"`,
//! their addresses, the kernel's state, their inode as `/proc/self/fd` links it, this process as
//! owner and the queues `ss` reads from the kernel; `--inode` finds one; the table marks them
//! `udp` with `ss`'s `UNCONN`/`ESTAB`. A network namespace the test creates is read too, in both
//! modes. Through the library in eBPF mode, a socket's counters are the sum of its flows, exact.

mod support;

use std::{
    io::{BufRead, BufReader},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    process::{Child, Command, Stdio},
    time::Duration,
};

use flow_user::{model::Transport, ModeChoice, SocketStats, TcpState};
use serde_json::Value;
use support::{flow, may_load, open, own_comm, privileged, tool};

const TEST: &str = "cli_stats_udp";
/// Datagrams left unread in the unconnected socket's queue, and their size.
const QUEUED: usize = 3;
const SIZE: usize = 100;

/// The inode of the socket behind `fd`, from its `/proc/self/fd` link (`socket:[12345]`).
fn link_inode(socket: &UdpSocket) -> u64 {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", socket.as_raw_fd())).unwrap();
    let link = link.to_str().unwrap();
    link.strip_prefix("socket:[")
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inode| inode.parse().ok())
        .unwrap_or_else(|| panic!("not a socket link: {link}"))
}

/// One family's sockets: an unconnected one with [`QUEUED`] datagrams waiting, and one connected
/// to it that sent them.
struct Sockets {
    unconnected: UdpSocket,
    connected: UdpSocket,
}

impl Sockets {
    fn open(ip: IpAddr) -> Sockets {
        let unconnected = UdpSocket::bind((ip, 0)).unwrap();
        let connected = UdpSocket::bind((ip, 0)).unwrap();
        connected
            .connect(unconnected.local_addr().unwrap())
            .unwrap();
        for _ in 0..QUEUED {
            assert_eq!(connected.send(&[5u8; SIZE]).unwrap(), SIZE);
        }
        Sockets {
            unconnected,
            connected,
        }
    }

    fn unspecified(&self) -> SocketAddr {
        match self.unconnected.local_addr().unwrap() {
            SocketAddr::V4(_) => "0.0.0.0:0".parse().unwrap(),
            SocketAddr::V6(_) => "[::]:0".parse().unwrap(),
        }
    }
}

/// `(Recv-Q, Send-Q)` of the UDP socket bound at `local`, as `ss` reads them from the kernel
/// (sock_diag): the value `flow` must show, read through another interface than its own.
fn ss_queues(ss: &str, local: SocketAddr) -> (u64, u64) {
    let out = Command::new(ss)
        .args(["-u", "-a", "-n", "-H"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let local = local.to_string();
    let line = text
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|words| words.get(3) == Some(&local.as_str()))
        .unwrap_or_else(|| panic!("ss lists no UDP socket at {local}:\n{text}"));
    (line[1].parse().unwrap(), line[2].parse().unwrap())
}

/// `flow --mode MODE stats ARGS…`: its stdout; it must succeed.
fn flow_stats(mode: &str, args: &[&str]) -> String {
    let out = flow()
        .args(["--mode", mode, "stats"])
        .args(args)
        .output()
        .expect("flow runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "flow --mode {mode} stats {args:?}: {stderr}"
    );
    eprintln!("--mode {mode}: {}", stderr.trim());
    String::from_utf8(out.stdout).unwrap()
}

/// The one UDP row bound at `local`.
fn udp_row(rows: &[Value], local: SocketAddr) -> &Value {
    let found: Vec<&Value> = rows
        .iter()
        .filter(|r| r["connection"]["local"] == local.to_string())
        .filter(|r| r["connection"]["transport"] == "udp")
        .collect();
    assert_eq!(found.len(), 1, "one UDP row at {local}: {found:#?}");
    found[0]
}

#[test]
fn flow_stats_lists_udp_sockets_with_their_queues_inode_and_owner() {
    let Some(ss) = tool("ss", TEST) else {
        return;
    };
    let families = [
        Sockets::open(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        Sockets::open(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    let mut modes = vec!["procfs"];
    if may_load() {
        modes.push("ebpf");
    }
    let mut ids = Vec::new();
    for mode in modes {
        let rows: Vec<Value> = serde_json::from_str(&flow_stats(mode, &["--json"])).unwrap();
        for sockets in &families {
            let server = sockets.unconnected.local_addr().unwrap();
            let client = sockets.connected.local_addr().unwrap();
            for (socket, remote, state) in [
                (&sockets.unconnected, sockets.unspecified(), "CLOSE"),
                (&sockets.connected, server, "ESTABLISHED"),
            ] {
                let local = socket.local_addr().unwrap();
                let row = udp_row(&rows, local);
                let connection = &row["connection"];
                assert_eq!(connection["remote"], remote.to_string(), "{row:#}");
                assert_eq!(connection["state"], state, "{row:#}");
                assert_eq!(connection["active"], true, "{row:#}");
                assert_eq!(row["inode"], link_inode(socket), "{row:#}");
                assert_eq!(connection["inode"], row["inode"]);
                assert_eq!(connection["pid"], std::process::id(), "{row:#}");
                assert_eq!(connection["process"], own_comm(), "{row:#}");
                assert_eq!(connection["uid"], unsafe { libc::geteuid() });
                let (recv_q, send_q) = ss_queues(ss, local);
                assert_eq!(row["rx_queue"], recv_q, "{mode}: {row:#}");
                assert_eq!(row["tx_queue"], send_q, "{mode}: {row:#}");
            }
            // The unread datagrams: each takes at least its payload (its whole buffer counts).
            let queued = udp_row(&rows, server)["rx_queue"].as_u64().unwrap();
            assert!(queued >= (QUEUED * SIZE) as u64, "{queued}");
            assert_eq!(udp_row(&rows, client)["rx_queue"], 0);
            ids.push((
                mode,
                server,
                udp_row(&rows, server)["connection"]["id"].clone(),
            ));
        }
    }
    // The same socket has the same id whichever mode listed it (both know its cookie).
    for (mode, server, id) in &ids {
        let first = ids.iter().find(|(_, s, _)| s == server).unwrap();
        assert_eq!(id, &first.2, "{mode}: {server}");
    }

    // --inode finds the one socket.
    let v6 = &families[1].unconnected;
    let inode = link_inode(v6).to_string();
    let rows: Vec<Value> =
        serde_json::from_str(&flow_stats("procfs", &["--json", "--inode", &inode])).unwrap();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(
        rows[0]["connection"]["local"],
        v6.local_addr().unwrap().to_string()
    );

    // The table: a NETID column, UDP states as ss prints them.
    let table = flow_stats("procfs", &[]);
    assert!(table.lines().next().unwrap().contains("NETID"), "{table}");
    for sockets in &families {
        for (socket, state) in [
            (&sockets.unconnected, "UNCONN"),
            (&sockets.connected, "ESTAB"),
        ] {
            let local = socket.local_addr().unwrap().to_string();
            // INODE NETID LOCAL REMOTE STATE … (a TCP socket of another process may share the
            // local address and port)
            let words: Vec<&str> = table
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .find(|words| words.get(1) == Some(&"udp") && words.get(2) == Some(&local.as_str()))
                .unwrap_or_else(|| panic!("no line for {local}:\n{table}"));
            assert_eq!((words[1], words[4]), ("udp", state), "{words:?}");
        }
    }
}

/// A network namespace of this test's own with a python3 holding an unconnected UDP socket on
/// its loopback, [`QUEUED`] datagrams unread; dropping it kills python3 and deletes the
/// namespace.
struct Namespace {
    name: String,
    /// Started once the namespace exists (which this guards meanwhile).
    holder: Option<Child>,
    port: u16,
}

const HOLDER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.connect(s.getsockname())
for _ in range(int(sys.argv[1])): c.send(b"x" * int(sys.argv[2]))
print(s.getsockname()[1], flush=True)
sys.stdin.read()
"#;

impl Namespace {
    fn create(ip: &str, python: &str) -> Namespace {
        let name = format!("flowtest-udp-{}", std::process::id());
        // A leftover of a crashed run with this pid.
        let _ = Command::new(ip).args(["netns", "del", &name]).output();
        let run = |args: &[&str]| {
            let out = Command::new(ip).args(args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        };
        run(&["netns", "add", &name]);
        let mut namespace = Namespace {
            name,
            holder: None,
            port: 0,
        };
        run(&["-n", &namespace.name, "link", "set", "lo", "up"]);
        let holder = namespace.holder.insert(
            Command::new(ip)
                .args(["netns", "exec", &namespace.name, python, "-c", HOLDER])
                .args([QUEUED.to_string(), SIZE.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        namespace.port = line.trim().parse().unwrap_or_else(|_| panic!("{line:?}"));
        namespace
    }

    fn pid(&self) -> u32 {
        self.holder.as_ref().expect("started").id()
    }

    /// Its inode, as `flow` reports `netns`.
    fn inode(&self) -> u64 {
        std::fs::metadata(format!("/run/netns/{}", self.name))
            .unwrap()
            .ino()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Some(holder) = &mut self.holder {
            let _ = holder.kill();
            let _ = holder.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

#[test]
fn udp_sockets_of_another_network_namespace_are_listed() {
    const TEST: &str = "udp_sockets_of_another_network_namespace_are_listed";
    if !privileged(TEST) {
        return;
    }
    let (Some(ip), Some(python)) = (tool("ip", TEST), tool("python3", TEST)) else {
        return;
    };
    let namespace = Namespace::create(ip, python);
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, namespace.port));
    for mode in ["procfs", "ebpf"] {
        let rows: Vec<Value> = serde_json::from_str(&flow_stats(mode, &["--json"])).unwrap();
        let found: Vec<&Value> = rows
            .iter()
            .filter(|r| r["connection"]["netns"] == namespace.inode())
            .filter(|r| r["connection"]["local"] == local.to_string())
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{mode}: {local} in the namespace: {found:#?}"
        );
        let row = found[0];
        assert_eq!(row["connection"]["transport"], "udp", "{row:#}");
        assert_eq!(row["connection"]["state"], "CLOSE", "{row:#}");
        assert_eq!(row["connection"]["pid"], namespace.pid(), "{row:#}");
        assert_eq!(row["connection"]["process"], "python3", "{row:#}");
        assert!(
            row["rx_queue"].as_u64().unwrap() >= (QUEUED * SIZE) as u64,
            "{row:#}"
        );
    }
}

/// The row of the socket bound at `local`.
fn stats_row(rows: &[SocketStats], local: SocketAddr) -> &SocketStats {
    let found: Vec<_> = rows
        .iter()
        .filter(|s| s.connection.transport == Transport::Udp && s.connection.local == local)
        .collect();
    assert_eq!(found.len(), 1, "{found:#?}");
    found[0]
}

/// eBPF mode: an unconnected socket's row adds up its flows (two clients); a connected one's is
/// its one flow, and has its flow's id.
#[test]
fn a_udp_socket_s_counters_are_its_flows_added_up() {
    if !may_load() {
        return;
    }
    let Some(mut monitor) = open(ModeChoice::Ebpf) else {
        return;
    };
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        monitor.step().unwrap();
        let server = UdpSocket::bind((ip, 0)).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let at = server.local_addr().unwrap();
        // (datagrams, size) from each client; the server answers each client once, 9 bytes.
        let sends = [(3usize, 200usize), (2, 1_000)];
        let clients: Vec<UdpSocket> = sends
            .iter()
            .map(|&(count, size)| {
                let client = UdpSocket::bind((ip, 0)).unwrap();
                client.connect(at).unwrap();
                for _ in 0..count {
                    client.send(&vec![1u8; size]).unwrap();
                }
                client
            })
            .collect();
        let mut buffer = [0u8; 2_048];
        for _ in 0..5 {
            server.recv_from(&mut buffer).unwrap();
        }
        for client in &clients {
            server
                .send_to(&[2u8; 9], client.local_addr().unwrap())
                .unwrap();
        }
        // Left unread in each client's queue: received all the same.
        let flows = monitor.step().unwrap();
        let rows = monitor.read_socket_stats(None).unwrap();

        let s = stats_row(&rows, at);
        assert_eq!(
            (s.rx_bytes, s.rx_packets, s.tx_bytes, s.tx_packets),
            (3 * 200 + 2 * 1_000, 5, 2 * 9, 2),
            "{s:#?}"
        );
        assert_eq!(s.connection.state, TcpState::Close);
        for (client, &(count, size)) in clients.iter().zip(&sends) {
            let local = client.local_addr().unwrap();
            let c = stats_row(&rows, local);
            assert_eq!(
                (c.tx_bytes, c.tx_packets, c.rx_bytes, c.rx_packets),
                ((count * size) as u64, count as u64, 9, 1),
                "{c:#?}"
            );
            assert_eq!(c.connection.state, TcpState::Established);
            assert!(c.rx_queue > 0, "its answer waits: {c:#?}");
            let flow = flows
                .iter()
                .find(|b| b.connection.local == local && b.connection.remote == at)
                .unwrap_or_else(|| panic!("no flow {local} -> {at}: {flows:#?}"));
            assert_eq!(c.connection.id, flow.connection.id, "one flow, one id");
        }
    }
}
