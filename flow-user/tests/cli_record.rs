//! `flow record` and `flow report` end to end: exact totals across a `kill -9` and a restart
//! (real kernel, as root), `--at`, plots, and one-line errors on bad input. All traffic stays on
//! 127.0.0.1; every wait ends by a deadline.

mod support;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use serde_json::Value;
use support::{flow, privileged, tool, wait_for};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flow-cli-record-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn now_rfc3339(offset_ms: i64) -> String {
    let now = jiff::Timestamp::now().as_millisecond() + offset_ms;
    jiff::Timestamp::from_millisecond(now).unwrap().to_string()
}

/// A running `flow record`, stderr collected; killed when dropped.
struct Recorder {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Recorder {
    fn start(db: &Path) -> Recorder {
        let mut child = flow()
            .args(["record", "--interval", "200ms", "--db"])
            .arg(db)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn flow record");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let recorder = Recorder { child, stderr };
        let ready = wait_for(Duration::from_secs(30), || {
            recorder.stderr().contains("recording into").then_some(())
        });
        assert!(
            ready.is_some(),
            "recorder never started: {}",
            recorder.stderr()
        );
        recorder
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn signal(&mut self, signal: i32) -> Option<i32> {
        unsafe { libc::kill(self.child.id() as i32, signal) };
        wait_for(Duration::from_secs(15), || {
            self.child.try_wait().ok().flatten()
        })
        .map(|s| s.code().unwrap_or(-1))
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Both ends of one loopback connection.
struct Pair {
    client: TcpStream,
    server: TcpStream,
}

impl Pair {
    fn open() -> Pair {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        Pair { client, server }
    }

    /// The client sends `n` bytes and the server reads every one.
    fn send(&mut self, n: usize) {
        let data = vec![0x5a_u8; n];
        let mut writer = self.client.try_clone().unwrap();
        let sender = thread::spawn(move || writer.write_all(&data).unwrap());
        let mut buf = vec![0u8; n];
        self.server
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        self.server.read_exact(&mut buf).unwrap();
        sender.join().unwrap();
    }

    fn client_addr(&self) -> String {
        self.client.local_addr().unwrap().to_string()
    }

    fn server_addr(&self) -> String {
        self.server.local_addr().unwrap().to_string()
    }
}

fn run(args: &[&str]) -> Output {
    flow()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run flow")
}

fn report_json(db: &Path, args: &[&str]) -> Value {
    let mut all = vec![
        "report",
        "--db",
        db.to_str().unwrap(),
        "--json",
        "--top",
        "0",
    ];
    all.extend_from_slice(args);
    let out = run(&all);
    assert!(
        out.status.success(),
        "flow {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("report --json parses")
}

/// The rows of the connection `local` → `remote` (the report is host-wide: another
/// connection may have had the same local port in the range).
fn rows_of<'a>(report: &'a Value, (local, remote): (&str, &str)) -> Vec<&'a Value> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["local"] == local && r["remote"] == remote)
        .collect()
}

fn totals(report: &Value, ends: (&str, &str)) -> (u64, u64) {
    let local = ends.0;
    let rows = rows_of(report, ends);
    assert_eq!(rows.len(), 1, "{local} once in {report:#}");
    (
        rows[0]["tx_bytes"].as_u64().unwrap(),
        rows[0]["rx_bytes"].as_u64().unwrap(),
    )
}

#[test]
fn exact_totals_across_a_kill_and_a_restart() {
    let test = "exact_totals_across_a_kill_and_a_restart";
    if !privileged(test) {
        return;
    }
    let Some(sqlite3) = tool("sqlite3", test) else {
        return;
    };
    let dir = temp_dir("exact");
    let db = dir.join("flow.db");
    let since = now_rfc3339(-2000);

    let mut recorder = Recorder::start(&db);
    let mut closing = Pair::open();
    let mut live = Pair::open();
    closing.send(100_000);
    live.send(30_000);
    thread::sleep(Duration::from_millis(800));
    let during_first = now_rfc3339(0);
    thread::sleep(Duration::from_millis(400));
    let (closing_client, closing_server) = (closing.client_addr(), closing.server_addr());
    drop(closing);
    // Long enough for the close and the last bytes to be committed.
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(recorder.signal(libc::SIGKILL), Some(-1));

    let check = Command::new(sqlite3)
        .arg(&db)
        .arg("PRAGMA integrity_check")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&check.stdout).trim(),
        "ok",
        "{check:?}"
    );

    let mut recorder = Recorder::start(&db);
    let mut later = Pair::open();
    later.send(5_000);
    live.send(40_000);
    thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        recorder.signal(libc::SIGTERM),
        Some(0),
        "{}",
        recorder.stderr()
    );
    assert!(!recorder.stderr().contains("panicked"));

    let report = report_json(&db, &["--since", &since, "--by", "connection"]);
    let (live_client, live_server) = (live.client_addr(), live.server_addr());
    let (later_client, later_server) = (later.client_addr(), later.server_addr());
    let closing_out = (closing_client.as_str(), closing_server.as_str());
    let live_out = (live_client.as_str(), live_server.as_str());
    let later_out = (later_client.as_str(), later_server.as_str());
    assert_eq!(totals(&report, closing_out), (100_000, 0));
    assert_eq!(
        totals(&report, (&closing_server, &closing_client)),
        (0, 100_000)
    );
    assert_eq!(totals(&report, live_out), (70_000, 0));
    assert_eq!(totals(&report, (&live_server, &live_client)), (0, 70_000));
    assert_eq!(totals(&report, later_out), (5_000, 0));
    let closed = &rows_of(&report, closing_out)[0];
    assert!(closed["closed"].is_string(), "{closed}");
    for row in report["rows"].as_array().unwrap() {
        for key in [
            "connection",
            "tx_packets",
            "rx_packets",
            "peak_bytes_per_second",
            "first_seen",
            "last_seen",
        ] {
            assert!(!row[key].is_null(), "{key} in {row}");
        }
    }

    // The instant during the first recording: both connections then, not the later one.
    let at = report_json(&db, &["--at", &during_first]);
    assert_eq!(rows_of(&at, closing_out).len(), 1, "{at:#}");
    assert_eq!(rows_of(&at, live_out).len(), 1, "{at:#}");
    assert!(rows_of(&at, later_out).is_empty(), "{at:#}");

    // Grouped by process, the totals add up too (all of it is this test's traffic or more).
    let by_process = report_json(&db, &["--since", &since, "--by", "process"]);
    let ours: u64 = by_process["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tx_bytes"].as_u64().unwrap())
        .sum();
    assert!(ours >= 175_000, "{by_process:#}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A store written through the same writer, without a kernel (`--synthetic`).
fn synthetic_store(name: &str, duration: &str) -> PathBuf {
    let dir = temp_dir(name);
    let db = dir.join("flow.db");
    let out = run(&[
        "record",
        "--db",
        db.to_str().unwrap(),
        "--synthetic",
        duration,
        "--synthetic-connections",
        "40",
        "--synthetic-active",
        "8",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    db
}

#[test]
fn plots_are_png_and_svg_with_the_top_talkers() {
    let db = synthetic_store("plot", "10m");
    let dir = db.parent().unwrap();
    let png = dir.join("top.png");
    let svg = dir.join("top.svg");
    for file in [&png, &svg] {
        let out = run(&[
            "report",
            "--db",
            db.to_str().unwrap(),
            "--since",
            "15m",
            "--by",
            "process",
            "--top",
            "3",
            "--plot",
            file.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&bytes[12..16], b"IHDR");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (1200, 600));
    assert!(bytes.len() > 10_000, "a drawn picture, not a blank one");

    let report = report_json(&db, &["--since", "15m", "--by", "process"]);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("width=\"1200\"") && text.contains("height=\"600\""));
    for row in report["rows"].as_array().unwrap().iter().take(3) {
        let name = row["process"].as_str().unwrap();
        assert!(
            text.lines().any(|line| line.trim() == name),
            "the legend names {name}"
        );
    }
    assert!(
        text.contains("KiB/s") || text.contains("MiB/s"),
        "units on the axis"
    );
}

/// Exits non-zero with one line on stderr that contains `says`.
fn fails_with_one_line(args: &[&str], says: &str) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.contains(says), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn bad_input_is_one_line_and_a_non_zero_exit() {
    let db = synthetic_store("bad", "2m");
    let db = db.to_str().unwrap();
    fails_with_one_line(&["report", "--db", db, "--at", "25:61"], "is not a time");
    fails_with_one_line(
        &["report", "--db", db, "--at", "yesterday-ish"],
        "is not a time",
    );
    fails_with_one_line(
        &["report", "--db", db, "--since", "2999-01-01T00:00:00Z"],
        "in the future",
    );
    fails_with_one_line(
        &["report", "--db", db, "--since", "10m", "--until", "20m"],
        "later than",
    );
    fails_with_one_line(
        &["report", "--db", db, "--since", "10m", "--plot", "x.gif"],
        ".png or .svg",
    );

    let dir = temp_dir("corrupt");
    let corrupt = dir.join("corrupt.db");
    std::fs::write(&corrupt, vec![0x42u8; 16384]).unwrap();
    let corrupt = corrupt.to_str().unwrap();
    fails_with_one_line(
        &["report", "--db", corrupt, "--since", "1h"],
        "not a flow store",
    );
    fails_with_one_line(
        &["record", "--db", corrupt, "--synthetic", "1m"],
        "not a flow store",
    );
    let missing = dir.join("missing.db");
    fails_with_one_line(
        &["report", "--db", missing.to_str().unwrap(), "--since", "1h"],
        "no such store",
    );
    fails_with_one_line(
        &[
            "record",
            "--db",
            "/nonexistent-dir/flow.db",
            "--synthetic",
            "1m",
        ],
        "no such directory",
    );
    // Unreadable: a directory where the file should be.
    fails_with_one_line(
        &["report", "--db", dir.to_str().unwrap(), "--since", "1h"],
        dir.to_str().unwrap(),
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(Path::new(db).parent().unwrap());
}
