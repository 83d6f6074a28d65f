//! Boots one kernel under QEMU and reads what `/init` printed on the serial console.
//!
//! QEMU exits 0 whether the tests passed, failed or the kernel panicked (`panic=-1` plus
//! `-no-reboot` make a panic end QEMU), so the console is the only verdict: `@@flow-vm@@` lines,
//! parsed here. A VM that does not finish within its limit is killed.

use anyhow::{Context, Result};
use std::{
    fs::File,
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

/// What marks `/init`'s lines among the kernel's.
const MARK: &str = "@@flow-vm@@ ";

/// One `@@flow-vm@@` line: its kind (`boot`, `result`, `stats`, `log`, `done`) and the rest.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub kind: String,
    pub rest: String,
}

impl Line {
    /// The value of `key=value` in the rest of the line.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.rest
            .split_whitespace()
            .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
    }
}

pub struct Run {
    /// The marked lines, in order.
    pub lines: Vec<Line>,
    /// Why the VM did not reach `done`: timed out, or QEMU ended first (panic, crash).
    pub unfinished: Option<String>,
    /// The last lines of the console, for the report when something went wrong.
    pub tail: Vec<String>,
}

/// Runs QEMU (TCG: /dev/kvm here cannot run stock kernels) until it exits, or until no marked
/// line came for `quiet_limit` (hung: the plan is bounded, so the whole run is too). The whole
/// console goes to `log`, each marked line to `on_line` as it arrives.
pub fn run(
    vmlinuz: &Path,
    initramfs: &Path,
    append: &str,
    log: &Path,
    quiet_limit: Duration,
    mut on_line: impl FnMut(&Line),
) -> Result<Run> {
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-cpu", "max", "-m", "1G", "-smp", "1"])
        .args([
            "-nodefaults",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", append])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64")?;

    // A reader thread turns the console into lines, so the wait below can time out.
    let (send, receive) = mpsc::channel();
    let console = child.stdout.take().context("qemu stdout")?;
    thread::spawn(move || {
        let mut reader = BufReader::new(console);
        let mut buf = Vec::new();
        while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&buf).trim_end().to_string();
            if send.send(line).is_err() {
                break;
            }
            buf.clear();
        }
    });

    let mut file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut deadline = Instant::now() + quiet_limit;
    let mut run = Run {
        lines: Vec::new(),
        unfinished: None,
        tail: Vec::new(),
    };
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match receive.recv_timeout(wait) {
            Ok(text) => {
                writeln!(file, "{text}")?;
                run.tail.push(text.clone());
                if run.tail.len() > 40 {
                    run.tail.remove(0);
                }
                if let Some(line) = parse(&text) {
                    deadline = Instant::now() + quiet_limit;
                    on_line(&line);
                    run.lines.push(line);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                run.unfinished = Some(format!(
                    "hung: nothing from /init for {} s, killed",
                    quiet_limit.as_secs()
                ));
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait()?;
    if run.unfinished.is_none() && !run.lines.iter().any(|l| l.kind == "done") {
        run.unfinished = Some(format!(
            "QEMU ended ({status}) before /init said done (kernel panic?)"
        ));
    }
    Ok(run)
}

/// A marked line, wherever the mark is: kernel messages can land mid-line on a shared console.
fn parse(text: &str) -> Option<Line> {
    let after = &text[text.find(MARK)? + MARK.len()..];
    let (kind, rest) = after.split_once(' ').unwrap_or((after, ""));
    Some(Line {
        kind: kind.to_string(),
        rest: rest.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn marked_lines() {
        assert_eq!(parse("[    1.2] random: crng init done"), None);
        let line =
            parse("[ 3.1] x@@flow-vm@@ result rung=kprobe test=kernel_exact status=pass").unwrap();
        assert_eq!(line.kind, "result");
        assert_eq!(line.get("rung"), Some("kprobe"));
        assert_eq!(line.get("test"), Some("kernel_exact"));
        assert_eq!(line.get("status"), Some("pass"));
        assert_eq!(line.get("stat"), None);
        assert_eq!(parse("@@flow-vm@@ done").unwrap().kind, "done");
        let log = parse("@@flow-vm@@ log thread 'main' panicked at x.rs:1:2:").unwrap();
        assert_eq!(log.rest, "thread 'main' panicked at x.rs:1:2:");
    }
}
