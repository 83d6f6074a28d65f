//! The `flow` binary: as this test's user, without privileges (the one `setpriv` launcher),
//! running in the background with its output collected, and what its tables print.

use std::{
    io::Read,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use super::{
    gate::{is_root, tool},
    wait::wait_for,
};

pub fn flow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flow"))
}

/// Whom [`flow_without_privileges`] runs `flow` as when this test runs as root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unprivileged {
    /// Still uid 0, but with every capability dropped (inheritable and bounding sets): what a
    /// user without CAP_BPF/CAP_PERFMON gets.
    RootWithoutCapabilities,
    /// User `nobody`, group `nogroup`, no supplementary groups, no inheritable capabilities.
    Nobody,
}

/// The `flow` binary, run without privileges: through `setpriv` as `who` when this test runs as
/// root; already unprivileged, `flow` itself. `None` (and says so) when `setpriv` is missing;
/// under CI that is a failure.
pub fn flow_without_privileges(who: Unprivileged, test: &str) -> Option<Command> {
    if !is_root() {
        return Some(flow());
    }
    let setpriv = tool("setpriv", test)?;
    let mut command = Command::new(setpriv);
    match who {
        Unprivileged::RootWithoutCapabilities => {
            command.args(["--inh-caps=-all", "--bounding-set=-all"])
        }
        Unprivileged::Nobody => command.args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all",
        ]),
    };
    command.arg("--").arg(env!("CARGO_BIN_EXE_flow"));
    Some(command)
}

/// This process's name as `/proc` and the exporter show it (the first 15 bytes of the test
/// executable's name).
pub fn own_comm() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .expect("/proc/self/comm")
        .trim_end()
        .to_string()
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
