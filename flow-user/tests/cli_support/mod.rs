//! Shared by the `cli_*` tests: the `flow` binary, a privilege gate, loopback traffic and
//! bounded waits. Every loop here ends by a deadline; all traffic stays on 127.0.0.1.
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

pub fn flow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flow"))
}

pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// True when the test can run: as root (the kernel program). Under CI a missing privilege is a
/// failure; elsewhere the test says loudly that it did not run.
pub fn privileged(test: &str) -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(!in_ci(), "{test}: CI runs these tests as root");
    eprintln!("NOT RUN: {test} needs root (CI runs it)");
    false
}

/// The path of a tool the test needs; under CI a missing tool is a failure.
pub fn tool(name: &str, test: &str) -> Option<&'static str> {
    let found = ["/usr/bin/", "/bin/", "/usr/local/bin/", "/usr/sbin/"]
        .iter()
        .map(|dir| format!("{dir}{name}"))
        .find(|path| std::path::Path::new(path).exists())
        .map(|path| &*Box::leak(path.into_boxed_str()));
    if found.is_none() {
        assert!(
            !in_ci(),
            "{test}: `{name}` must be installed (`cargo xtask test` installs it)"
        );
        eprintln!("NOT RUN: {test} needs `{name}`");
    }
    found
}

/// Polls `check` every 100 ms until it returns `Some`, or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() >= end {
            return None;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// This process's name as `/proc` and the exporter show it (the first 15 bytes of the test
/// executable's name).
pub fn own_comm() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .expect("/proc/self/comm")
        .trim_end()
        .to_string()
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// One loopback connection carrying a steady stream from client to server until dropped or
/// `limit` passes. The server end's local port is [`Transfer::port`].
pub struct Transfer {
    pub port: u16,
    pub client_port: u16,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Transfer {
    /// Sends `chunk` bytes every `pause`.
    pub fn start(chunk: usize, pause: Duration, limit: Duration) -> Transfer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let client_port = client.local_addr().unwrap().port();
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let end = Instant::now() + limit;
        let sender = {
            let (sent, stop) = (Arc::clone(&sent), Arc::clone(&stop));
            thread::spawn(move || {
                let data = vec![0x5a_u8; chunk];
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    if client.write_all(&data).is_err() {
                        break;
                    }
                    sent.fetch_add(chunk as u64, Ordering::Relaxed);
                    thread::sleep(pause);
                }
            })
        };
        let receiver = thread::spawn(move || {
            server
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut buf = vec![0u8; 256 * 1024];
            // Ends at EOF when the sender's stream is dropped, or at the deadline.
            while Instant::now() < end + Duration::from_secs(1) {
                match server.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
            }
        });
        Transfer {
            port,
            client_port,
            sent,
            stop,
            threads: vec![sender, receiver],
        }
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A running `flow` whose stdout and stderr are collected as they come; killed when dropped.
pub struct Running {
    pub child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    pub fn spawn(command: &mut Command) -> Running {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn flow");
        let collect = |mut pipe: Box<dyn Read + Send>| {
            let text = Arc::new(Mutex::new(String::new()));
            let sink = Arc::clone(&text);
            thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
            text
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        Running {
            child,
            stdout,
            stderr,
        }
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends `signal` and waits (bounded) for the exit code.
    pub fn stop_with(&mut self, signal: i32, limit: Duration) -> Option<i32> {
        unsafe { libc::kill(self.child.id() as i32, signal) };
        wait_for(limit, || self.child.try_wait().ok().flatten()).map(|s| s.code().unwrap_or(-1))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether a table line shows a non-zero rate (`12 B/s`, `1.5 MiB/s`, ...).
pub fn has_nonzero_rate(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .any(|pair| pair[1].ends_with("B/s") && pair[0].parse::<f64>().is_ok_and(|n| n > 0.0))
}
