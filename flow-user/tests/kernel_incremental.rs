//! The incremental read of socket-local storage (`changed_sockets`, `iter/bpf_sk_storage_map`):
//! only what changed since the previous read, in every network namespace, and the close path's
//! two publish points (`inet_sock_set_state` at TCP_CLOSE, `tcp_destroy_sock`).
//!
//! The tests load their own program each and share the host's sockets, so they run one at a
//! time (a lock) and look only at their own ports.

mod support;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use flow_common::{SockClosed, SockCounters};
use flow_user::ebpf::{KernelEvents, KernelProgram, Store, TableRow};
use support::{collect_closed, load, tuple_addrs, Pair};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Loads the program on a socket-local storage rung, or says why the test does not run.
fn load_local() -> Option<KernelProgram> {
    let mut program = load(&support::options())?;
    if program.rung().store() != Store::Local {
        // Under CI the host's ladder must reach a typed rung (tp_btf there): a refusal of them
        // is a failure, not a reason to skip.
        assert!(
            std::env::var_os("CI").is_none() || std::env::var_os("FLOW_TEST_RUNG").is_some(),
            "no socket-local storage rung attached: {}",
            program.describe()
        );
        assert!(
            program.changed_sockets().is_err(),
            "the {} rung has no storage to read",
            program.rung()
        );
        eprintln!(
            "NOT RUN: the {} rung keeps no socket-local storage",
            program.rung()
        );
        return None;
    }
    Some(program)
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The file limit's soft value up to its hard one: 2,010 pairs are 4,020 fds.
fn raise_nofile() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

fn rows_on_port(rows: &[TableRow], port: u16) -> Vec<TableRow> {
    rows.iter()
        .filter(|row| {
            tuple_addrs(&row.socket.tuple)
                .is_some_and(|(local, remote)| local.port() == port || remote.port() == port)
        })
        .copied()
        .collect()
}

fn row_of(rows: &[TableRow], addrs: (SocketAddr, SocketAddr)) -> Option<SockCounters> {
    rows.iter()
        .find(|row| tuple_addrs(&row.socket.tuple) == Some(addrs))
        .and_then(|row| row.counters)
}

fn send_and_read(from: &mut TcpStream, to: &mut TcpStream, len: usize) {
    from.write_all(&vec![0x42; len]).unwrap();
    let mut buf = vec![0; len];
    to.read_exact(&mut buf).unwrap();
}

const IDLE: usize = 2_000;
const ACTIVE: usize = 10;

#[test]
fn a_second_read_returns_only_what_moved() {
    let _serial = lock();
    let Some(mut program) = load_local() else {
        return;
    };
    raise_nofile();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Every connection touched once: 3 bytes up, 5 down.
    let mut pairs: Vec<Pair> = (0..IDLE + ACTIVE)
        .map(|_| {
            let mut pair = Pair::open(&listener);
            send_and_read(&mut pair.client, &mut pair.server, 3);
            send_and_read(&mut pair.server, &mut pair.client, 5);
            pair
        })
        .collect();
    // Past the tick of the last touch, so the first read's start is a later tick.
    thread::sleep(Duration::from_millis(60));

    let started = Instant::now();
    let first = program.changed_sockets().unwrap();
    let first_ms = started.elapsed().as_secs_f64() * 1e3;
    let ours = rows_on_port(&first.rows, port);
    assert_eq!(
        ours.len(),
        2 * (IDLE + ACTIVE),
        "the first read returns every entry"
    );
    assert!(
        first.walked >= 2 * (IDLE + ACTIVE) as u64,
        "walked {}",
        first.walked
    );

    // Bytes on the 10 active ones only (on top of the 3 and 5 each already moved).
    let (up, down) = (1_234usize, 4_321usize);
    for pair in &mut pairs[IDLE..] {
        send_and_read(&mut pair.client, &mut pair.server, up);
        send_and_read(&mut pair.server, &mut pair.client, down);
    }

    let started = Instant::now();
    let second = program.changed_sockets().unwrap();
    let second_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let table = program.socket_table().unwrap();
    let table_ms = started.elapsed().as_secs_f64() * 1e3;
    eprintln!(
        "changed_sockets: first read {first_ms:.2} ms ({} rows), second read {second_ms:.2} ms \
         ({} rows, {} entries walked); socket_table {table_ms:.2} ms ({} rows)",
        first.rows.len(),
        second.rows.len(),
        second.walked,
        table.len()
    );

    let ours = rows_on_port(&second.rows, port);
    // Lower bound: every end of every active connection, with its exact cumulative counts.
    for pair in &pairs[IDLE..] {
        let client = row_of(&ours, pair.client_addrs()).expect("an active client end is missing");
        let server = row_of(&ours, pair.server_addrs()).expect("an active server end is missing");
        let (up, down) = ((3 + up) as u64, (5 + down) as u64);
        assert_eq!((client.tx_bytes, client.rx_bytes), (up, down), "client end");
        assert_eq!((server.tx_bytes, server.rx_bytes), (down, up), "server end");
    }
    // Upper bound: those 20, plus only connections whose state changed meanwhile (none of the
    // idle ones should have).
    let active: Vec<_> = pairs[IDLE..]
        .iter()
        .flat_map(|p| [p.client_addrs(), p.server_addrs()])
        .collect();
    let others: Vec<_> = ours
        .iter()
        .filter(|row| !active.contains(&tuple_addrs(&row.socket.tuple).unwrap()))
        .collect();
    let state_changed = others
        .iter()
        .filter(|row| row.counters.is_some_and(|c| c.state_jiffies != 0))
        .count();
    assert_eq!(
        others.len(),
        state_changed,
        "idle entries came back: {others:?}"
    );
    assert!(
        ours.len() <= 2 * ACTIVE + state_changed,
        "{} rows",
        ours.len()
    );
    assert_eq!(ours.len(), 2 * ACTIVE);
    assert!(
        second.walked >= 2 * (IDLE + ACTIVE) as u64,
        "walked {}",
        second.walked
    );
    drop(pairs);
}

/// A network namespace made for the test, deleted when dropped (also on failure).
struct Netns(String);

impl Netns {
    fn add(tag: &str) -> Netns {
        let name = format!("flowtest-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(status.success(), "ip netns add {name}");
        Netns(name)
    }

    fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/var/run/netns/{}", self.0))
            .unwrap()
            .ino()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A process inside a namespace, killed when dropped.
struct Inside(Child);

impl Drop for Inside {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Both ends of 127.0.0.1:40002 → 127.0.0.1:40001 inside the namespace: `up` bytes from the
/// client, `down` back; the sockets stay open until the process is killed. Returns it once the
/// bytes moved, with the namespace inode it saw from inside.
const SERVER_PORT: u16 = 40_001;
const CLIENT_PORT: u16 = 40_002;
const PAIR_IN_NETNS: &str = r#"
import os, socket, sys
up, down = int(sys.argv[1]), int(sys.argv[2])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 40001)); srv.listen(1)
cli = socket.socket(); cli.bind(("127.0.0.1", 40002)); cli.connect(("127.0.0.1", 40001))
acc, _ = srv.accept()
def move(a, b, n):
    a.sendall(b"x" * n)
    got = 0
    while got < n:
        got += len(b.recv(n - got))
move(cli, acc, up); move(acc, cli, down)
print("READY", os.stat("/proc/self/ns/net").st_ino, flush=True)
sys.stdin.read()
"#;

fn pair_in(netns: &Netns, up: usize, down: usize) -> (Inside, u64) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &netns.0, "sh", "-c"])
        .arg(r#"ip link set lo up && exec python3 -c "$0" "$1" "$2""#)
        .args([PAIR_IN_NETNS, &up.to_string(), &down.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let inside = Inside(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let inode = line
        .strip_prefix("READY ")
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("the pair in {} did not start: {line:?}", netns.0));
    (inside, inode)
}

#[test]
fn every_namespace_with_the_same_four_tuple() {
    let _serial = lock();
    let Some(mut program) = load_local() else {
        return;
    };
    if let Some(reason) = program.store_iter_refused().map(str::to_owned) {
        // Not a privilege problem: this kernel refuses map-element iterators, and the
        // fallback (iter/tcp) reads the caller's namespace only.
        assert!(!program.changed_sockets().unwrap().all_namespaces);
        eprintln!("NOT RUN: the kernel refused the storage iterator ({reason})");
        return;
    }
    let (a, b) = (Netns::add("a"), Netns::add("b"));
    let (_pair_a, inode_a) = pair_in(&a, 1_111, 2_222);
    let (_pair_b, inode_b) = pair_in(&b, 3_333, 4_444);
    assert_eq!((inode_a, inode_b), (a.inode(), b.inode()));
    assert_ne!(inode_a, inode_b);

    let read = program.changed_sockets().unwrap();
    assert!(read.all_namespaces);
    let server: SocketAddr = ([127, 0, 0, 1], SERVER_PORT).into();
    let client: SocketAddr = ([127, 0, 0, 1], CLIENT_PORT).into();
    let end = |netns: u64, addrs: (SocketAddr, SocketAddr)| {
        let found: Vec<_> = read
            .rows
            .iter()
            .filter(|row| {
                row.socket.netns as u64 == netns && tuple_addrs(&row.socket.tuple) == Some(addrs)
            })
            .collect();
        assert_eq!(found.len(), 1, "{addrs:?} in netns {netns}: {found:?}");
        let row = found[0];
        let counters = row.counters.expect("an entry");
        assert_eq!(counters.cookie, row.socket.cookie);
        (row.socket.cookie, counters.tx_bytes, counters.rx_bytes)
    };
    let a_client = end(inode_a, (client, server));
    let a_server = end(inode_a, (server, client));
    let b_client = end(inode_b, (client, server));
    let b_server = end(inode_b, (server, client));
    assert_eq!((a_client.1, a_client.2), (1_111, 2_222));
    assert_eq!((a_server.1, a_server.2), (2_222, 1_111));
    assert_eq!((b_client.1, b_client.2), (3_333, 4_444));
    assert_eq!((b_server.1, b_server.2), (4_444, 3_333));
    let mut cookies = vec![a_client.0, a_server.0, b_client.0, b_server.0];
    cookies.sort();
    cookies.dedup();
    assert_eq!(cookies.len(), 4, "four sockets, four cookies");
}

const CONNECTIONS: usize = 1_000;
const REQUEST: usize = 300;
const RESPONSE: usize = 1_700;

#[test]
fn short_lived_connections_reach_userspace_through_close_events() {
    let _serial = lock();
    let Some(mut program) = load_local() else {
        return;
    };
    let closed = KernelEvents::start(&mut program, false).unwrap();
    program.changed_sockets().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        for _ in 0..CONNECTIONS {
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = [0u8; REQUEST];
            socket.read_exact(&mut request).unwrap();
            socket.write_all(&[1u8; RESPONSE]).unwrap();
        }
    });
    for _ in 0..CONNECTIONS {
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        client.write_all(&[2u8; REQUEST]).unwrap();
        let mut response = [0u8; RESPONSE];
        client.read_exact(&mut response).unwrap();
        client.shutdown(Shutdown::Both).unwrap();
    }
    server.join().unwrap();

    let ours = |e: &SockClosed| {
        tuple_addrs(&e.counters.tuple)
            .is_some_and(|(local, remote)| local.port() == port || remote.port() == port)
    };
    // The larger counters per socket cookie: a socket may send one event at TCP_CLOSE and one
    // at destroy.
    let latest = |all: &[SockClosed]| {
        let mut by_cookie: HashMap<u64, SockClosed> = HashMap::new();
        for event in all.iter().filter(|e| ours(e)) {
            let kept = by_cookie.entry(event.counters.cookie).or_insert(*event);
            if event.counters.tx_bytes + event.counters.rx_bytes
                > kept.counters.tx_bytes + kept.counters.rx_bytes
            {
                *kept = *event;
            }
        }
        by_cookie
    };
    let total = |n: usize| (CONNECTIONS * n) as u64;
    let sums = |by_cookie: &HashMap<u64, SockClosed>| {
        let (mut client, mut server) = ((0, 0), (0, 0));
        for e in by_cookie.values() {
            let c = &e.counters;
            let side = if c.tuple.remote_port == port {
                &mut client
            } else {
                &mut server
            };
            side.0 += c.tx_bytes;
            side.1 += c.rx_bytes;
        }
        (client, server)
    };
    let expected = (
        (total(REQUEST), total(RESPONSE)),
        (total(RESPONSE), total(REQUEST)),
    );
    let events = collect_closed(&closed, Duration::from_secs(20), |all| {
        let by_cookie = latest(all);
        by_cookie.len() >= 2 * CONNECTIONS && sums(&by_cookie) == expected
    });
    let by_cookie = latest(&events);
    let per_socket = events.iter().filter(|e| ours(e)).count() as f64 / by_cookie.len() as f64;
    eprintln!(
        "{} close events for {} sockets ({per_socket:.2} per socket); stats {:?}",
        events.iter().filter(|e| ours(e)).count(),
        by_cookie.len(),
        program.stats().unwrap()
    );
    assert_eq!(
        by_cookie.len(),
        2 * CONNECTIONS,
        "every socket has a close event"
    );
    assert!(!by_cookie.contains_key(&0), "typed rungs carry cookies");
    assert_eq!(
        sums(&by_cookie),
        expected,
        "every byte through close events"
    );
    assert!(
        events.iter().filter(|e| ours(e)).count() <= 4 * CONNECTIONS,
        "at most two events per socket"
    );

    // Nothing of them is left for the next incremental read.
    let left = rows_on_port(&program.changed_sockets().unwrap().rows, port);
    assert!(left.is_empty(), "closed sockets left entries: {left:?}");

    let misses = program.recursion_misses().unwrap();
    eprintln!("recursion misses: {misses:?}");
    for name in ["flow_destroy_btf", "flow_state_btf"] {
        assert!(
            misses.iter().any(|(program, _)| *program == name),
            "{name} missing from {misses:?}"
        );
    }
    let stats = program.stats().unwrap();
    assert_eq!(
        stats.missed_runs,
        misses.iter().map(|(_, n)| n).sum::<u64>(),
        "missed_runs sums them"
    );
    assert_eq!(stats.close_drops, 0);
}
