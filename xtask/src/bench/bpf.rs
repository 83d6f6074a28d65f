//! What the kernel says about a process's BPF programs: run time per event
//! (`kernel.bpf_stats_enabled`).
//!
//! Programs and maps are found through the process's own file descriptors
//! (`/proc/<pid>/fdinfo`), not by name: other engineers may run `flow` at the same time, and
//! bpftool here cannot tell which process holds what.

use super::json::{self, Value};
use anyhow::{bail, Context, Result};
use std::{collections::HashMap, fs, process::Command};

const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Turns `kernel.bpf_stats_enabled` on while alive and puts the previous value back on drop,
/// errors and panics included (a kill -9 of the benchmark is the one case it cannot cover).
pub struct StatsGuard {
    previous: String,
}

impl StatsGuard {
    pub fn enable() -> Result<Self> {
        let previous = fs::read_to_string(STATS_SYSCTL)
            .with_context(|| format!("reading {STATS_SYSCTL}"))?
            .trim()
            .to_string();
        fs::write(STATS_SYSCTL, "1").with_context(|| format!("writing 1 to {STATS_SYSCTL}"))?;
        Ok(StatsGuard { previous })
    }
}

impl Drop for StatsGuard {
    fn drop(&mut self) {
        if let Err(err) = fs::write(STATS_SYSCTL, &self.previous) {
            eprintln!(
                "bench: could not restore kernel.bpf_stats_enabled={} ({err}); \
                 fix: sysctl kernel.bpf_stats_enabled={}",
                self.previous, self.previous
            );
        }
    }
}

/// One loaded program's counters.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgStats {
    pub id: u64,
    pub name: String,
    pub run_cnt: u64,
    pub run_time_ns: u64,
}

impl ProgStats {
    pub fn ns_per_event(&self) -> Option<f64> {
        (self.run_cnt > 0).then(|| self.run_time_ns as f64 / self.run_cnt as f64)
    }
}

/// The `key:\tvalue` fields of the fdinfo of every fd of `pid` that is a BPF object of `kind`.
fn fdinfos(pid: u32, kind: &str) -> Vec<HashMap<String, String>> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for fd in fds.flatten() {
        // `anon_inode:bpf-prog`, `anon_inode:bpf-map`, `anon_inode:bpf_link`.
        let is_kind = fs::read_link(fd.path())
            .is_ok_and(|target| target.to_string_lossy() == format!("anon_inode:{kind}"));
        if !is_kind {
            continue;
        }
        let path = format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy());
        if let Ok(text) = fs::read_to_string(path) {
            found.push(parse_fdinfo(&text));
        }
    }
    found
}

fn parse_fdinfo(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Every program or map bpftool lists (`bpftool {prog,map} show --json`), by id.
fn listing(what: &str) -> Result<HashMap<u64, Value>> {
    let out = Command::new("bpftool")
        .args([what, "show", "--json"])
        .output()
        .context("running bpftool (apt-get install bpftool)")?;
    if !out.status.success() {
        bail!(
            "bpftool {what} show failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let list = json::parse(&String::from_utf8_lossy(&out.stdout))?;
    Ok(json::elements(&list)
        .iter()
        .filter_map(|p| Some((p.get("id")?.as_u64()?, p.clone())))
        .collect())
}

/// Every program `pid` holds (through a program fd or a link fd), with bpftool's counters,
/// sorted by name. The counters only move while `kernel.bpf_stats_enabled` is 1.
pub fn programs_of(pid: u32) -> Result<Vec<ProgStats>> {
    let listing = listing("prog")?;
    let mut ids: Vec<u64> = ["bpf-prog", "bpf_link"]
        .iter()
        .flat_map(|kind| fdinfos(pid, kind))
        .filter_map(|info| info.get("prog_id")?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let number = |p: &Value, key: &str| p.get(key).and_then(Value::as_u64).unwrap_or(0);
    let mut progs: Vec<ProgStats> = ids
        .into_iter()
        .filter_map(|id| {
            let p = listing.get(&id)?;
            Some(ProgStats {
                id,
                name: p
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string(),
                run_cnt: number(p, "run_cnt"),
                run_time_ns: number(p, "run_time_ns"),
            })
        })
        .collect();
    progs.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    Ok(progs)
}

/// `Value` of a program's counters for the JSON report.
pub fn prog_json(p: &ProgStats) -> Value {
    json::obj([
        ("name", p.name.as_str().into()),
        ("run_cnt", p.run_cnt.into()),
        ("run_time_ns", p.run_time_ns.into()),
        ("ns_per_event", p.ns_per_event().into()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_parsing() {
        let info = parse_fdinfo(
            "pos:\t0\nflags:\t02000002\nprog_type:\t5\nprog_id:\t3599\nrun_time_ns:\t1200\nrun_cnt:\t40\n",
        );
        assert_eq!(info["prog_id"], "3599");
        assert_eq!(info["run_cnt"], "40");
        let p = ProgStats {
            id: 1,
            name: "flow_tx_tp".into(),
            run_cnt: 40,
            run_time_ns: 1200,
        };
        assert_eq!(p.ns_per_event(), Some(30.0));
    }
}
