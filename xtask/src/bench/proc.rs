//! The processes a benchmark starts: their output lines as they come, CPU time, peak memory,
//! and stopping them (always: a dropped `Spawned` kills what is still running).

use anyhow::{Context, Result};
use std::{
    fs::{self, File},
    io::{BufRead, BufReader, Read, Write},
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        mpsc::{self, Receiver, RecvTimeoutError, Sender},
        OnceLock,
    },
    thread,
    time::{Duration, Instant},
};

/// One line a child printed, when we read it.
#[derive(Clone, Debug)]
pub struct Line {
    pub at: Instant,
    pub text: String,
    /// Whether it came from stderr (else stdout).
    pub stderr: bool,
}

pub struct Spawned {
    pub name: String,
    child: Child,
    lines: Receiver<Line>,
    seen: Vec<Line>,
    pub started: Instant,
    /// When `wait` first saw the child gone.
    pub exited: Option<Instant>,
}

impl Spawned {
    /// Starts `cmd`. Its stderr (and stdout unless `stdout` is given, e.g. a file for a large
    /// JSON listing) is read line by line on threads, copied to `log` when given.
    pub fn start(
        name: &str,
        cmd: &mut Command,
        stdout: Option<File>,
        log: Option<&Path>,
    ) -> Result<Self> {
        Self::spawn(name, cmd, Stdio::null(), stdout, log)
    }

    /// Like [`Spawned::start`] with a pipe to the child's stdin (closing it tells it to stop).
    pub fn start_with_stdin(name: &str, cmd: &mut Command, log: Option<&Path>) -> Result<Self> {
        Self::spawn(name, cmd, Stdio::piped(), None, log)
    }

    fn spawn(
        name: &str,
        cmd: &mut Command,
        stdin: Stdio,
        stdout: Option<File>,
        log: Option<&Path>,
    ) -> Result<Self> {
        let log = match log {
            Some(path) => {
                Some(File::create(path).with_context(|| format!("creating {}", path.display()))?)
            }
            None => None,
        };
        let piped_stdout = stdout.is_none();
        cmd.stdin(stdin)
            .stderr(Stdio::piped())
            .stdout(stdout.map_or_else(Stdio::piped, Stdio::from));
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("{name}: could not start `{}`", crate::util::display(cmd)))?;
        let (tx, lines) = mpsc::channel();
        if piped_stdout {
            if let Some(out) = child.stdout.take() {
                let log = log.as_ref().and_then(|f| f.try_clone().ok());
                forward(out, false, tx.clone(), log);
            }
        }
        if let Some(err) = child.stderr.take() {
            forward(err, true, tx, log);
        }
        Ok(Spawned {
            name: name.to_string(),
            child,
            lines,
            seen: Vec::new(),
            started,
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's stdin, when it was started with [`Spawned::start_with_stdin`].
    pub fn stdin(&mut self) -> Option<&mut std::process::ChildStdin> {
        self.child.stdin.as_mut()
    }

    /// Closes the child's stdin (holders take that as "stop").
    pub fn close_stdin(&mut self) {
        self.child.stdin.take();
    }

    /// Waits for a line matching `wanted`, at most `timeout`; `None` when the child exits or
    /// the time runs out first. Every line read is kept (see [`Spawned::lines`]).
    pub fn wait_line(&mut self, wanted: impl Fn(&str) -> bool, timeout: Duration) -> Option<Line> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line.text) {
                        return Some(line);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) if Instant::now() >= deadline => return None,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Every line read so far (including those still queued).
    pub fn lines(&mut self) -> &[Line] {
        self.seen.extend(self.lines.try_iter());
        &self.seen
    }

    /// Waits for the child to exit, at most `timeout` (`None`: still running).
    pub fn wait(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.exited.get_or_insert_with(Instant::now);
                // Let the reader threads deliver the last lines.
                if let Some(line) = self.wait_line(|_| false, Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (e.g. `INT`), waits up to `grace`, then kills.
    pub fn stop(&mut self, signal: &str, grace: Duration) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(self.pid().to_string())
                .stderr(Stdio::null())
                .status();
            if !matches!(self.wait(grace), Ok(Some(_))) {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }

    /// The tail of what the child printed, for error messages.
    pub fn tail(&mut self, n: usize) -> String {
        let lines = self.lines();
        let start = lines.len().saturating_sub(n);
        let tail: Vec<&str> = lines[start..].iter().map(|l| l.text.as_str()).collect();
        let tail = tail.join(" | ");
        format!("{}: {tail}", self.name)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn forward(
    stream: impl Read + Send + 'static,
    stderr: bool,
    tx: Sender<Line>,
    mut log: Option<File>,
) {
    thread::spawn(move || {
        for text in BufReader::new(stream).lines().map_while(|l| l.ok()) {
            if let Some(log) = &mut log {
                let _ = writeln!(log, "{text}");
            }
            if tx
                .send(Line {
                    at: Instant::now(),
                    text,
                    stderr,
                })
                .is_err()
            {
                break;
            }
        }
    });
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every Linux we know).
fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        crate::util::output(Command::new("getconf").arg("CLK_TCK"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU seconds `pid` has used (all threads, user + system); with `children`, also those of
/// the children it has waited for (a shell loop's `ss` runs).
pub fn cpu_seconds(pid: u32, children: bool) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last `)`.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Fields 14..=17 of proc(5) (utime stime cutime cstime) are 11..=14 here.
    let take = if children { 4 } else { 2 };
    let ticks: u64 = fields
        .get(11..11 + take)?
        .iter()
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Some(ticks as f64 / clk_tck())
}

/// A `kB` field of `/proc/<pid>/status`, e.g. `VmHWM` (peak resident set).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU use of a set of processes between `start` and a later reading, in cores.
pub struct CpuClock {
    pids: Vec<u32>,
    children: bool,
    at: Instant,
    seconds: f64,
}

impl CpuClock {
    pub fn start(pids: &[u32], children: bool) -> Self {
        CpuClock {
            pids: pids.to_vec(),
            children,
            at: Instant::now(),
            seconds: Self::read(pids, children),
        }
    }

    fn read(pids: &[u32], children: bool) -> f64 {
        pids.iter().filter_map(|p| cpu_seconds(*p, children)).sum()
    }

    /// CPU seconds per second since `start` (a process gone meanwhile counts as 0 from then).
    pub fn cores(&self) -> f64 {
        let wall = self.at.elapsed().as_secs_f64();
        let used = Self::read(&self.pids, self.children) - self.seconds;
        if wall > 0.0 {
            used.max(0.0) / wall
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_and_memory() {
        let pid = std::process::id();
        let before = cpu_seconds(pid, false).unwrap();
        let clock = CpuClock::start(&[pid], true);
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(cpu_seconds(pid, true).unwrap() >= before);
        assert!(clock.cores() >= 0.0);
        assert!(status_kib(pid, "VmHWM").unwrap() > 0);
        assert_eq!(status_kib(pid, "NoSuchField"), None);
    }

    #[test]
    fn collects_lines_and_exit() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo attached >&2; exit 3"]);
        let mut child = Spawned::start("sh", &mut cmd, None, None).unwrap();
        let line = child.wait_line(|l| l.contains("attached"), Duration::from_secs(5));
        assert!(line.is_some());
        let status = child.wait(Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(status.code(), Some(3));
        assert!(child.lines().iter().any(|l| l.text == "out"));
    }
}
