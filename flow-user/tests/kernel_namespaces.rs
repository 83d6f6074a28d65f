//! Every network namespace, on the typed (tp_btf: socket-local storage, per-namespace `iter/tcp`
//! reads where the storage iterator is refused) and untyped (tracepoint: LRU hash joined with
//! each namespace's `/proc/net/tcp` and sock_diag) rungs: two namespaces made by the test carry
//! the same 4-tuple with different byte counts; both are listed, exact, with their own `netns`
//! and distinct ids, while alive and in the window they close in.
//!
//! Needs root (`ip netns`, loading the kernel program). Under `CI` a missing privilege fails.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    os::unix::fs::MetadataExt,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use flow_user::{
    ebpf::{LoadOptions, Rung},
    id::ConnectionId,
    ConnectionBandwidth, ModeChoice, Monitor, MonitorOptions,
};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const SERVER_PORT: u16 = 40_011;
const CLIENT_PORT: u16 = 40_012;

/// Both ends of 127.0.0.1:CLIENT → 127.0.0.1:SERVER. Each line on stdin moves the next pair of
/// byte counts (client → server, then back); after the last pair both ends close.
const PAIR: &str = r#"
import socket, sys
sport, cport = int(sys.argv[1]), int(sys.argv[2])
steps = [(int(sys.argv[i]), int(sys.argv[i + 1])) for i in range(3, len(sys.argv), 2)]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", sport)); srv.listen(1)
cli = socket.socket(); cli.bind(("127.0.0.1", cport)); cli.connect(("127.0.0.1", sport))
acc, _ = srv.accept(); srv.close()
def move(a, b, n):
    a.sendall(b"x" * n)
    got = 0
    while got < n:
        got += len(b.recv(n - got))
print("READY", flush=True)
for up, down in steps:
    sys.stdin.readline()
    move(cli, acc, up); move(acc, cli, down)
    print("MOVED", flush=True)
cli.close(); acc.close()
print("CLOSED", flush=True)
sys.stdin.readline()
"#;

/// One namespace with its pair; the guard deletes both (also when the test fails).
struct Space {
    name: String,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<ChildStdout>>,
}

impl Space {
    fn new(name: String, steps: &[(u64, u64)]) -> Space {
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        let mut space = Space {
            name,
            child: None,
            stdin: None,
            stdout: None,
        };
        let ok = Command::new("ip")
            .args(["-n", &space.name, "link", "set", "lo", "up"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "lo up in {}", space.name);
        let mut args = vec![SERVER_PORT.to_string(), CLIENT_PORT.to_string()];
        for (up, down) in steps {
            args.push(up.to_string());
            args.push(down.to_string());
        }
        let mut child = Command::new("ip")
            .args(["netns", "exec", &space.name, "python3", "-c", PAIR])
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        space.stdin = child.stdin.take();
        space.stdout = child.stdout.take().map(BufReader::new);
        space.child = Some(child);
        space.expect("READY");
        space
    }

    fn expect(&mut self, word: &str) {
        let mut line = String::new();
        self.stdout.as_mut().unwrap().read_line(&mut line).unwrap();
        assert_eq!(line.trim(), word, "the pair in {}", self.name);
    }

    /// Moves the next step's bytes (and, after the last, closes both ends); waits for `word`.
    fn next(&mut self, word: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
        self.expect(word);
    }

    /// What `stat -L -c %i /run/netns/<name>` prints.
    fn inode(&self) -> u64 {
        std::fs::metadata(format!("/run/netns/{}", self.name))
            .unwrap()
            .ino()
    }
}

impl Drop for Space {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn may_run() -> bool {
    if unsafe { libc::geteuid() } != 0 && std::env::var_os("CI").is_none() {
        eprintln!("NOT RUN: this test makes network namespaces and loads the kernel program");
        return false;
    }
    true
}

/// (netns, local, remote) of the test's four ends.
type End = (u64, SocketAddr, SocketAddr);

fn ours(rows: &[ConnectionBandwidth], spaces: &[u64]) -> HashMap<End, ConnectionBandwidth> {
    let mut out = HashMap::new();
    for row in rows {
        let c = &row.connection;
        let ports = (c.local.port(), c.remote.port());
        if ports != (SERVER_PORT, CLIENT_PORT) && ports != (CLIENT_PORT, SERVER_PORT) {
            continue;
        }
        let netns = c.netns.unwrap_or_else(|| panic!("no netns: {row:?}"));
        if !spaces.contains(&netns) {
            continue;
        }
        let previous = out.insert((netns, c.local, c.remote), row.clone());
        assert!(previous.is_none(), "two rows for one end: {row:?}");
    }
    out
}

/// Steps until `done` holds for the test's ends (bounded), returning the last window's rows.
fn step_until(
    monitor: &mut Monitor,
    spaces: &[u64],
    mut done: impl FnMut(&HashMap<End, ConnectionBandwidth>) -> bool,
) -> HashMap<End, ConnectionBandwidth> {
    let start = Instant::now();
    let mut all: HashMap<End, ConnectionBandwidth> = HashMap::new();
    loop {
        thread::sleep(Duration::from_millis(100));
        let rows = monitor.step().unwrap();
        // Sum the window's bytes over the steps taken (a close can land in a later step).
        for (end, row) in ours(&rows, spaces) {
            match all.get_mut(&end) {
                Some(sum) => {
                    sum.tx_bytes += row.tx_bytes;
                    sum.rx_bytes += row.rx_bytes;
                    sum.connection = row.connection;
                }
                None => {
                    all.insert(end, row);
                }
            }
        }
        if done(&all) || start.elapsed() > Duration::from_secs(10) {
            return all;
        }
    }
}

fn same_four_tuple_in_two_namespaces(rung: Rung) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !may_run() {
        return;
    }
    let tag = format!("flowtest-{}-{}", std::process::id(), rung.name());
    // Per namespace: the bytes moved while alive, then in the window it closes in.
    let steps_a = [(11_111, 2_222), (333, 44_444)];
    let steps_b = [(5_555, 66_666), (77_777, 888)];
    let mut a = Space::new(format!("{tag}-a"), &steps_a);
    let mut b = Space::new(format!("{tag}-b"), &steps_b);
    let spaces = [a.inode(), b.inode()];
    assert_ne!(spaces[0], spaces[1]);

    let mut monitor = Monitor::open(&MonitorOptions {
        mode: ModeChoice::Ebpf,
        load: LoadOptions {
            rung: Some(rung),
            ..LoadOptions::default()
        },
        ..MonitorOptions::default()
    })
    .unwrap_or_else(|err| panic!("the kernel program must load on {rung}: {err:#}"));
    eprintln!("{}", monitor.describe());
    monitor.step().unwrap();

    // Alive: both namespaces' pairs move their first counts.
    a.next("MOVED");
    b.next("MOVED");
    let server = SocketAddr::from(([127, 0, 0, 1], SERVER_PORT));
    let client = SocketAddr::from(([127, 0, 0, 1], CLIENT_PORT));
    // (end, tx, rx) of each of the four ends.
    let expected = |step: usize| -> Vec<(End, u64, u64)> {
        let (a, b) = (steps_a[step], steps_b[step]);
        vec![
            ((spaces[0], client, server), a.0, a.1),
            ((spaces[0], server, client), a.1, a.0),
            ((spaces[1], client, server), b.0, b.1),
            ((spaces[1], server, client), b.1, b.0),
        ]
    };
    let exact = |rows: &HashMap<End, ConnectionBandwidth>, step: usize| {
        expected(step).iter().all(|(end, tx, rx)| {
            rows.get(end)
                .is_some_and(|r| (r.tx_bytes, r.rx_bytes) == (*tx, *rx))
        })
    };
    let alive = step_until(&mut monitor, &spaces, |rows| exact(rows, 0));
    let summary = |rows: &HashMap<End, ConnectionBandwidth>| -> Vec<String> {
        let mut lines: Vec<String> = rows
            .iter()
            .map(|(end, r)| {
                format!(
                    "{end:?} id {} tx {} rx {} state {:?}",
                    r.connection.id, r.tx_bytes, r.rx_bytes, r.connection.state
                )
            })
            .collect();
        lines.sort();
        lines
    };
    eprintln!("alive: {:#?}", summary(&alive));
    assert!(exact(&alive, 0), "alive, exact: {:#?}", summary(&alive));
    assert_eq!(alive.len(), 4, "{:#?}", summary(&alive));
    let ids: HashMap<End, ConnectionId> = alive
        .iter()
        .map(|(end, r)| (*end, r.connection.id))
        .collect();
    let mut distinct: Vec<ConnectionId> = ids.values().copied().collect();
    distinct.sort_by_key(|id| id.0);
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "four ends, four ids: {ids:?}");
    for (end, row) in &alive {
        assert_eq!(row.connection.netns, Some(end.0));
        assert!(row.connection.active);
    }

    // Closed inside a window: the rest of the bytes, with the same ids and namespaces.
    a.next("MOVED");
    b.next("MOVED");
    a.expect("CLOSED");
    b.expect("CLOSED");
    let closed = step_until(&mut monitor, &spaces, |rows| {
        exact(rows, 1) && rows.values().all(|r| !r.connection.active)
    });
    eprintln!("closed: {:#?}", summary(&closed));
    assert!(exact(&closed, 1), "closed, exact: {:#?}", summary(&closed));
    assert_eq!(closed.len(), 4, "{:#?}", summary(&closed));
    for (end, row) in &closed {
        assert_eq!(Some(&row.connection.id), ids.get(end), "same id: {end:?}");
        assert_eq!(row.connection.netns, Some(end.0));
        assert!(!row.connection.active, "closed: {row:?}");
    }

    let health = monitor.health().clone();
    eprintln!("{health:?}");
    if rung == Rung::TpBtf {
        assert_eq!(health.evictions, 0, "socket-local storage evicts nothing");
        assert_eq!(health.map_capacity, 0);
    }
    assert_eq!(health.namespaces_unreadable, 0, "{health:?}");
}

#[test]
fn same_four_tuple_in_two_namespaces_on_tp_btf() {
    same_four_tuple_in_two_namespaces(Rung::TpBtf);
}

#[test]
fn same_four_tuple_in_two_namespaces_on_tracepoint() {
    same_four_tuple_in_two_namespaces(Rung::Tracepoint);
}

/// Cost of the per-namespace reads: `cargo test --test kernel_namespaces -- --ignored
/// --nocapture`. Prints milliseconds per poll with the host's namespaces, then with 20 more.
#[test]
#[ignore]
fn cost_per_poll_with_more_namespaces() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !may_run() {
        return;
    }
    let time = |rung: Rung, label: &str| {
        let mut monitor = Monitor::open(&MonitorOptions {
            mode: ModeChoice::Ebpf,
            load: LoadOptions {
                rung: Some(rung),
                ..LoadOptions::default()
            },
            ..MonitorOptions::default()
        })
        .unwrap();
        monitor.observe().unwrap();
        let polls = 20;
        let start = Instant::now();
        for _ in 0..polls {
            monitor.observe().unwrap();
        }
        let per_poll = start.elapsed() / polls;
        let netns = flow_user::netns::discover(
            std::path::Path::new("/proc"),
            std::path::Path::new("/run/netns"),
        );
        eprintln!(
            "{rung} {label}: {} namespaces, {per_poll:?} per poll",
            netns.namespaces.len()
        );
    };
    for rung in [Rung::TpBtf, Rung::Tracepoint] {
        time(rung, "host");
    }
    let tag = format!("flowcost-{}", std::process::id());
    let spaces: Vec<Space> = (0..20)
        .map(|i| Space::new(format!("{tag}-{i}"), &[(100, 100)]))
        .collect();
    for rung in [Rung::TpBtf, Rung::Tracepoint] {
        time(rung, "+20");
    }
    drop(spaces);
}
