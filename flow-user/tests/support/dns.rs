//! A real DNS server on loopback (Debian's dnsmasq) answering one name, killed when dropped.

use std::{
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::{free_port, wait_for};

/// dnsmasq on 127.0.0.1 (UDP and TCP) at a free port, answering `name` with `address` and
/// nothing else (no upstream, no hosts file).
pub struct Dnsmasq {
    pub port: u16,
    child: Child,
}

impl Dnsmasq {
    pub fn start(dnsmasq: &str, name: &str, address: &str) -> Dnsmasq {
        let port = free_port();
        let child = Command::new(dnsmasq)
            .args([
                "--no-daemon",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
            ])
            .args(["--no-resolv", "--no-hosts"])
            .arg(format!("--address=/{name}/{address}"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq starts");
        let server = Dnsmasq { port, child };
        let up = wait_for(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(up.is_some(), "dnsmasq did not listen on port {port}");
        server
    }

    /// `dig +short` for `name` against this server (over TCP with `tcp`): its answer.
    pub fn dig(&self, dig: &str, name: &str, tcp: bool) -> String {
        let mut command = Command::new(dig);
        if tcp {
            command.arg("+tcp");
        }
        let answer = command
            .args(["+short", "-p", &self.port.to_string(), "@127.0.0.1", name])
            .output()
            .expect("dig runs");
        String::from_utf8_lossy(&answer.stdout).trim().to_string()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
