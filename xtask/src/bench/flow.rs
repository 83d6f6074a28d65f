//! Running the release `flow` binary the way the benchmark needs: eBPF mode forced, the
//! "attached" line awaited and timed, warnings about losses collected.

use super::proc::{Line, Spawned};
use anyhow::{bail, Result};
use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    time::Duration,
};

/// Loading and attaching takes ~1 s here; a busy machine may take a lot longer.
const ATTACH_LIMIT: Duration = Duration::from_secs(60);

pub struct Flow {
    pub binary: PathBuf,
    pub version: String,
    /// Whether this build has `--no-payload` (payload capture is on by default).
    pub has_no_payload: bool,
}

/// A `flow` process that has attached.
pub struct Running {
    pub proc: Spawned,
    /// From spawn to the line saying which rung attached.
    pub attached: Duration,
    pub rung: String,
}

/// What a finished `flow` left behind.
pub struct Finished {
    /// From spawn to exit.
    pub ran: Duration,
    /// `flow: warning: …` lines: what the kernel or the tracker dropped.
    pub warnings: Vec<String>,
    /// `flow: note: …` lines: reported, not losses (kernel hook runs skipped, each covered by
    /// a socket's second close hook unless both were skipped).
    pub notes: Vec<String>,
    pub lines: Vec<Line>,
}

impl Flow {
    pub fn probe(binary: &Path) -> Result<Flow> {
        let help = crate::util::output(Command::new(binary).arg("--help")).unwrap_or_default();
        let version = crate::util::output(Command::new(binary).arg("--version"))
            .unwrap_or_else(|| "unknown".into());
        Ok(Flow {
            binary: binary.to_path_buf(),
            version,
            has_no_payload: help.contains("--no-payload"),
        })
    }

    /// `flow --mode ebpf <global…> <args…>`: never the procfs fallback, which would measure
    /// something else.
    pub fn command(&self, global: &[String], args: &[String]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args(["--mode", "ebpf"]).args(global).args(args);
        cmd
    }

    /// Starts flow and waits until it says it attached.
    pub fn start(
        &self,
        global: &[String],
        args: &[String],
        stdout: Option<File>,
        log: Option<&Path>,
    ) -> Result<Running> {
        let mut proc = Spawned::start("flow", &mut self.command(global, args), stdout, log)?;
        let Some(line) = proc.wait_line(|l| l.contains("attached"), ATTACH_LIMIT) else {
            let tail = proc.tail(5);
            bail!("flow did not attach within {ATTACH_LIMIT:?}: {tail}");
        };
        Ok(Running {
            attached: line.at.duration_since(proc.started),
            rung: rung_of(&line.text).unwrap_or("unknown").to_string(),
            proc,
        })
    }
}

impl Running {
    /// Waits for flow to exit on its own (its window ends), at most `limit`, then stops it.
    pub fn finish(mut self, limit: Duration) -> Result<Finished> {
        let status = match self.proc.wait(limit)? {
            Some(status) => status,
            None => {
                self.proc.stop("INT", Duration::from_secs(5));
                bail!("flow did not exit within {limit:?}: {}", self.proc.tail(5));
            }
        };
        self.finished(status, status.success())
    }

    /// Stops a flow that runs until told (`serve`, `top`) with SIGINT, as a person or a service
    /// manager would; it must exit cleanly within `grace`.
    pub fn interrupt(mut self, grace: Duration) -> Result<Finished> {
        let _ = Command::new("kill")
            .args(["-INT", &self.proc.pid().to_string()])
            .status();
        let status = match self.proc.wait(grace)? {
            Some(status) => status,
            None => {
                self.proc.stop("KILL", Duration::from_secs(5));
                bail!(
                    "flow did not exit within {grace:?} of SIGINT: {}",
                    self.proc.tail(5)
                );
            }
        };
        // 130 is how flow says a signal ended it.
        self.finished(status, status.success() || status.code() == Some(130))
    }

    fn finished(mut self, status: ExitStatus, ok: bool) -> Result<Finished> {
        let lines = self.proc.lines().to_vec();
        let warnings = lines
            .iter()
            .filter_map(|l| l.text.strip_prefix("flow: warning: "))
            .map(str::to_string)
            .collect();
        let notes = lines
            .iter()
            .filter_map(|l| l.text.strip_prefix("flow: note: "))
            .map(str::to_string)
            .collect();
        if !ok {
            bail!("flow failed ({status}): {}", self.proc.tail(5));
        }
        let ran = self
            .proc
            .exited
            .map_or(Duration::ZERO, |t| t.duration_since(self.proc.started));
        Ok(Finished {
            ran,
            warnings,
            notes,
            lines,
        })
    }
}

/// `tracepoint` from `flow: mode ebpf: attached the tracepoint rung; fentry refused: …`.
pub fn rung_of(line: &str) -> Option<&str> {
    line.split_once("attached the ")?
        .1
        .split_once(" rung")
        .map(|(rung, _)| rung)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rung_from_the_attach_line() {
        let line = "flow: mode ebpf: attached the tracepoint rung; fentry refused: EPERM";
        assert_eq!(super::rung_of(line), Some("tracepoint"));
        assert_eq!(super::rung_of("flow: mode procfs: not root"), None);
    }
}
