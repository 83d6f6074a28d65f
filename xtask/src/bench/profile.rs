//! Where flow's time goes when a target is missed: `perf record` (Debian's linux-perf, the
//! software cpu-clock event, which works inside this VM) on the flow process while it is
//! measured, and the top of `perf report`. Full mode only; absent perf is a note, not an error.

use super::proc::Spawned;
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

/// Low enough that perf's own interrupts stay out of the CPU figure it runs beside.
const FREQUENCY: &str = "199";
/// Symbols below this share of the samples are left out of the report.
const PERCENT_LIMIT: &str = "2";
const TOP: usize = 12;

pub struct Profile {
    perf: Spawned,
    data: PathBuf,
}

/// Starts sampling `pid` into `data`; `None` when perf cannot run here.
pub fn start(pid: u32, data: &Path, log: &Path) -> Option<Profile> {
    let mut cmd = Command::new("perf");
    cmd.args(["record", "-e", "cpu-clock", "-F", FREQUENCY, "-g", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(data);
    let perf = Spawned::start("perf record", &mut cmd, None, Some(log)).ok()?;
    Some(Profile {
        perf,
        data: data.to_path_buf(),
    })
}

impl Profile {
    /// Stops sampling; returns the top symbols (`percent  dso  symbol`), empty when perf failed.
    pub fn finish(mut self) -> Vec<String> {
        self.perf.stop("INT", Duration::from_secs(20));
        // perf can still be finishing its file when it has exited: an empty report is read
        // again a moment later (a full run once came out empty, the same file read fine after).
        for _ in 0..3 {
            let lines = self.report();
            if !lines.is_empty() {
                return lines;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        Vec::new()
    }

    fn report(&self) -> Vec<String> {
        let Ok(out) = Command::new("perf")
            .args(["report", "--stdio", "--no-children", "-g", "none"])
            .args([
                "--percent-limit",
                PERCENT_LIMIT,
                "--sort",
                "dso,symbol",
                "-i",
            ])
            .arg(&self.data)
            .output()
        else {
            return Vec::new();
        };
        top_lines(&String::from_utf8_lossy(&out.stdout))
    }
}

/// The sample lines of a `perf report --stdio` listing, whitespace squeezed.
pub fn top_lines(report: &str) -> Vec<String> {
    report
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.starts_with('#')
                && l.split_whitespace()
                    .next()
                    .is_some_and(|w| w.ends_with('%'))
        })
        .map(|l| {
            let mut words: Vec<&str> = l.split_whitespace().collect();
            // `-g none` leaves empty caller columns printed as `-`.
            while words.last() == Some(&"-") {
                words.pop();
            }
            words.join(" ")
        })
        .take(TOP)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn top_lines_of_a_report() {
        let report = "# Samples: 10\n#\n    41.20%  flow  [.] flow_user::procfs::owners  -   -\n     9.00%  [kernel.kallsyms]  [k] do_sys_poll\n\n";
        assert_eq!(
            super::top_lines(report),
            vec![
                "41.20% flow [.] flow_user::procfs::owners",
                "9.00% [kernel.kallsyms] [k] do_sys_poll"
            ]
        );
    }
}
