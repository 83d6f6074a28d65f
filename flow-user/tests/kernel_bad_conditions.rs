//! Expected bad conditions end in one clear line, or are counted and shown: never a crash.

mod support;

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

use flow_user::ebpf::{LoadOptions, Rung};
use support::{load, tuple_addrs, Pair};

const CAPACITY: u32 = 16;
const PAIRS: usize = 64;

/// `PAIRS` connections that each moved 4 bytes both ways.
fn pinged_pairs(listener: &TcpListener) -> Vec<Pair> {
    let pairs: Vec<Pair> = (0..PAIRS).map(|_| Pair::open(listener)).collect();
    for pair in &pairs {
        (&pair.client).write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        (&pair.server).read_exact(&mut buf).unwrap();
        (&pair.server).write_all(b"pong").unwrap();
        (&pair.client).read_exact(&mut buf).unwrap();
    }
    pairs
}

/// Socket-local storage (the host's tp_btf rung) has no capacity to overflow: a socket's entry
/// lives exactly as long as the socket, whatever `--map-entries` says.
#[test]
fn socket_local_storage_never_evicts() {
    let Some(mut program) = load(&LoadOptions {
        map_entries: CAPACITY,
        rung: Some(Rung::TpBtf),
        ..LoadOptions::default()
    }) else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let pairs = pinged_pairs(&listener);
    let ours: Vec<_> = program
        .sockets()
        .unwrap()
        .into_iter()
        .filter(|(_, c)| {
            tuple_addrs(&c.tuple).is_some_and(|(l, r)| {
                l == listener.local_addr().unwrap() || r == listener.local_addr().unwrap()
            })
        })
        .collect();
    assert_eq!(ours.len(), 2 * PAIRS, "every socket of the test listed");
    assert!(ours.iter().all(|(_, c)| c.tx_bytes == 4 && c.rx_bytes == 4));
    let before = program.stats().unwrap();
    let live = program.sockets().unwrap().len() as u64;
    let after = program.stats().unwrap();
    assert_eq!(after.evictions(&before, live), 0);
    assert_eq!(after.insert_failures, 0);
    drop(pairs);
}

/// More live sockets than map entries: the LRU hash (the host's tracepoint rung) evicts, the
/// monitor counts it, nothing breaks.
#[test]
fn a_map_smaller_than_the_live_sockets_counts_evictions() {
    let Some(mut program) = load(&LoadOptions {
        map_entries: CAPACITY,
        rung: Some(Rung::Tracepoint),
        ..LoadOptions::default()
    }) else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let pairs = pinged_pairs(&listener);
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
            "--rung",
            "tracepoint",
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
