//! iperf3 on 127.0.0.1: one server for the whole benchmark, one client run per measurement.

use super::{json, proc::Spawned};
use anyhow::{bail, Context, Result};
use std::{fs, net::TcpListener, path::Path, process::Command, thread, time::Duration};

/// A port nobody listens on right now (the kernel's pick; a tiny race is acceptable here).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn version() -> String {
    crate::util::output(Command::new("iperf3").arg("-v"))
        .and_then(|v| v.lines().next().map(str::to_string))
        .unwrap_or_else(|| "missing".into())
}

/// `iperf3 -s` bound to 127.0.0.1 only; killed on drop.
pub struct Server {
    _proc: Spawned,
    pub port: u16,
}

impl Server {
    pub fn start(log: &Path) -> Result<Server> {
        let port = free_port()?;
        let mut cmd = Command::new("iperf3");
        // --forceflush: its stdout is a pipe, and we wait for the "listening" line.
        cmd.args([
            "-s",
            "--forceflush",
            "-B",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ]);
        let mut proc = Spawned::start("iperf3 server", &mut cmd, None, Some(log))
            .context("iperf3 is needed: apt-get install -y iperf3")?;
        if proc
            .wait_line(|l| l.contains("listening"), Duration::from_secs(10))
            .is_none()
        {
            bail!("iperf3 -s did not start: {}", proc.tail(3));
        }
        Ok(Server { _proc: proc, port })
    }

    /// One client run of `seconds` with writes of `len` (`64`, `128K`); returns bits/s received.
    /// The raw JSON goes to `raw`.
    pub fn client(&self, seconds: u32, len: &str, raw: &Path) -> Result<f64> {
        let mut last = String::new();
        // The server refuses a test while it still tears the previous one down: retry once.
        for attempt in 0..2 {
            if attempt > 0 {
                thread::sleep(Duration::from_millis(500));
            }
            let out = Command::new("iperf3")
                .args(["-c", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-t", &seconds.to_string(), "-l", len, "-J"])
                .output()
                .context("running iperf3 -c")?;
            let text = String::from_utf8_lossy(&out.stdout);
            fs::write(raw, text.as_bytes()).ok();
            match received_bps(&text) {
                Some(bps) if out.status.success() => return Ok(bps),
                _ => last = error_of(&text).unwrap_or_else(|| text.chars().take(200).collect()),
            }
        }
        bail!("iperf3 -c -l {len} failed: {last}")
    }
}

/// `end.sum_received.bits_per_second` of `iperf3 -J` output.
pub fn received_bps(text: &str) -> Option<f64> {
    json::parse(text)
        .ok()?
        .pointer("/end/sum_received/bits_per_second")?
        .as_f64()
}

fn error_of(text: &str) -> Option<String> {
    Some(json::parse(text).ok()?.get("error")?.as_str()?.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn throughput_from_iperf_json() {
        let text = r#"{"start":{},"intervals":[],"end":{"sum_sent":{"bits_per_second":2e9},
            "sum_received":{"bits_per_second":1.5e9}}}"#;
        assert_eq!(super::received_bps(text), Some(1.5e9));
        assert_eq!(super::received_bps(r#"{"error":"busy"}"#), None);
        assert_eq!(
            super::error_of(r#"{"error":"busy"}"#).as_deref(),
            Some("busy")
        );
    }
}
