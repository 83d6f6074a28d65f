//! procfs mode reads every network namespace once (issue 13): two namespaces the test creates,
//! the same 4-tuple in each with different exact byte counts both ways, are four connections
//! (two ends × two namespaces), each with its own counters, id and `netns`, in the socket stats,
//! the tracker's bandwidth and history; and unprivileged, `flow --mode procfs` still lists its
//! own namespace and says in one line which namespaces it could not read.
//!
//! Needs root (`ip netns add`); under `CI` a missing privilege fails the test instead of
//! skipping it. A guard kills the processes and deletes the namespaces, also on failure.

use std::{
    collections::{HashMap, HashSet},
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener},
    os::unix::fs::MetadataExt,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use flow_user::{ModeChoice, Monitor, MonitorOptions, SocketStats};

/// The server's and the client's port: the same in both namespaces.
const SERVER: u16 = 47_001;
const CLIENT: u16 = 47_002;

/// (client → server, server → client) bytes moved at the start, per namespace.
const FIRST: [(usize, usize); 2] = [(123_457, 5_003), (70_001, 9_999)];
/// And during the measured window.
const WINDOW: [(usize, usize); 2] = [(31_337, 2_021), (8_191, 65_537)];

/// One process per namespace holding both ends of the connection; each line on its stdin
/// (`UP DOWN`) moves UP bytes client → server and DOWN back, then it prints `done`. It keeps the
/// connection open until its stdin closes.
const HOLDER: &str = r#"
import socket, sys
port, client_port = int(sys.argv[1]), int(sys.argv[2])
l = socket.socket(); l.bind(("127.0.0.1", port)); l.listen(1)
c = socket.socket(); c.bind(("127.0.0.1", client_port)); c.connect(("127.0.0.1", port))
s, _ = l.accept()
def move(a, b, n):
    a.sendall(b"x" * n)
    got = 0
    while got < n:
        d = b.recv(65536)
        if not d: raise SystemExit("closed early")
        got += len(d)
print("ready", flush=True)
for line in sys.stdin:
    up, down = map(int, line.split())
    move(c, s, up); move(s, c, down)
    print("done", flush=True)
"#;

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

fn addrs(stream: &std::net::TcpStream) -> (SocketAddr, SocketAddr) {
    (stream.local_addr().unwrap(), stream.peer_addr().unwrap())
}

/// True when this test may run (root). Without root: under CI a failure, elsewhere said loudly.
fn privileged() -> bool {
    if is_root() {
        return true;
    }
    assert!(
        !in_ci(),
        "CI runs this as root: creating network namespaces needs it"
    );
    eprintln!("NOT RUN: this test creates network namespaces and needs root (CI runs it)");
    false
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A holder's stdin and the lines it printed.
struct Holder {
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Holder {
    fn expect(&self, line: &str) {
        let got = self
            .lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no `{line}` from the holder in 20 s"));
        assert_eq!(got, line);
    }

    fn transfer(&mut self, (up, down): (usize, usize)) {
        writeln!(self.stdin, "{up} {down}").unwrap();
        self.stdin.flush().unwrap();
        self.expect("done");
    }
}

/// Two namespaces with one holder each; dropping it kills the holders and deletes the
/// namespaces.
struct Namespaces {
    names: Vec<String>,
    children: Vec<Child>,
    holders: Arc<Mutex<Vec<Holder>>>,
}

impl Namespaces {
    fn create(tag: &str) -> Namespaces {
        let mut namespaces = Namespaces {
            names: Vec::new(),
            children: Vec::new(),
            holders: Arc::new(Mutex::new(Vec::new())),
        };
        let python = ["/usr/bin/python3", "/bin/python3"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("python3");
        for (i, side) in ["a", "b"].into_iter().enumerate() {
            let name = format!("flowtest-p-{}-{tag}{side}", std::process::id());
            // A leftover of a crashed run with this pid.
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
            run("ip", &["netns", "add", &name]);
            namespaces.names.push(name.clone());
            run("ip", &["-n", &name, "link", "set", "lo", "up"]);
            let mut child = Command::new("ip")
                .args(["netns", "exec", &name, python, "-c", HOLDER])
                .args([SERVER.to_string(), CLIENT.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let stdin = child.stdin.take().unwrap();
            let stdout = child.stdout.take().unwrap();
            namespaces.children.push(child);
            let (send, lines) = mpsc::channel();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if send.send(line).is_err() {
                        return;
                    }
                }
            });
            let mut holder = Holder { stdin, lines };
            holder.expect("ready");
            holder.transfer(FIRST[i]);
            namespaces.holders.lock().unwrap().push(holder);
        }
        namespaces
    }

    /// The namespace's inode (`stat -L -c %i /run/netns/<name>`).
    fn inode(&self, i: usize) -> u64 {
        std::fs::metadata(format!("/run/netns/{}", self.names[i]))
            .unwrap()
            .ino()
    }

    /// The holder's pid (`ip netns exec` execs it).
    fn pid(&self, i: usize) -> u32 {
        self.children[i].id()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.holders.lock().map(|mut h| h.clear()).ok();
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

fn server() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], SERVER))
}

fn client() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], CLIENT))
}

/// The rows of `netns` on the test's 4-tuple, by local address.
fn ends<T>(
    rows: &[T],
    netns: u64,
    connection: impl Fn(&T) -> &flow_user::NetConnection,
) -> HashMap<SocketAddr, &T> {
    let mine: Vec<&T> = rows
        .iter()
        .filter(|r| {
            let c = connection(r);
            c.netns == Some(netns)
                && ((c.local, c.remote) == (client(), server())
                    || (c.local, c.remote) == (server(), client()))
        })
        .collect();
    let by_local: HashMap<SocketAddr, &T> =
        mine.iter().map(|r| (connection(r).local, *r)).collect();
    assert_eq!(
        (mine.len(), by_local.len()),
        (2, 2),
        "netns {netns}: one row per end"
    );
    by_local
}

#[test]
fn same_four_tuple_in_two_namespaces_is_four_connections_with_exact_bytes() {
    if !privileged() {
        return;
    }
    let namespaces = Namespaces::create("");
    let inodes = [namespaces.inode(0), namespaces.inode(1)];
    assert_ne!(inodes[0], inodes[1]);
    let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
    assert!(!inodes.contains(&own));

    let mut monitor = Monitor::open(&MonitorOptions {
        mode: ModeChoice::Procfs,
        ..MonitorOptions::default()
    })
    .unwrap();
    eprintln!("{}", monitor.describe());
    assert!(
        !monitor.describe().contains("not readable"),
        "root reads every namespace: {}",
        monitor.describe()
    );

    // Socket stats: four rows, each namespace's own exact counters, ids, netns and owner.
    let stats = monitor.read_socket_stats(None).unwrap();
    let mut ids = HashSet::new();
    for (i, &netns) in inodes.iter().enumerate() {
        let rows = ends(&stats, netns, |s: &SocketStats| &s.connection);
        let (up, down) = FIRST[i];
        let (c, s) = (rows[&client()], rows[&server()]);
        eprintln!(
            "netns {netns}: client tx {} rx {} id {}; server tx {} rx {} id {}",
            c.tx_bytes, c.rx_bytes, c.connection.id, s.tx_bytes, s.rx_bytes, s.connection.id
        );
        assert_eq!((c.tx_bytes, c.rx_bytes), (up as u64, down as u64), "{c:#?}");
        assert_eq!((s.tx_bytes, s.rx_bytes), (down as u64, up as u64), "{s:#?}");
        let pid = namespaces.pid(i);
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let cgroup = flow_user::attribution::cgroup::cgroup_v2_line(&cgroup).map(str::to_owned);
        for row in [c, s] {
            assert!(row.connection.cookie.is_some_and(|c| c != 0), "{row:#?}");
            assert!(row.tx_packets > 0 && row.rx_packets > 0, "{row:#?}");
            assert_eq!(row.connection.pid, Some(pid), "{row:#?}");
            assert_eq!(
                row.connection.attribution.cgroup.as_deref(),
                cgroup.as_deref(),
                "the owner's /proc/<pid>/cgroup"
            );
            assert!(ids.insert(row.connection.id), "distinct ids: {row:#?}");
        }
    }
    assert_eq!(monitor.health().namespaces_unreadable, 0);

    // The tracker: bandwidth over a window in which each namespace moves its own known bytes
    // (the wait between the window's two observations is the transfer itself).
    let holders = namespaces.holders.clone();
    monitor.set_sleeper(Box::new(move |_| {
        for (holder, bytes) in holders.lock().unwrap().iter_mut().zip(WINDOW) {
            holder.transfer(bytes);
        }
        Ok(())
    }));
    let window = monitor
        .connection_bandwidth(Duration::from_secs(1))
        .unwrap();
    let snapshot = monitor.take_snapshot().unwrap();
    let history = monitor.connection_history(Duration::ZERO);
    for (i, &netns) in inodes.iter().enumerate() {
        let rows = ends(&window, netns, |b| &b.connection);
        let (up, down) = WINDOW[i];
        let (c, s) = (rows[&client()], rows[&server()]);
        eprintln!(
            "window, netns {netns}: client tx {} rx {}; server tx {} rx {}",
            c.tx_bytes, c.rx_bytes, s.tx_bytes, s.rx_bytes
        );
        assert_eq!((c.tx_bytes, c.rx_bytes), (up as u64, down as u64), "{c:#?}");
        assert_eq!((s.tx_bytes, s.rx_bytes), (down as u64, up as u64), "{s:#?}");
        let (first_up, first_down) = FIRST[i];
        for (row, tx, rx) in [
            (c, first_up + up, first_down + down),
            (s, first_down + down, first_up + up),
        ] {
            let id = row.connection.id;
            assert!(ids.contains(&id), "the id of the stats: {row:#?}");
            let snap: Vec<_> = snapshot.iter().filter(|s| s.connection_id == id).collect();
            assert_eq!(snap.len(), 1, "{id} once in the snapshot");
            assert_eq!(
                (snap[0].counters.tx_bytes, snap[0].counters.rx_bytes),
                (tx as u64, rx as u64),
                "{id}: totals"
            );
            assert_eq!(
                history.iter().filter(|h| h.connection_id == id).count(),
                1,
                "{id}: one history of its own"
            );
        }
    }
}

/// Runs `flow <args>` as `nobody`; (stdout, stderr).
fn flow_as_nobody(args: &[&str]) -> (String, String) {
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv", "/usr/sbin/setpriv"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("setpriv (util-linux) drops to nobody");
    let mut child = Command::new(setpriv)
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_flow"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).unwrap();
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("flow {args:?} did not finish in 30 s");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(status.success(), "flow {args:?}: {status}\n{stderr}");
    (stdout, stderr)
}

#[test]
fn unprivileged_lists_its_own_namespace_and_says_once_what_it_could_not_read() {
    if !privileged() {
        return;
    }
    let namespaces = Namespaces::create("u");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let near = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (far, _) = listener.accept().unwrap();
    let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino();

    let (stdout, stderr) = flow_as_nobody(&["--mode", "procfs", "connections", "--json"]);
    eprintln!("as nobody: {}", stderr.trim());
    // One line: the mode, and what could not be read.
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let line = stderr.lines().next().unwrap();
    assert!(line.starts_with("flow: mode procfs: "), "{line}");
    let notice = line
        .split_once("; ")
        .map(|(_, notice)| notice)
        .unwrap_or_else(|| panic!("no notice: {line}"));
    let (count, rest) = notice.split_once(' ').unwrap();
    let count: usize = count.parse().unwrap_or_else(|_| panic!("{notice}"));
    // Ours are found as mounts under /run/netns with no process of nobody's in them.
    assert!(count >= 2, "at least the test's two: {notice}");
    assert!(
        rest.starts_with(
            "network namespaces not readable without CAP_SYS_ADMIN (counters unknown there; \
             connections of"
        ),
        "{notice}"
    );
    assert!(
        notice.contains("processes not visible (permission denied)"),
        "root's processes: {notice}"
    );

    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    let mut ids = HashSet::new();
    for stream in [&near, &far] {
        let (local, remote) = addrs(stream);
        let matching: Vec<_> = rows
            .iter()
            .filter(|r| r["local"] == local.to_string() && r["remote"] == remote.to_string())
            .collect();
        assert_eq!(matching.len(), 1, "{local} -> {remote} listed once");
        assert_eq!(matching[0]["netns"], own, "{:#}", matching[0]);
        assert!(ids.insert(matching[0]["id"].as_str().unwrap().to_owned()));
    }
    // The namespaces nobody cannot read are not listed (rather than guessed).
    let inodes = [namespaces.inode(0), namespaces.inode(1)];
    assert!(
        rows.iter()
            .all(|r| !inodes.iter().any(|&i| r["netns"] == i)),
        "nothing listed from the unreadable namespaces"
    );
}

/// What a poll costs per namespace: `cargo test --release --test procfs_namespaces --
/// --ignored --nocapture cost` (root). The namespaces are empty (mounts, loopback up), yet each
/// costs the kernel's walk of the host-wide established hash, four times (`tcp`, `tcp6`, and a
/// sock_diag dump per family), unless `net.ipv4.tcp_child_ehash_entries` gave it a hash of its
/// own; the thread and `setns` are microseconds.
#[test]
#[ignore = "a measurement, not a check"]
fn cost_of_a_poll_per_namespace() {
    if !privileged() {
        return;
    }
    use flow_user::procfs::NamespaceReader;
    const READS: u32 = 20;
    struct Cleanup(Vec<String>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for name in &self.0 {
                let _ = Command::new("ip").args(["netns", "del", name]).output();
            }
        }
    }
    let time = || {
        let mut reader = NamespaceReader::new("/proc".into(), "/run/netns".into());
        reader.read().unwrap();
        let start = Instant::now();
        let mut namespaces = 0;
        for _ in 0..READS {
            namespaces = reader.read().unwrap().namespaces.len();
        }
        (namespaces, start.elapsed() / READS)
    };
    let (base_count, base) = time();
    eprintln!("{base_count} namespaces: {base:?} per read");
    let mut created = Cleanup(Vec::new());
    for n in [8, 32] {
        while created.0.len() < n {
            let name = format!("flowtest-p-{}-cost{}", std::process::id(), created.0.len());
            run("ip", &["netns", "add", &name]);
            created.0.push(name.clone());
            run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        }
        let (count, took) = time();
        eprintln!(
            "{count} namespaces: {took:?} per read, {:?} per added namespace",
            took.saturating_sub(base) / (count - base_count).max(1) as u32
        );
    }
}
