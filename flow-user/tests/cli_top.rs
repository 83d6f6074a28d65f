//! `flow top` as a person uses it: drawn in tmux and driven with keys, and as plain tables
//! when its output is piped.

mod support;

use std::{process::Command, time::Duration};

use support::{flow, has_nonzero_rate, privileged, tool, wait_for, Running, Transfer};

/// A 64 KiB write every 20 ms: about 3 MiB/s, for at most `limit`.
fn traffic(limit: Duration) -> Transfer {
    Transfer::start(64 * 1024, Duration::from_millis(20), limit)
}

/// A tmux server of our own (its own socket), killed when dropped.
struct Tmux {
    tmux: &'static str,
    socket: std::path::PathBuf,
}

impl Tmux {
    /// `name` keeps the servers of tests running in parallel apart.
    fn start(tmux: &'static str, name: &str, width: u16, height: u16) -> Tmux {
        let tmux = Tmux {
            tmux,
            socket: std::env::temp_dir().join(format!("flow-tmux-{name}-{}", std::process::id())),
        };
        let shell =
            "env -i PATH=/usr/bin:/bin TERM=xterm-256color PS1='$ ' bash --norc --noprofile";
        let width = width.to_string();
        let height = height.to_string();
        let args = [
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            &width,
            "-y",
            &height,
            shell,
        ];
        assert!(tmux.run(&args).status.success(), "tmux new-session");
        tmux
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(self.tmux)
            .args(["-u", "-f", "/dev/null", "-S"])
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success(), "tmux send-keys");
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    /// Waits (bounded) until the screen satisfies `check`; the last screen on failure.
    fn wait(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let found = wait_for(Duration::from_secs(20), || {
            last = self.screen();
            check(&last).then(|| last.clone())
        });
        found.unwrap_or_else(|| panic!("screen never showed {what}:\n{last}"))
    }

    fn value(&self, format: &str) -> String {
        let out = self.run(&["display-message", "-p", "-t", "top", format]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The screen line of the connection end whose local port is `port`, and its row index.
fn row_with_local_port(screen: &str, port: u16) -> Option<(usize, String)> {
    let local = format!("127.0.0.1:{port}");
    screen.lines().enumerate().find_map(|(i, line)| {
        let mut words = line.split_whitespace();
        words.next()?; // process/pid
        (words.next()? == local).then(|| (i, line.to_string()))
    })
}

/// Row indexes of the server end (receiving) and the client end (sending).
fn ends(screen: &str, transfer: &Transfer) -> Option<(usize, usize)> {
    let (server, _) = row_with_local_port(screen, transfer.port)?;
    let (client, _) = row_with_local_port(screen, transfer.client_port)?;
    Some((server, client))
}

#[test]
fn top_draws_sorts_and_quits_in_tmux() {
    if !privileged("top_draws_sorts_and_quits_in_tmux") {
        return;
    }
    let Some(tmux_path) = tool("tmux", "top_draws_sorts_and_quits_in_tmux") else {
        return;
    };
    let transfer = traffic(Duration::from_secs(60));
    let tmux = Tmux::start(tmux_path, "keys", 150, 30);
    let command = format!(
        "{} top --interval 500ms --port {}; echo FLOW-EXIT=$?",
        env!("CARGO_BIN_EXE_flow"),
        transfer.port
    );
    tmux.keys(&[&command, "Enter"]);

    // The header, and the receiving end with a rate above zero.
    let screen = tmux.wait("the header and a busy row for the test's connection", |s| {
        s.contains("flow top")
            && s.contains("sort: total")
            && row_with_local_port(s, transfer.port).is_some_and(|(_, row)| has_nonzero_rate(&row))
    });
    assert!(
        screen.contains("PROCESS/PID") && screen.contains("HISTORY"),
        "{screen}"
    );
    assert_eq!(
        tmux.value("#{alternate_on}"),
        "1",
        "draws on the alternate screen"
    );

    // r: receive rate first, so the server end leads; s: send rate, so the client end does.
    tmux.keys(&["r"]);
    tmux.wait("sort by rx: the receiving end first", |s| {
        s.contains("sort: rx")
            && s.contains("RX/S\u{25bc}")
            && ends(s, &transfer).is_some_and(|(srv, cli)| srv < cli)
    });
    tmux.keys(&["s"]);
    tmux.wait("sort by tx: the sending end first", |s| {
        s.contains("sort: tx")
            && s.contains("TX/S\u{25bc}")
            && ends(s, &transfer).is_some_and(|(srv, cli)| cli < srv)
    });
    tmux.keys(&["Space"]);
    tmux.wait("paused", |s| s.contains("[PAUSED]"));
    tmux.keys(&["Space"]);
    tmux.wait("resumed", |s| {
        !s.contains("[PAUSED]") && s.contains("sort: tx")
    });

    // Resizing redraws; q quits with 0 and gives the shell back.
    assert!(tmux
        .run(&["resize-window", "-t", "top", "-x", "100", "-y", "20"])
        .status
        .success());
    tmux.wait("the view after a resize", |s| {
        s.contains("flow top") && s.lines().count() <= 20
    });
    tmux.keys(&["q"]);
    tmux.wait("flow exiting with 0", |s| s.contains("FLOW-EXIT=0"));
    assert_eq!(
        tmux.value("#{alternate_on}"),
        "0",
        "left the alternate screen"
    );
    tmux.keys(&["echo READY-$((20+22))", "Enter"]);
    tmux.wait("a shell that runs commands", |s| s.contains("READY-42"));
    drop(transfer);
}

#[test]
fn top_gives_the_terminal_back_on_sigterm() {
    if !privileged("top_gives_the_terminal_back_on_sigterm") {
        return;
    }
    let Some(tmux_path) = tool("tmux", "top_gives_the_terminal_back_on_sigterm") else {
        return;
    };
    let tmux = Tmux::start(tmux_path, "sigterm", 120, 25);
    let command = format!(
        "{} top --interval 300ms; echo FLOW-EXIT=$?",
        env!("CARGO_BIN_EXE_flow")
    );
    tmux.keys(&[&command, "Enter"]);
    tmux.wait("the view", |s| s.contains("sort: total"));
    assert_eq!(tmux.value("#{alternate_on}"), "1");
    let shell: u32 = tmux.value("#{pane_pid}").parse().expect("pane pid");
    let flow = child_of(shell).expect("flow runs under the pane's shell");
    unsafe { libc::kill(flow as i32, libc::SIGTERM) };
    let screen = tmux.wait("flow exiting after SIGTERM", |s| exit_code(s).is_some());
    assert_eq!(exit_code(&screen), Some(0), "{screen}");
    assert!(!screen.contains("panicked"), "{screen}");
    assert_eq!(
        tmux.value("#{alternate_on}"),
        "0",
        "left the alternate screen"
    );
}

/// The status `echo FLOW-EXIT=$?` printed (not the typed command line).
fn exit_code(screen: &str) -> Option<i32> {
    screen.split("FLOW-EXIT=").skip(1).find_map(|rest| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

/// The first process whose parent is `parent` (from `/proc/<pid>/stat`).
fn child_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // The name in parentheses may hold spaces: fields resume after the last ')'.
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == parent).then_some(pid)
        })
}

#[test]
fn top_once_piped_prints_one_plain_table_with_the_connection() {
    if !privileged("top_once_piped_prints_one_plain_table_with_the_connection") {
        return;
    }
    let transfer = traffic(Duration::from_secs(30));
    let out = flow()
        .args(["top", "--once", "--interval", "500ms"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains('\u{1b}'),
        "no terminal control codes when piped"
    );
    assert_eq!(
        stdout.matches("PROCESS/PID").count(),
        1,
        "one table:\n{stdout}"
    );
    let row = row_with_local_port(&stdout, transfer.port)
        .unwrap_or_else(|| panic!("no row for port {}:\n{stdout}", transfer.port));
    assert!(has_nonzero_rate(&row.1), "{}", row.1);
    let pid = std::process::id();
    assert!(row.1.contains(&format!("/{pid}")), "owner shown: {}", row.1);

    // Filters: --pid keeps only ours, --protocol HTTP drops this UNKNOWN connection.
    let filtered = flow()
        .args([
            "top",
            "--once",
            "--interval",
            "300ms",
            "--pid",
            &pid.to_string(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&filtered.stdout);
    let rows: Vec<&str> = text.lines().skip(3).collect();
    assert!(!rows.is_empty(), "{text}");
    assert!(
        rows.iter().all(|r| r.contains(&format!("/{pid} "))),
        "{text}"
    );
    let port = transfer.port.to_string();
    let http = flow()
        .args([
            "top",
            "--once",
            "--interval",
            "300ms",
            "--port",
            &port,
            "--protocol",
            "http",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&http.stdout);
    assert!(
        http.status.success() && !text.contains(&format!(":{port}")),
        "{text}"
    );
    drop(transfer);
}

#[test]
fn top_piped_prints_a_table_every_interval_until_sigterm() {
    if !privileged("top_piped_prints_a_table_every_interval_until_sigterm") {
        return;
    }
    let transfer = traffic(Duration::from_secs(30));
    let port = transfer.port.to_string();
    let mut top = Running::spawn(flow().args(["top", "--interval", "300ms", "--port", &port]));
    let tables = wait_for(Duration::from_secs(20), || {
        let out = top.stdout();
        (out.matches("PROCESS/PID").count() >= 3).then_some(out)
    });
    let tables = tables.unwrap_or_else(|| panic!("fewer than 3 tables:\n{}", top.stdout()));
    assert!(tables.contains(&format!("127.0.0.1:{port}")), "{tables}");
    assert_eq!(
        top.stop_with(libc::SIGTERM, Duration::from_secs(10)),
        Some(0)
    );
    assert!(!top.stderr().contains("panicked"), "{}", top.stderr());
    drop(transfer);
}

// Grouped views. The traffic comes from a worker process of its own (this test binary run
// again with FLOW_TOP_WORKER set, see `grouped_views_worker`), so that the process row holds
// exactly what the worker moved and nothing the other tests of this binary move at the same
// time; for the container view the worker is first moved into a cgroup named like Docker's.

/// Env var that makes `grouped_views_worker` act: `<client bytes>,<server bytes>`.
const WORKER: &str = "FLOW_TOP_WORKER";

/// Not a test by itself (it returns at once): the worker of the grouped-view tests. On a line
/// on stdin it opens a loopback connection to itself, sends the first number of bytes from the
/// client end and the second back from the server end, reads all of both, prints
/// `WORKER-MOVED`, and
/// keeps the connection open until stdin closes. One process, both ends: its process row moves
/// `client + server` bytes each way.
#[test]
fn grouped_views_worker() {
    use std::io::{BufRead, Read, Write};
    let Ok(spec) = std::env::var(WORKER) else {
        return;
    };
    let (up, down) = spec.split_once(',').expect("FLOW_TOP_WORKER=up,down");
    let (up, down): (usize, usize) = (up.parse().unwrap(), down.parse().unwrap());
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    stdin.read_line(&mut line).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let mut buf = vec![0u8; up.max(down)];
    client.write_all(&vec![1u8; up]).unwrap();
    server.read_exact(&mut buf[..up]).unwrap();
    server.write_all(&vec![2u8; down]).unwrap();
    client.read_exact(&mut buf[..down]).unwrap();
    println!("WORKER-MOVED");
    std::io::stdout().flush().unwrap();
    // Until the test closes stdin: the connection stays open (no close path involved).
    let _ = stdin.read_to_end(&mut Vec::new());
}

/// The worker: a child process that moves its bytes when told, and is killed (and its cgroups
/// removed, deepest first) when dropped, also when an assertion failed.
struct Worker {
    child: std::process::Child,
    moved: std::sync::mpsc::Receiver<()>,
    cgroups: Vec<std::path::PathBuf>,
}

impl Worker {
    fn spawn(up: usize, down: usize) -> Worker {
        use std::{io::BufRead, process::Stdio};
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "grouped_views_worker",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WORKER, format!("{up},{down}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the worker");
        let stdout = child.stdout.take().unwrap();
        let (tell, moved) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                // The harness may print `test … ... ` on the same line first.
                if line.is_ok_and(|l| l.trim_end().ends_with("WORKER-MOVED")) {
                    let _ = tell.send(());
                }
            }
        });
        Worker {
            child,
            moved,
            cgroups: Vec::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Moves the worker into `flowtest-<pid>/docker-<id>.scope` under the cgroup2 mount;
    /// returns the container id.
    fn move_into_docker_cgroup(&mut self) -> String {
        let mount = cgroup2_mount().expect("a cgroup2 mount in /proc/self/mountinfo");
        let id = container_id();
        let top = mount.join(format!("flowtest-{}", std::process::id()));
        let scope = top.join(format!("docker-{id}.scope"));
        for dir in [&top, &scope] {
            std::fs::create_dir(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            self.cgroups.push(dir.clone());
        }
        std::fs::write(scope.join("cgroup.procs"), self.pid().to_string())
            .unwrap_or_else(|e| panic!("moving the worker into {}: {e}", scope.display()));
        id
    }

    /// Tells the worker to move its bytes and waits (bounded) until it has.
    fn go(&mut self) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
        self.moved
            .recv_timeout(Duration::from_secs(20))
            .expect("the worker moved its bytes");
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for dir in self.cgroups.iter().rev() {
            // Empty a moment after its last task exits.
            let gone = wait_for(Duration::from_secs(5), || match std::fs::remove_dir(dir) {
                Ok(()) => Some(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(()),
                Err(_) => None,
            });
            if gone.is_none() {
                eprintln!("could not remove {}", dir.display());
            }
        }
    }
}

/// Where cgroup v2 is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts).
fn cgroup2_mount() -> Option<std::path::PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        (after.split_whitespace().next()? == "cgroup2")
            .then(|| before.split_whitespace().nth(4).map(Into::into))?
    })
}

/// 64 hex digits, different per run.
fn container_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let seed = nanos ^ (u128::from(std::process::id()) << 64);
    format!(
        "{:032x}{:032x}",
        seed,
        seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    )
}

/// The words of the screen line whose first word is `key`.
fn line_of<'a>(screen: &'a str, key: &str) -> Option<Vec<&'a str>> {
    screen.lines().find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        (words.first() == Some(&key)).then_some(words)
    })
}

/// A grouped row shows `total` bytes received and sent since the start (its last four words:
/// `700 B  700 B`), `<1 KiB` so that the screen prints it to the byte.
fn shows_totals(words: &[&str], total: usize) -> bool {
    let total = total.to_string();
    words.len() >= 4 && words[words.len() - 4..] == [total.as_str(), "B", total.as_str(), "B"]
}

#[test]
fn top_groups_by_process_and_container_in_tmux() {
    let test = "top_groups_by_process_and_container_in_tmux";
    if !privileged(test) {
        return;
    }
    let Some(tmux_path) = tool("tmux", test) else {
        return;
    };
    // 500 + 200 bytes each way: printed to the byte.
    let (up, down) = (500, 200);
    let mut worker = Worker::spawn(up, down);
    let id = worker.move_into_docker_cgroup();
    let tmux = Tmux::start(tmux_path, "groups", 150, 30);
    let command = format!(
        "{} top --interval 500ms --pid {}; echo FLOW-EXIT=$?",
        env!("CARGO_BIN_EXE_flow"),
        worker.pid()
    );
    tmux.keys(&[&command, "Enter"]);
    tmux.wait("the connection view", |s| {
        s.contains("by connection") && s.contains("PROCESS/PID")
    });
    tmux.keys(&["g"]);
    tmux.wait("the process view", |s| {
        s.contains("by process") && s.contains("RX TOTAL") && s.contains("CONNS")
    });
    // Moved after flow started: the totals are everything the worker moved.
    worker.go();
    let owner_suffix = format!("/{}", worker.pid());
    // Both ends are the worker's: one row with both directions' bytes.
    tmux.wait("the worker's process row with its totals", |s| {
        s.lines().any(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            words.first().is_some_and(|w| w.ends_with(&owner_suffix))
                && shows_totals(&words, up + down)
        })
    });

    tmux.keys(&["g"]);
    let short = &id[..12];
    let screen = tmux.wait("the container view with the worker's container", |s| {
        s.contains("by container")
            && s.contains("CONTAINER/SERVICE")
            && line_of(s, short).is_some_and(|w| shows_totals(&w, up + down))
    });
    assert!(!screen.contains(&owner_suffix), "{screen}");
    tmux.keys(&["g"]);
    tmux.wait("the remote-host view", |s| {
        s.contains("by remote")
            && line_of(s, "127.0.0.1").is_some_and(|w| shows_totals(&w, up + down))
    });
    tmux.keys(&["g"]);
    tmux.wait("the connection view again", |s| s.contains("by connection"));
    tmux.keys(&["q"]);
    tmux.wait("flow exiting with 0", |s| s.contains("FLOW-EXIT=0"));
    drop(worker);
}

/// Runs `flow top --once --json` with `args` over a 4 s interval while the worker moves its
/// bytes inside it (after the baseline), and returns the JSON rows.
fn once_json_while_moving(worker: &mut Worker, args: &[&str]) -> Vec<serde_json::Value> {
    let mut top = Running::spawn(
        flow()
            .args(["top", "--once", "--json", "--interval", "4s"])
            .args(args),
    );
    // The mode line comes just before the baseline; the worker moves a second later.
    wait_for(Duration::from_secs(20), || {
        top.stderr().contains("flow: mode").then_some(())
    })
    .unwrap_or_else(|| panic!("flow never started: {}", top.stderr()));
    std::thread::sleep(Duration::from_secs(1));
    worker.go();
    let status = wait_for(Duration::from_secs(20), || {
        top.child.try_wait().ok().flatten()
    })
    .expect("flow top --once ends");
    assert!(status.success(), "{}", top.stderr());
    let out = top.stdout();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("JSON ({e}):\n{out}"))
}

#[test]
fn top_once_grouped_json_totals_equal_the_bytes_moved() {
    let test = "top_once_grouped_json_totals_equal_the_bytes_moved";
    if !privileged(test) {
        return;
    }
    let (up, down) = (300_000, 50_000);
    let moved = (up + down) as u64;

    let mut worker = Worker::spawn(up, down);
    let pid = worker.pid().to_string();
    let rows = once_json_while_moving(&mut worker, &["--group", "process", "--pid", &pid]);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let row = &rows[0];
    assert_eq!(row["group"], "process");
    assert!(
        row["key"]
            .as_str()
            .is_some_and(|k| k.ends_with(&format!("/{pid}"))),
        "{row:#}"
    );
    assert_eq!(row["connections"], 2, "{row:#}");
    for field in ["tx_bytes", "rx_bytes", "total_tx_bytes", "total_rx_bytes"] {
        assert_eq!(row[field].as_u64(), Some(moved), "{field}: {row:#}");
    }
    assert!(
        row["tx_bytes_per_second"].as_u64().is_some_and(|r| r > 0),
        "{row:#}"
    );
    drop(worker);

    // In a Docker-named cgroup: one row keyed by the container's short id (no name: there is
    // no Docker here to name it), found with --container by an id prefix.
    let mut worker = Worker::spawn(up, down);
    let id = worker.move_into_docker_cgroup();
    let rows = once_json_while_moving(
        &mut worker,
        &["--group", "container", "--container", &id[..8]],
    );
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let row = &rows[0];
    assert_eq!(row["group"], "container");
    assert_eq!(row["key"], &id[..12], "{row:#}");
    for field in ["total_tx_bytes", "total_rx_bytes"] {
        assert_eq!(row[field].as_u64(), Some(moved), "{field}: {row:#}");
    }
    drop(worker);
}
