//! Expected bad conditions end in one clear line, or are counted and shown: never a crash.

mod common;

use std::{
    io::{Read, Write},
    net::TcpListener,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use common::{load, Pair};
use flow_user::ebpf::LoadOptions;

#[test]
fn without_privileges_ebpf_mode_is_one_clear_line() {
    if !common::may_load() {
        return;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_flow"))
        .args(["--mode", "ebpf", "bandwidth", "--window", "100ms"])
        .output()
        .expect("setpriv (util-linux) runs the monitor as nobody");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("needs root or CAP_BPF+CAP_PERFMON"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}

/// More live sockets than map entries: the LRU evicts, the monitor counts it, nothing breaks.
#[test]
fn a_map_smaller_than_the_live_sockets_counts_evictions() {
    const CAPACITY: u32 = 16;
    const PAIRS: usize = 64;
    let Some(program) = load(&LoadOptions {
        map_entries: CAPACITY,
        ..common::options()
    }) else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let pairs: Vec<Pair> = (0..PAIRS).map(|_| Pair::open(&listener)).collect();
    for pair in &pairs {
        (&pair.client).write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        (&pair.server).read_exact(&mut buf).unwrap();
    }
    let live = program.sockets().unwrap().len() as u64;
    let stats = program.stats().unwrap();
    assert!(
        live <= u64::from(CAPACITY),
        "the map holds at most its capacity"
    );
    assert!(
        stats.inserts >= 2 * PAIRS as u64,
        "every socket got an entry"
    );
    // 128 sockets moved data through a 16-entry map: at least 112 were evicted.
    assert!(
        stats.evictions(&stats, live) >= (2 * PAIRS) as u64 - u64::from(CAPACITY),
        "evictions {} (inserts {}, closes {}, live {live})",
        stats.evictions(&stats, live),
        stats.inserts,
        stats.closes
    );
    assert_eq!(stats.insert_failures, 0);
    drop(program);

    // The CLI says so on stderr and still succeeds.
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_traffic = Arc::clone(&stop);
    let traffic = thread::spawn(move || {
        // Until flow has measured, and never longer than 10 s.
        let start = Instant::now();
        while !stop_traffic.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(10) {
            for pair in &pairs {
                (&pair.client).write_all(b"x").unwrap();
                let mut buf = [0u8; 1];
                (&pair.server).read_exact(&mut buf).unwrap();
            }
            thread::sleep(Duration::from_millis(30));
        }
    });
    let out = Command::new(env!("CARGO_BIN_EXE_flow"))
        .args([
            "--mode",
            "ebpf",
            "--map-entries",
            "16",
            "bandwidth",
            "--window",
            "200ms",
        ])
        .args(["--port", &port.to_string()])
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("evicted from a full map of 16"), "{stderr}");
}
